"""The order lifecycle table: every legal transition, and every illegal one raises."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from engine.core.events import OrderState, OrderType, Side
from engine.core.orders import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    OrderAction,
    WorkingOrder,
    apply,
    fill_action,
)

LEGAL = [
    (OrderState.SUBMITTED, OrderAction.ACCEPT, OrderState.ACCEPTED),
    (OrderState.SUBMITTED, OrderAction.REJECT, OrderState.REJECTED),
    (OrderState.SUBMITTED, OrderAction.DENY, OrderState.DENIED),
    (OrderState.SUBMITTED, OrderAction.CANCEL, OrderState.CANCELED),
    (OrderState.ACCEPTED, OrderAction.FILL_PARTIAL, OrderState.PARTIALLY_FILLED),
    (OrderState.ACCEPTED, OrderAction.FILL, OrderState.FILLED),
    (OrderState.ACCEPTED, OrderAction.CANCEL, OrderState.CANCELED),
    (OrderState.ACCEPTED, OrderAction.EXPIRE, OrderState.EXPIRED),
    (OrderState.PARTIALLY_FILLED, OrderAction.FILL_PARTIAL, OrderState.PARTIALLY_FILLED),
    (OrderState.PARTIALLY_FILLED, OrderAction.FILL, OrderState.FILLED),
    (OrderState.PARTIALLY_FILLED, OrderAction.CANCEL, OrderState.CANCELED),
    (OrderState.PARTIALLY_FILLED, OrderAction.EXPIRE, OrderState.EXPIRED),
]
ILLEGAL = [
    (state, action)
    for state, action in itertools.product(OrderState, OrderAction)
    if (state, action) not in {(s, a) for s, a, _ in LEGAL}
]


@pytest.mark.parametrize(("state", "action", "after"), LEGAL)
def test_apply_legal_transition_returns_next_state(
    state: OrderState, action: OrderAction, after: OrderState
) -> None:
    assert apply(state, action) is after


@pytest.mark.parametrize(("state", "action"), ILLEGAL)
def test_apply_illegal_transition_raises(state: OrderState, action: OrderAction) -> None:
    with pytest.raises(IllegalTransition):
        apply(state, action)


def test_transition_table_is_exactly_the_documented_one() -> None:
    assert {(s, a): t for s, a, t in LEGAL} == TRANSITIONS


def test_terminal_states_have_no_way_out() -> None:
    assert all(state not in TERMINAL for state, _ in TRANSITIONS)
    assert set(TRANSITIONS.values()) - TERMINAL == {
        OrderState.ACCEPTED,
        OrderState.PARTIALLY_FILLED,
    }


def order(qty: str = "3") -> WorkingOrder:
    return WorkingOrder(
        order_id="ord:sig:x",
        signal_id="sig:x",
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        qty=Decimal(qty),
        price=Decimal(100),
        ts_submitted=10,
    )


def test_working_order_partial_fills_then_cancel_reports_quantities_and_seq() -> None:
    o = order()
    assert o.submitted_event("s").seq == 0
    accepted = o.transition(OrderAction.ACCEPT, 11, "ack")
    first = o.transition(fill_action(o, Decimal(1)), 12, "f", Decimal(1))
    cancel = o.transition(OrderAction.CANCEL, 13, "timeout")
    assert [e.seq for e in (accepted, first, cancel)] == [1, 2, 3]
    assert (first.state, first.filled_qty, first.leaves_qty) == (
        OrderState.PARTIALLY_FILLED,
        1,
        2,
    )
    assert (cancel.state, cancel.filled_qty, cancel.leaves_qty) == (OrderState.CANCELED, 1, 0)


def test_working_order_fill_completing_order_is_filled() -> None:
    o = order()
    o.transition(OrderAction.ACCEPT, 11, "ack")
    assert fill_action(o, Decimal(3)) is OrderAction.FILL
    done = o.transition(OrderAction.FILL, 12, "f", Decimal(3))
    assert (done.state, done.leaves_qty) == (OrderState.FILLED, 0)


def test_working_order_overfill_raises_and_changes_nothing() -> None:
    o = order()
    o.transition(OrderAction.ACCEPT, 11, "ack")
    with pytest.raises(ValueError, match="overfills"):
        o.transition(OrderAction.FILL, 12, "f", Decimal(4))
    assert (o.state, o.filled_qty, o.next_seq) == (OrderState.ACCEPTED, 0, 2)


def test_working_order_fill_on_terminal_order_raises_illegal() -> None:
    o = order()
    o.transition(OrderAction.ACCEPT, 11, "ack")
    o.transition(OrderAction.CANCEL, 12, "c")
    with pytest.raises(IllegalTransition):
        o.transition(OrderAction.FILL_PARTIAL, 13, "f", Decimal(1))
