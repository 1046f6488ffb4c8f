"""Duplicate trades and trade-id gaps, per (venue, symbol), in bounded memory.

Venues resend trades: after a reconnect Coinbase starts with ``last_match``, a
Binance client that reconnects may see the tail of what it already had, and
cryptofeed / Hummingbot users report both. A duplicate must never reach the
strategy twice (I3), so ingest -- live *and* replay, which must decide alike --
filters by trade id before anything else sees it.

Both venues number trades in increasing order per symbol, so the state per
symbol is the highest id seen plus the ids still *missing* below it (the gaps).
An id above the high-water mark is new; an id at or below it is new only if it
is a missing one arriving late (it then leaves the gap); anything else is a
duplicate. In-order trades -- nearly all of them -- cost one comparison, which
matters on the replay hot path.

*Bounded memory* (overload policy): at most ``DEDUP_WINDOW`` missing ids are
remembered per symbol; when a gap is wider, or gaps pile up, the oldest missing
ids are forgotten, and a trade arriving that late is dropped as a duplicate --
it cannot be proven new.

A jump in ids (``id > high + 1``) is a gap: trades the venue printed that we
never received (a disconnect, a dropped frame). Gaps are counted per symbol and
returned to the caller, which logs them; the ticks still flow.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, NamedTuple

DEDUP_WINDOW: Final = 50_000
"""Missing trade ids remembered per symbol, for late arrivals to fill their gap."""


class Gap(NamedTuple):
    """Trade ids ``first..last`` (inclusive) of ``symbol`` were never received."""

    venue: str
    symbol: str
    first: int
    last: int

    @property
    def missing(self) -> int:
        return self.last - self.first + 1


@dataclass(slots=True)
class _SymbolIds:
    high: int
    window: int
    missing: set[int] = field(default_factory=set)
    missing_order: deque[int] = field(default_factory=deque)  # may hold filled ids (lazy)
    gaps: int = 0
    missing_total: int = 0

    def remember_missing(self, first: int, last: int) -> None:
        start = max(first, last - self.window + 1)
        ids = range(start, last + 1)
        self.missing.update(ids)
        self.missing_order.extend(ids)
        while len(self.missing_order) > self.window:
            self.missing.discard(self.missing_order.popleft())


class TradeDedup:
    """Admit each (venue, symbol, trade id) once; report gaps in the ids.

    ``admit`` returns ``(is_new, gap)``: ``is_new`` is False for a duplicate
    (drop it), ``gap`` is set when this id jumps past ids never seen.
    """

    def __init__(self, window: int = DEDUP_WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._window = window
        self._symbols: dict[tuple[str, str], _SymbolIds] = {}

    def admit(self, venue: str, symbol: str, trade_id: int) -> tuple[bool, Gap | None]:
        state = self._symbols.get((venue, symbol))
        if state is None:
            self._symbols[(venue, symbol)] = _SymbolIds(trade_id, self._window)
            return True, None
        high = state.high
        if trade_id == high + 1:  # the common case
            state.high = trade_id
            return True, None
        if trade_id > high:
            gap = Gap(venue, symbol, high + 1, trade_id - 1)
            state.gaps += 1
            state.missing_total += gap.missing
            state.remember_missing(gap.first, gap.last)
            state.high = trade_id
            return True, gap
        if trade_id in state.missing:  # late, but fills a gap
            state.missing.discard(trade_id)
            return True, None
        return False, None

    def gaps_by_symbol(self) -> dict[str, int]:
        """Number of gaps seen per ``venue:symbol``."""
        return {f"{v}:{s}": w.gaps for (v, s), w in self._symbols.items()}

    def missing_by_symbol(self) -> dict[str, int]:
        """Number of trade ids skipped over per ``venue:symbol`` (late fills included)."""
        return {f"{v}:{s}": w.missing_total for (v, s), w in self._symbols.items()}

    def remembered(self) -> int:
        """Ids held in memory across all symbols (bounded by ``window`` per symbol)."""
        return sum(len(w.missing_order) for w in self._symbols.values())
