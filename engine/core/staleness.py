"""Is a tick stale? Lag measured against this connection's *normal* latency (S7, L2).

``ts_recv - ts_event`` mixes two things: the network/processing delay we care
about, and the offset between the exchange's clock and ours, which can be
large and of either sign -- the shared Binance capture's recorder ran ~1.27 s
*behind* the exchange, so its raw lag is about -1.27 s. A fixed threshold on the
raw lag would either veto everything or nothing.

So the estimator learns the normal value of ``ts_recv - ts_event`` as a low
percentile over the last ``WINDOW`` ticks (network delay only ever *adds* to
the offset, so the low end of the distribution is "offset + best-case
latency"), and a tick is stale when its own value exceeds that baseline by
more than ``max_staleness_ms``. A low percentile rather than the minimum keeps
one tick with a wrong exchange timestamp from moving the baseline.

The estimate is a pure function of the tick sequence (no wall clock), so a
replay makes exactly the decisions of the live run it was recorded from.

Cost per tick: O(log WINDOW) to find positions plus an O(WINDOW) memmove of a
short list of ints -- negligible next to decoding.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Final

WINDOW: Final = 2048
"""Ticks the baseline looks back over; older ones are forgotten (bounded memory).
A delay sustained longer than this many ticks becomes the new normal -- that is
a changed connection, not a stale tick."""

PERCENTILE: Final = 0.01
"""Which low quantile of the window is the baseline (the 1% lowest lags are ignored as outliers)."""

NS_PER_MS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Lag:
    """What the estimator measured for one tick (all in nanoseconds)."""

    raw_ns: int
    """``ts_recv - ts_event`` as observed (clock offset + delay)."""
    baseline_ns: int
    """The connection's normal ``ts_recv - ts_event`` at that moment."""
    excess_ns: int
    """``raw - baseline``: how late this tick is beyond normal."""
    stale: bool

    def describe(self) -> str:
        return (
            f"lag {self.excess_ns / NS_PER_MS:.3f} ms beyond normal "
            f"(ts_recv - ts_event = {self.raw_ns / NS_PER_MS:.3f} ms, "
            f"normal {self.baseline_ns / NS_PER_MS:.3f} ms)"
        )


class StalenessEstimator:
    """Running low percentile of ``ts_recv - ts_event`` over a bounded window."""

    def __init__(self, max_staleness_ms: int, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._limit_ns = max_staleness_ms * NS_PER_MS
        self._window = window
        self._arrival: deque[int] = deque()
        self._sorted: list[int] = []

    def observe(self, ts_event: int, ts_recv: int) -> Lag:
        """Add one tick to the window and judge it against the updated baseline."""
        raw = ts_recv - ts_event
        if len(self._arrival) == self._window:
            old = self._arrival.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._arrival.append(raw)
        bisect.insort(self._sorted, raw)
        baseline = self._sorted[int(PERCENTILE * (len(self._sorted) - 1))]
        excess = raw - baseline
        return Lag(
            raw_ns=raw, baseline_ns=baseline, excess_ns=excess, stale=excess > self._limit_ns
        )
