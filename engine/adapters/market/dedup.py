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

*A jump beyond the window* (``id > high + window``, or an id below
``high - window`` that fills no remembered gap) cannot be told from a bogus id
(one trade with ``t = 2**63 - 1`` used to make every later real trade of its
symbol a "duplicate"). It is refused (``Jump``) and leaves the state alone.
Only ``REANCHOR_TICKS`` consecutive such ids of the symbol, each within the
window above the one before, move the stream there (a venue that really
skipped that far, or a first id that was the bogus one): the last of them is
admitted as the new high-water mark, the ones before it stay refused. The
range the stream left is remembered (``MAX_RETIRED_REGIONS``), so an id once
admitted is never admitted again, whatever the venue sends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, NamedTuple

DEDUP_WINDOW: Final = 50_000
"""Missing trade ids remembered per symbol, for late arrivals to fill their gap; also
how far from the high-water mark an id may lie before it is a ``Jump``."""
REANCHOR_TICKS: Final = 3
"""Consecutive out-of-window ids, each within the window above the previous, that
move the stream (see the module docstring)."""
MAX_RETIRED_REGIONS: Final = 8
"""Id ranges a symbol's stream left by re-anchoring, remembered so that none of their
ids is admitted twice (the closest are merged beyond this)."""


class Gap(NamedTuple):
    """Trade ids ``first..last`` (inclusive) of ``symbol`` were never received."""

    venue: str
    symbol: str
    first: int
    last: int

    @property
    def missing(self) -> int:
        return self.last - self.first + 1


class Jump(NamedTuple):
    """``trade_id`` of ``symbol`` lies beyond the window of the high-water mark ``high``."""

    venue: str
    symbol: str
    trade_id: int
    high: int


_NO_BARRIER: Final = 2**64
"""Above every trade id (ids fit 63 bits)."""


@dataclass(slots=True)
class _SymbolIds:
    high: int
    window: int
    anchor: int
    """The first id admitted since the stream last (re-)anchored: ``[anchor, high]``
    holds every id admitted since."""
    missing: set[int] = field(default_factory=set)
    missing_order: deque[int] = field(default_factory=deque)  # may hold filled ids (lazy)
    gaps: int = 0
    missing_total: int = 0
    jump_last: int = -1
    """The last refused out-of-window id."""
    jump_run: int = 0
    """Consecutive out-of-window ids so far, each within the window above the previous."""
    retired: list[tuple[int, int]] = field(default_factory=list)
    """``[anchor, high]`` of the regions the stream left by re-anchoring (sorted, at most
    ``MAX_RETIRED_REGIONS``): every id in them may have been admitted, so none is again."""
    barrier: int = _NO_BARRIER
    """The lowest retired region start above ``high``: the in-order path stops there."""

    def remember_missing(self, first: int, last: int) -> None:
        start = max(first, last - self.window + 1)
        ids = range(start, last + 1)
        self.missing.update(ids)
        self.missing_order.extend(ids)
        while len(self.missing_order) > self.window:
            self.missing.discard(self.missing_order.popleft())

    def retired_holds(self, trade_id: int) -> bool:
        return any(lo <= trade_id <= hi for lo, hi in self.retired)

    def reanchor(self, trade_id: int) -> None:
        """Leave ``[anchor, high]`` for a stream that continues at ``trade_id``."""
        regions = sorted([*self.retired, (self.anchor, self.high)])
        while len(regions) > MAX_RETIRED_REGIONS:
            # Merge the two closest: ids between them count as seen (refused, never
            # admitted twice) -- the price of bounded memory.
            i = min(range(len(regions) - 1), key=lambda k: regions[k + 1][0] - regions[k][1])
            regions[i : i + 2] = [(regions[i][0], max(regions[i][1], regions[i + 1][1]))]
        self.retired = regions
        self.high = self.anchor = trade_id
        self.missing = set()
        self.missing_order = deque()
        self.jump_run = 0
        self.reset_barrier()

    def reset_barrier(self) -> None:
        self.barrier = min((lo for lo, _ in self.retired if lo > self.high), default=_NO_BARRIER)


