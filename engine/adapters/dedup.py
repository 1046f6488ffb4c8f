"""Duplicate trades and trade-id gaps, per (venue, symbol), in bounded memory.

Venues resend trades: after a reconnect Coinbase starts with ``last_match``, a
Binance client that reconnects may see the tail of what it already had, and
cryptofeed / Hummingbot users report both. A duplicate must never reach the
strategy twice (I3), so ingest filters by trade id before anything else sees it.

Memory stays bounded however long the run: each symbol keeps at most
``DEDUP_WINDOW`` recent ids in a set plus a high-water mark. An id at or below
the oldest id the window has forgotten cannot be proven new, and both venues
number trades in increasing order per symbol, so it is treated as a replay and
dropped (*overload policy*: forget the oldest, drop what cannot be proven new).

A jump in trade ids (``id > high + 1``) is a gap: trades the venue printed that
we never received (a disconnect, a dropped frame). Gaps are counted per symbol
and reported to the caller, which logs them; the ticks still flow.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, NamedTuple

DEDUP_WINDOW: Final = 50_000
"""Trade ids remembered per symbol. At Binance BTCUSDT's busiest (~1,000 trades/s)
that is most of a minute -- far more than any resend after a reconnect."""


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
class _SymbolWindow:
    capacity: int
    seen: set[int] = field(default_factory=set)
    order: deque[int] = field(default_factory=deque)
    high: int | None = None
    forgotten: int | None = None  # the highest id evicted from the window
    gaps: int = 0
    missing: int = 0

    def add(self, trade_id: int) -> bool:
        if trade_id in self.seen:
            return False
        if self.forgotten is not None and trade_id <= self.forgotten:
            return False
        self.seen.add(trade_id)
        self.order.append(trade_id)
        if len(self.order) > self.capacity:
            old = self.order.popleft()
            self.seen.discard(old)
            if self.forgotten is None or old > self.forgotten:
                self.forgotten = old
        return True


class TradeDedup:
    """Admit each (venue, symbol, trade id) once; report gaps in the ids.

    ``admit`` returns ``(is_new, gap)``: ``is_new`` is False for a duplicate
    (drop it), ``gap`` is set when this id jumps past ids never seen.
    """

    def __init__(self, window: int = DEDUP_WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._window = window
        self._symbols: dict[tuple[str, str], _SymbolWindow] = {}

    def admit(self, venue: str, symbol: str, trade_id: int) -> tuple[bool, Gap | None]:
        key = (venue, symbol)
        state = self._symbols.get(key)
        if state is None:
            state = self._symbols[key] = _SymbolWindow(self._window)
        if not state.add(trade_id):
            return False, None
        gap = None
        if state.high is None or trade_id > state.high:
            if state.high is not None and trade_id > state.high + 1:
                gap = Gap(venue, symbol, state.high + 1, trade_id - 1)
                state.gaps += 1
                state.missing += gap.missing
            state.high = trade_id
        return True, gap

    def gaps_by_symbol(self) -> dict[str, int]:
        """Number of gaps seen per ``venue:symbol``."""
        return {f"{v}:{s}": w.gaps for (v, s), w in self._symbols.items()}

    def missing_by_symbol(self) -> dict[str, int]:
        """Number of trade ids never received per ``venue:symbol``."""
        return {f"{v}:{s}": w.missing for (v, s), w in self._symbols.items()}

    def remembered(self) -> int:
        """Ids held in memory across all symbols (bounded by ``window`` per symbol)."""
        return sum(len(w.order) for w in self._symbols.values())
