"""What earlier runs left in the database, as execution needs it to resume.

Restarts: the ledger is rebuilt from the persisted fills, open orders of this
mode are resumed, decided signals are remembered, each symbol's mark starts at
its latest persisted trade, and a tick whose trade id is among the persisted
ones of its ``venue:symbol`` (``tape_islands``) only updates the mark and the
staleness estimate -- its effects are already in the database. Only those: a
tick that is not in the database works orders, expiry and the drawdown guard
however far below the highest persisted id it lies (one bogus id of 2**63 - 1
once made every later tick "already persisted", after every restart). This relies on
the runtime persisting each batch's ticks together with the records
``Execution.process`` returned for that batch, in one list (one transaction),
in order: then the database always holds a consistent prefix of the run.

``engine.store.restore.load_restored_state`` builds a ``RestoredState``;
``Execution.restore`` consumes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

from engine.core.events import Fill, Order, OrderState, RiskState
from engine.core.orders import WorkingOrder


@dataclass(frozen=True, slots=True)
class RestoredOrder:
    """An order that was still open when the previous run stopped, as the database has it."""

    order: Order
    state: OrderState
    filled_qty: Decimal
    next_seq: int
    """``seq`` of the next transition (one past the last persisted ``order_events`` row)."""
    fills: int
    """Fills already persisted for it (the next simulated fill is
    ``simulated_fill_id(order_id, fills)``)."""

    def working(self) -> WorkingOrder:
        """The in-memory order execution tracks, at the point the database left it."""
        return replace(
            WorkingOrder.of(self.order),
            state=self.state,
            filled_qty=self.filled_qty,
            next_seq=self.next_seq,
            fills=self.fills,
        )


@dataclass(frozen=True, slots=True)
class RestoredState:
    """What the previous runs left in the database, as execution needs it at start-up.

    Built by ``engine.store.restore.load_restored_state``; ``RestoredState()`` is
    the state of an empty database.
    """

    fills: tuple[Fill, ...] = ()
    """Every persisted fill, in the order it was written (the ledger is rebuilt from them)."""
    open_orders: tuple[RestoredOrder, ...] = ()
    decided_signal_ids: frozenset[str] = frozenset()
    """Signals that already led to an order or a veto: never decided again (I3)."""
    tape_watermarks: Mapping[str, int] = field(default_factory=dict)
    """``"<venue>:<symbol>"`` -> highest trade id persisted (reported; not what
    execution skips by -- that is ``tape_islands``)."""
    tape_islands: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    """``"<venue>:<symbol>"`` -> the persisted trade ids as inclusive ``(first, last)``
    ranges. Ticks with such an id only update marks and the staleness estimate: their
    effects (PAPER fills, timeouts, equity peaks) are already in the database."""
    risk_state: RiskState | None = None
    """The drawdown guard's latest persisted state (``None``: never written)."""
    peak_equity: Decimal | None = None
    """The highest ``peak_equity`` ever persisted."""
    marks: Mapping[str, Decimal] = field(default_factory=dict)
    """Symbol -> price of its latest persisted trade: the marks until the symbol trades
    again, so a restored position or order counts toward exposure (I2) and equity from
    the start, not as 0 until its symbol's next tick."""

    def islands(self) -> dict[tuple[str, str], tuple[tuple[int, int], ...]]:
        """``tape_islands`` keyed ``(venue, symbol)``, as the per-tick path looks them up."""
        out: dict[tuple[str, str], tuple[tuple[int, int], ...]] = {}
        for key, ranges in self.tape_islands.items():
            venue, _, symbol = key.partition(":")
            out[(venue, symbol)] = ranges
        return out