class TradeDedup:
    """Admit each (venue, symbol, trade id) once; report gaps in the ids.

    ``admit`` returns ``(is_new, note)``:

    * ``(True, None)`` -- new, in order (or filling a gap);
    * ``(True, Gap)`` -- new, past ids never seen (within the window);
    * ``(False, None)`` -- a duplicate: drop it;
    * ``(False, Jump)`` -- beyond the window: refused, the state is unchanged;
    * ``(True, Jump)`` -- the ``REANCHOR_TICKS``-th consecutive out-of-window id:
      the stream moved there, this id is the new high-water mark.
    """

    def __init__(self, window: int = DEDUP_WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._window = window
        self._symbols: dict[tuple[str, str], _SymbolIds] = {}
        # The last symbol's state: ticks come in runs of one symbol, and the decoders hand
        # out the same string objects for a repeated symbol, so an identity check skips
        # building a key and looking it up (a few percent of a replay's time per tick).
        self._last_venue = self._last_symbol = ""
        self._last_state: _SymbolIds | None = None

    def admit(self, venue: str, symbol: str, trade_id: int) -> tuple[bool, Gap | Jump | None]:
        if symbol is self._last_symbol and venue is self._last_venue:
            state = self._last_state
        else:
            state = self._symbols.get((venue, symbol))
            self._last_venue, self._last_symbol, self._last_state = venue, symbol, state
        if state is None:
            state = self._symbols[(venue, symbol)] = _SymbolIds(trade_id, self._window, trade_id)
            self._last_state = state
            return True, None
        high = state.high
        if trade_id == high + 1 and trade_id < state.barrier:  # the common case
            state.high = trade_id
            if state.jump_run:
                state.jump_run = 0
            return True, None
        if state.retired and state.retired_holds(trade_id):
            return False, None  # admitted before the stream last re-anchored, maybe
        window = self._window
        if trade_id > high + window or (
            trade_id < high - window and trade_id not in state.missing
        ):
            return self._jump(state, venue, symbol, trade_id)
        state.jump_run = 0
        if trade_id > high:
            gap = Gap(venue, symbol, high + 1, trade_id - 1)
            state.gaps += 1
            state.missing_total += gap.missing
            state.remember_missing(gap.first, gap.last)
            state.high = trade_id
            if trade_id > state.barrier:
                state.reset_barrier()
            return True, gap
        if trade_id in state.missing:  # late, but fills a gap
            state.missing.discard(trade_id)
            return True, None
        return False, None

    def _jump(
        self, state: _SymbolIds, venue: str, symbol: str, trade_id: int
    ) -> tuple[bool, Jump]:
        jump = Jump(venue, symbol, trade_id, state.high)
        last = state.jump_last
        if state.jump_run and last < trade_id <= last + self._window:
            state.jump_run += 1
        else:
            state.jump_run = 1
        state.jump_last = trade_id
        if state.jump_run < REANCHOR_TICKS:
            return False, jump
        state.reanchor(trade_id)
        return True, jump

    def gaps_by_symbol(self) -> dict[str, int]:
        """Number of gaps seen per ``venue:symbol``."""
        return {f"{v}:{s}": w.gaps for (v, s), w in self._symbols.items()}

    def missing_by_symbol(self) -> dict[str, int]:
        """Number of trade ids skipped over per ``venue:symbol`` (late fills included)."""
        return {f"{v}:{s}": w.missing_total for (v, s), w in self._symbols.items()}

    def retired_regions(self) -> int:
        """Retired id ranges held across all symbols (at most ``MAX_RETIRED_REGIONS`` each)."""
        return sum(len(w.retired) for w in self._symbols.values())

    def remembered(self) -> int:
        """Ids held in memory across all symbols (bounded by ``window`` per symbol)."""
        return sum(len(w.missing_order) for w in self._symbols.values())
