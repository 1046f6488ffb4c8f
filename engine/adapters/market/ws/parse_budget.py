"""How much malformed input ingest tolerates: a sliding minute of parse errors.

One bad frame is not a failure (docs/contract.md L3, S5): it is counted, sampled in the log
and skipped. A *rate* of them is: a venue that changed its schema, a proxy that
mangles frames. Above ``max_parse_errors_per_min`` in any sliding 60 s window the
engine stops with exit 11 so an operator looks at it (systemd restarts it).

Time is whatever clock the caller passes (``trio.current_time()`` in the shell),
so tests drive it with the mock clock. Memory is bounded: at most
``max_per_min + 1`` timestamps are kept.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from engine.exits import ParseRateExceeded

WINDOW_S: Final = 60.0
"""The sliding window the rate is measured over."""


class ParseBudget:
    """Record parse errors; raise ``ParseRateExceeded`` above the tolerated rate."""

    def __init__(self, max_per_min: int, window_s: float = WINDOW_S) -> None:
        if max_per_min < 0:
            raise ValueError("max_per_min must be >= 0")
        self._max = max_per_min
        self._window = window_s
        self._times: deque[float] = deque()

    def in_window(self, now: float) -> int:
        """Errors recorded within the last ``window_s`` before ``now``."""
        self._expire(now)
        return len(self._times)

    def record(self, now: float, sample: str = "") -> None:
        """Count one parse error at ``now``.

        *Error handling:* raises ``ParseRateExceeded`` when this error makes more
        than ``max_per_min`` within the window.
        """
        self._expire(now)
        self._times.append(now)
        if len(self._times) > self._max:
            raise ParseRateExceeded(
                f"{len(self._times)} malformed messages within {self._window:g}s "
                f"(max_parse_errors_per_min={self._max}); last: {sample}"
            )

    def _expire(self, now: float) -> None:
        horizon = now - self._window
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
