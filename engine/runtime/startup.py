"""A stop asked for while the engine starts up: SIGINT/SIGTERM before the pipeline runs.

From the start of ``engine.app.run_with`` until ``engine.runtime.shutdown.signal_task``
installs Trio's receiver, the process would otherwise meet a signal with Python's
defaults: SIGTERM kills it (no clean exit), and SIGINT's ``KeyboardInterrupt`` lands
wherever the main thread is -- inside the writer's ``PRAGMA quick_check`` progress
handler it is swallowed by ``sqlite3`` and the run simply starts afterwards.

``StartupStop`` replaces both handlers for that span with one that only notes the
signal. The start-up checks the note between its steps (``check``), and the
writer's ``quick_check`` on a big database asks it every few thousand SQLite
instructions (``engine.store.connection.quick_check``'s ``stop``), so the stop is
taken within one step: ``StoppedDuringStartup`` unwinds the start-up (the database
closed, no run row written, ingest never started) and the command exits 0, as a
stop does (docs/contract.md, exit codes). ``signal_task`` asks once more right
after installing Trio's receiver, for a signal in the last instants before it.

*Resource handling:* a context manager; the previous handlers are put back on exit.
Outside the main thread (a test calling ``run_with`` from a worker) it installs
nothing: only the main thread may set signal handlers.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Final, TypeAlias

from engine.exits import StoppedDuringStartup

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop the engine: noted here during start-up, then the drain's
(``engine.runtime.shutdown.signal_task``)."""

Handler: TypeAlias = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
"""What ``signal.signal`` returns and takes back."""


class StartupStop:
    """Notes SIGINT/SIGTERM during start-up; ``check`` turns the note into the stop."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Handler] = {}

    def __enter__(self) -> StartupStop:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        """The handler: remember the first signal, nothing else (it may run anywhere)."""
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name

    def requested(self) -> bool:
        return self.signal_name is not None

    def check(self, step: str) -> None:
        """Raise ``StoppedDuringStartup`` if a stop was asked for (``step``: what is done)."""
        if self.signal_name is not None:
            raise StoppedDuringStartup(self.signal_name, step)
