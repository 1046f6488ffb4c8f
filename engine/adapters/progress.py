"""``Progress``: wake whoever waits for a shell component's state to change.

The WebSocket links (``engine.adapters.link``: the market feed, the user stream)
and the recorder bump it when something happened (a frame, a pong, a connection
up or down, a batch written); a supervisor or a test awaits a predicate over
their counters instead of polling with sleeps. In ``adapters/`` rather than
``market/`` because the link, which lies below ``market/``, uses it.
"""

from __future__ import annotations

from collections.abc import Callable

import trio


class Progress:
    """A condition to wait on; ``bump`` costs one attribute test while nobody waits."""

    def __init__(self) -> None:
        self._event: trio.Event | None = None

    def bump(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, re-checking it after every ``bump``."""
        while not predicate():
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
