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

from engine.core.events import Fill, Order, OrderEvent, OrderState, Record, VenueFailure
from engine.core.ledger import Ledger
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


class LiveOrders:
    """The intents outbox and the venue's records adopted into execution's open orders."""

    def __init__(self) -> None:
        self._intents: list[Intent] = []
        self._cancelling: set[str] = set()
        """Orders whose cancellation was requested and not yet confirmed."""
        self.fill_ids: set[str] = set()
        """Every fill booked (restored ones included): a fill is booked once (I3)."""

    def submit(self, order: Order) -> None:
        """Ask for ``order`` to be sent (after its SUBMITTED record is persisted)."""
        self._intents.append(SubmitOrder(order))

    def request_cancel(self, order: WorkingOrder, reason: str) -> None:
        """Ask once for the remainder to be cancelled; the order stays open until confirmed."""
        if order.order_id not in self._cancelling:
            self._cancelling.add(order.order_id)
            self._intents.append(CancelOrder(order.order_id, order.symbol, reason))

    def expire(
        self, open_orders: dict[str, WorkingOrder], ts_event: int, order_timeout_s: float
    ) -> None:
        """Request the cancellation of every open order whose ``order_timeout_s`` elapsed."""
        for order in list(open_orders.values()):
            if order.expires_at is not None and ts_event >= order.expires_at:
                self.request_cancel(order, f"live: order_timeout_s {order_timeout_s} elapsed")

    def take(self) -> list[Intent]:
        """What to do at the venue since the last call, in order (empties the outbox)."""
        intents, self._intents = self._intents, []
        return intents

    def apply(
        self,
        records: Iterable[Record],
        open_orders: dict[str, WorkingOrder],
        ledger: Ledger,
    ) -> list[Record]:
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
                if self._adopt(record, open_orders):
                    changed.append(record)
            elif type(record) is VenueFailure:
                if record.operation == CANCEL_OPERATION:
                    self._cancelling.discard(record.order_id)
            elif type(record) is Fill:
                if record.fill_id in self.fill_ids:
                    continue
                ledger.apply(record)
                self.fill_ids.add(record.fill_id)
                changed.append(record)
        return changed

    def _adopt(self, event: OrderEvent, open_orders: dict[str, WorkingOrder]) -> bool:
        order = open_orders.get(event.order_id)
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
            del open_orders[event.order_id]
            self._cancelling.discard(event.order_id)
        return True


def _reachable(state: OrderState, target: OrderState) -> bool:
    """Whether one step of the lifecycle table leads from ``state`` to ``target``."""
    return any(to is target for (origin, _action), to in TRANSITIONS.items() if origin is state)
