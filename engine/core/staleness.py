"""Is a tick stale? Lag measured against this connection's *normal* latency (S7, L2).

``ts_recv - ts_event`` mixes two things: the network/processing delay we care
about, and the offset between the exchange's clock and ours, which can be
large and of either sign -- the shared Binance capture's recorder ran ~1.27 s
*behind* the exchange, so its raw lag is about -1.27 s. A fixed threshold on the
raw lag would either veto everything or nothing.

So the estimator learns the normal value of ``ts_recv - ts_event`` as a low
percentile of recent ticks (network delay only ever *adds* to the offset, so
the low end of the distribution is "offset + best-case latency"), and a tick is
stale when its own value exceeds that baseline by more than
``max_staleness_ms``. A low percentile rather than the minimum keeps one tick
with a wrong exchange timestamp from moving the baseline.

Recent ticks are taken in fixed blocks of ``BLOCK``: the baseline is the
``PERCENTILE`` of the last *complete* block, recomputed once per block with one
C-level sort -- amortised O(log BLOCK) and, on the hot path, one list append and
two comparisons per tick. Until the first block completes, the baseline is the
running minimum of the ticks seen so far (the first tick is its own baseline).
A shift of the clock offset is learned within one to two blocks.

The estimate is a pure function of the tick sequence (no wall clock), so a
replay makes exactly the decisions of the live run it was recorded from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from engine.core.events import NS_PER_MS


def tick_silence_limit_s(max_downtime_s: float, heartbeat_interval_s: float) -> float:
    """How long a live feed may go without an admitted tick before it is judged stalled."""
    return max_downtime_s + heartbeat_interval_s


BLOCK: Final = 1024
"""Ticks per block the baseline is computed from; memory is one block of ints.
A delay sustained for a whole block becomes the new normal -- that is a changed
connection, not a stale tick."""

PERCENTILE: Final = 0.01
"""Which low quantile of a block is the baseline (the 1% lowest are ignored as outliers)."""


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
    """Low percentile of ``ts_recv - ts_event`` over the last complete block of ticks."""

    def __init__(self, max_staleness_ms: int, block: int = BLOCK) -> None:
        if block < 1:
            raise ValueError("block must be >= 1")
        self._limit_ns = max_staleness_ms * NS_PER_MS
        self._size = block
        self._block: list[int] = []
        self._block_min: int | None = None
        self._settled: int | None = None
        """The baseline from the last complete block (``None`` during the first block)."""
        self._raw = 0
        self._baseline = 0
        self.stale_ticks = 0
        """How many ticks so far lagged more than ``max_staleness_ms`` beyond normal."""

    def observe(self, ts_event: int, ts_recv: int) -> Lag:
        """Add one tick and judge it against the baseline."""
        self.add(ts_event, ts_recv)
        return self.last()

    def add(self, ts_event: int, ts_recv: int) -> None:
        """``observe`` without building the verdict (the per-tick hot path); see ``last``."""
        raw = ts_recv - ts_event
        block = self._block
        block.append(raw)
        settled = self._settled
        if settled is None:
            if self._block_min is None or raw < self._block_min:
                self._block_min = raw
            self._baseline = self._block_min
        else:
            self._baseline = settled
        if raw - self._baseline > self._limit_ns:
            self.stale_ticks += 1
        if len(block) == self._size:
            block.sort()
            self._settled = block[int(PERCENTILE * (self._size - 1))]
            self._block = []
        self._raw = raw

    def last(self) -> Lag:
        """The verdict on the most recently added tick."""
        excess = self._raw - self._baseline
        return Lag(
            raw_ns=self._raw,
            baseline_ns=self._baseline,
            excess_ns=excess,
            stale=excess > self._limit_ns,
        )
