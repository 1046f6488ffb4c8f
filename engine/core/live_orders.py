"""LIVE: what execution asks of the real venue, and how it adopts what the venue answers.

In LIVE the risk chain, sizing, ids and ledger are the same as in SHADOW and
PAPER; only the venue is real, so execution cannot decide outcomes -- it asks
for them. An approved order is recorded SUBMITTED (``Order`` + its seq-0
``OrderEvent``, to be persisted *before* anything is sent) and stays open; a
cancellation (superseded, HALTED, ``order_timeout_s`` of event time elapsed)
is only *requested*: the order stays open -- its remainder still counts toward
exposure and ``max_open_orders`` (I2) -- until the venue confirms. Both are
*intents* in an outbox (``take``) that the shell (``engine.runtime.live``) carries to
the venue. What the venue answers comes back as the adapter's ``OrderEvent``s
and ``Fill``s through ``apply``: transitions are adopted by ``seq`` (older or
repeated ones change nothing), fills are booked once by ``fill_id`` (I3, I4).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from engine.config.schema import Mode
from engine.core.booking import OrderBook
from engine.core.events import (
    Fill,
    Order,
    OrderEvent,
    OrderState,
    Record,
    Tick,
    VenueFailure,
)
from engine.core.orders import TERMINAL, TRANSITIONS, WorkingOrder


@dataclass(frozen=True, slots=True)
class SubmitOrder:
    """LIVE intent: send ``order`` to the venue (its SUBMITTED record must be persisted first)."""

    order: Order


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """LIVE intent: ask the venue to cancel the unfilled remainder of ``order_id``."""

    order_id: str
    symbol: str
    reason: str


CANCEL_OPERATION: Final = "cancel_order"
"""The ``VenueFailure.operation`` of a failed cancel request (the adapter's name for it)."""

Intent = SubmitOrder | CancelOrder
"""What LIVE execution asks the shell to do at the venue, in the order it must be done."""


class LiveMode:
    """LIVE: the intents outbox, and the venue's records adopted into execution's book."""

    mode: Final = Mode.LIVE
    order_mode: Final = Mode.LIVE.name
    rests_limit_orders: Final = True
    fills_at_once: Final = False
    supersede_frees_slot: Final = False

    def __init__(self, book: OrderBook, order_timeout_s: float, timeout_ns: int) -> None:
        self._book = book
        self._order_timeout_s = order_timeout_s
        self._timeout_ns = timeout_ns
        self._intents: list[Intent] = []
        self._cancelling: set[str] = set()
        """Orders whose cancellation was requested and not yet confirmed."""
        self.fill_ids: set[str] = set()
        """Every fill booked (restored ones included): a fill is booked once (I3)."""

    def resume(self, order: WorkingOrder) -> bool:
        """Resumed as open; the shell reconciles it with the venue before trading."""
        order.expires_at = order.ts_submitted + self._timeout_ns
        return True

    def restore_fill(self, fill: Fill) -> None:
        self.fill_ids.add(fill.fill_id)

    def place(self, order: WorkingOrder, record: Order, out: list[Record]) -> None:
        """Record SUBMITTED, keep it open, and ask for it to be sent (after it is persisted)."""
        out.append(order.submitted_event("live: recorded, to be sent to the venue"))
        order.expires_at = order.ts_submitted + self._timeout_ns
        self._book.open(order)
        self._intents.append(SubmitOrder(record))

    def work(self, tick: Tick, out: list[Record]) -> None:
        """Request the cancellation of every open order whose ``order_timeout_s`` elapsed."""
        ts_event = tick.ts_event
        for order in list(self._book.open_orders.values()):
            if order.expires_at is not None and ts_event >= order.expires_at:
                self.cancel(
                    order, ts_event, f"live: order_timeout_s {self._order_timeout_s} elapsed", out
                )

    def cancel(self, order: WorkingOrder, ts_event: int, reason: str, out: list[Record]) -> None:
        """Ask once for the remainder to be cancelled; the order stays open until the venue
        confirms (its CANCELED comes back through ``apply_venue``)."""
        if order.order_id not in self._cancelling:
            self._cancelling.add(order.order_id)
            self._intents.append(CancelOrder(order.order_id, order.symbol, reason))

    def take_intents(self) -> list[Intent]:
        """What to do at the venue since the last call, in order (empties the outbox)."""
        intents, self._intents = self._intents, []
        return intents

    def apply_venue(self, records: Iterable[Record]) -> list[Record]:
        """Book what the venue said; return the records that changed anything here.

        ``records`` are the adapter's ``OrderEvent``s and ``Fill``s; a
        ``VenueFailure`` of a ``cancel_order`` call only re-arms that order's
        cancellation (the venue did not confirm it: the next tick past the
        timeout, or the next superseding signal or halt, requests it again, one
        request in flight at a time); anything else is ignored. An event is adopted when its ``seq``
        is at or beyond the order's next one -- the adapter numbers transitions,
        and the submit path and the user stream may hand them over out of order;
        an older or repeated event changes nothing. A fill is booked in the ledger
        once per ``fill_id``. Applying the same records again returns ``[]`` and
        changes nothing (I3). The caller persists *all* of ``records`` (inserts
        are idempotent), not only what this returns.

        *Error handling:* an inconsistent event is a bug, never a market event:
        ``ValueError`` for one that overfills its order, un-fills it, or (when it
        is the very next transition) is not an edge of the lifecycle table.
        """
        changed: list[Record] = []
        for record in records:
            if type(record) is OrderEvent:
                if self._adopt(record):
                    changed.append(record)
            elif type(record) is VenueFailure:
                if record.operation == CANCEL_OPERATION:
                    self._cancelling.discard(record.order_id)
            elif type(record) is Fill:
                if record.fill_id in self.fill_ids:
                    continue
                self._book.ledger.apply(record)
                self.fill_ids.add(record.fill_id)
                changed.append(record)
        return changed

    def _adopt(self, event: OrderEvent) -> bool:
        order = self._book.open_orders.get(event.order_id)
        if order is None or event.seq < order.next_seq:
            return False  # closed already, or a transition we already hold
        if event.filled_qty > order.qty or event.filled_qty < order.filled_qty:
            raise ValueError(
                f"{event.order_id} seq {event.seq}: filled {event.filled_qty} is outside "
                f"[{order.filled_qty}, {order.qty}]"
            )
        if event.seq == order.next_seq and not _reachable(order.state, event.state):
            raise ValueError(f"{event.order_id}: no transition {order.state} -> {event.state}")
        order.state = event.state
        order.filled_qty = event.filled_qty
        order.next_seq = event.seq + 1
        if event.state in TERMINAL:
            self._book.close(event.order_id)
            self._cancelling.discard(event.order_id)
        return True


def _reachable(state: OrderState, target: OrderState) -> bool:
    """Whether one step of the lifecycle table leads from ``state`` to ``target``."""
    return any(to is target for (origin, _action), to in TRANSITIONS.items() if origin is state)
