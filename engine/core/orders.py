"""The order lifecycle as one transition table and one ``apply``.

An order is born SUBMITTED (the ``Order`` record plus its first ``OrderEvent``)
and then moves only along the table below. Every transition becomes an
``OrderEvent`` with event time, reason and the quantities after it (S10).

==================  ==============  ==================
from                event           to
==================  ==============  ==================
SUBMITTED           ACCEPT          ACCEPTED
SUBMITTED           REJECT          REJECTED   (the venue said no)
SUBMITTED           DENY            DENIED     (our own pre-trade check said no)
SUBMITTED           CANCEL          CANCELED   (withdrawn before the venue acknowledged it)
ACCEPTED            FILL_PARTIAL    PARTIALLY_FILLED
ACCEPTED            FILL            FILLED
ACCEPTED            CANCEL          CANCELED
ACCEPTED            EXPIRE          EXPIRED    (venue time-in-force ran out)
PARTIALLY_FILLED    FILL_PARTIAL    PARTIALLY_FILLED
PARTIALLY_FILLED    FILL            FILLED
PARTIALLY_FILLED    CANCEL          CANCELED
PARTIALLY_FILLED    EXPIRE          EXPIRED
==================  ==============  ==================

FILLED, CANCELED, REJECTED, DENIED and EXPIRED are terminal. Anything not in
the table raises ``IllegalTransition``: it is a bug in the engine, not a market
event, so it must never be swallowed.

Risk denials that happen *before* an order exists are ``Veto`` records, not
orders; DENIED is kept for a venue adapter whose own pre-send check fails
after the order was recorded as SUBMITTED.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from engine.core.events import Order, OrderEvent, OrderState, OrderType, Side
from engine.core.sizing import EXACT, ZERO


class OrderAction(enum.StrEnum):
    """What happened to an order (the input of the state machine)."""

    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    DENY = "DENY"
    FILL_PARTIAL = "FILL_PARTIAL"
    FILL = "FILL"
    CANCEL = "CANCEL"
    EXPIRE = "EXPIRE"


TRANSITIONS: Final[dict[tuple[OrderState, OrderAction], OrderState]] = {
    (OrderState.SUBMITTED, OrderAction.ACCEPT): OrderState.ACCEPTED,
    (OrderState.SUBMITTED, OrderAction.REJECT): OrderState.REJECTED,
    (OrderState.SUBMITTED, OrderAction.DENY): OrderState.DENIED,
    (OrderState.SUBMITTED, OrderAction.CANCEL): OrderState.CANCELED,
    (OrderState.ACCEPTED, OrderAction.FILL_PARTIAL): OrderState.PARTIALLY_FILLED,
    (OrderState.ACCEPTED, OrderAction.FILL): OrderState.FILLED,
    (OrderState.ACCEPTED, OrderAction.CANCEL): OrderState.CANCELED,
    (OrderState.ACCEPTED, OrderAction.EXPIRE): OrderState.EXPIRED,
    (OrderState.PARTIALLY_FILLED, OrderAction.FILL_PARTIAL): OrderState.PARTIALLY_FILLED,
    (OrderState.PARTIALLY_FILLED, OrderAction.FILL): OrderState.FILLED,
    (OrderState.PARTIALLY_FILLED, OrderAction.CANCEL): OrderState.CANCELED,
    (OrderState.PARTIALLY_FILLED, OrderAction.EXPIRE): OrderState.EXPIRED,
}
"""The whole lifecycle: ``(state, action) -> next state``."""

TERMINAL: Final[frozenset[OrderState]] = frozenset(
    {
        OrderState.FILLED,
        OrderState.CANCELED,
        OrderState.REJECTED,
        OrderState.DENIED,
        OrderState.EXPIRED,
    }
)


class IllegalTransition(Exception):
    """Raised by ``apply`` for a ``(state, action)`` pair the lifecycle does not allow."""


def apply(state: OrderState, action: OrderAction) -> OrderState:
    """The state after ``action``; raises ``IllegalTransition`` if the table has no such edge."""
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise IllegalTransition(f"order in state {state} cannot {action}") from None


def is_open(state: OrderState) -> bool:
    return state not in TERMINAL


@dataclass(slots=True)
class WorkingOrder:
    """The mutable, in-memory view of one order that execution still tracks.

    Only ``transition`` changes ``state``/``filled_qty`` and it always returns the
    ``OrderEvent`` to persist, so memory and the ``order_events`` table cannot
    disagree.
    """

    order_id: str
    signal_id: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal
    ts_submitted: int
    state: OrderState = OrderState.SUBMITTED
    filled_qty: Decimal = ZERO
    next_seq: int = 1
    fills: int = 0
    active_at: int = 0
    """Event time from which a simulated venue works the order (submission + latency)."""
    expires_at: int | None = None
    """Event time at which the unfilled remainder is cancelled (PAPER's ``order_timeout_s``)."""

    @classmethod
    def of(cls, order: Order) -> WorkingOrder:
        """The working view of a recorded ``order``, as freshly submitted."""
        return cls(
            order_id=order.order_id,
            signal_id=order.signal_id,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.qty,
            price=order.price,
            ts_submitted=order.ts_event,
        )

    @property
    def leaves_qty(self) -> Decimal:
        return EXACT.subtract(self.qty, self.filled_qty)

    def submitted_event(self, reason: str) -> OrderEvent:
        """The first event (seq 0) of a freshly created order."""
        return OrderEvent(
            order_id=self.order_id,
            seq=0,
            state=OrderState.SUBMITTED,
            ts_event=self.ts_submitted,
            reason=reason,
            filled_qty=ZERO,
            leaves_qty=self.qty,
        )

    def transition(
        self, action: OrderAction, ts_event: int, reason: str, fill_qty: Decimal = ZERO
    ) -> OrderEvent:
        """Apply ``action`` (adding ``fill_qty`` for fills) and return the event to persist.

        *Error handling:* raises ``IllegalTransition`` on an edge not in the table,
        and ``ValueError`` if a fill's quantity is not positive or would overfill,
        or if FILL leaves a remainder / FILL_PARTIAL leaves none.
        """
        new_state = apply(self.state, action)
        filled = self.filled_qty
        if action in (OrderAction.FILL, OrderAction.FILL_PARTIAL):
            if fill_qty <= ZERO:
                raise ValueError(f"{self.order_id}: fill quantity {fill_qty} must be > 0")
            filled = EXACT.add(filled, fill_qty)
            if filled > self.qty:
                raise ValueError(f"{self.order_id}: fill of {fill_qty} overfills {self.qty}")
            complete = filled == self.qty
            if complete != (action is OrderAction.FILL):
                raise ValueError(f"{self.order_id}: {action} leaves {self.qty - filled}")
        self.state = new_state
        self.filled_qty = filled
        event = OrderEvent(
            order_id=self.order_id,
            seq=self.next_seq,
            state=new_state,
            ts_event=ts_event,
            reason=reason,
            filled_qty=filled,
            leaves_qty=ZERO if new_state in TERMINAL else self.leaves_qty,
        )
        self.next_seq += 1
        return event


def fill_action(order: WorkingOrder, fill_qty: Decimal) -> OrderAction:
    """FILL when ``fill_qty`` completes the order, FILL_PARTIAL otherwise."""
    return OrderAction.FILL if fill_qty == order.leaves_qty else OrderAction.FILL_PARTIAL
