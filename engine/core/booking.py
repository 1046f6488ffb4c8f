"""Booking what a simulated venue did to an order: its records, the ledger, the open set.

One place turns "this order filled ``qty`` at ``price``" or "its remainder is
cancelled" into the ``OrderEvent`` / ``Fill`` records to persist and the
matching change in memory (ledger, open orders), so SHADOW's immediate fill
and PAPER's fills against the tape cannot book differently. LIVE books
nothing here: the venue's own records come back through ``apply_venue``.

Ids are deterministic (I3): ``order_id = "ord:" + signal_id`` (also the
client order id), ``veto_id = "veto:" + signal_id``, ``fill_id =
"fill:<order_id>:<n>"`` with ``n`` the fills already booked for the order.
"""

from __future__ import annotations

from decimal import Decimal

from engine.core.events import Fill, Order, OrderState, Record
from engine.core.ledger import Ledger
from engine.core.orders import OrderAction, WorkingOrder, fill_action
from engine.core.sizing import cash_delta_for, fee_for, position_delta_for


def order_id_for(signal_id: str) -> str:
    return f"ord:{signal_id}"


def veto_id_for(signal_id: str) -> str:
    return f"veto:{signal_id}"


def fill_id_for(order_id: str, n: int) -> str:
    return f"fill:{order_id}:{n}"


def order_record(order: WorkingOrder, mode: str) -> Order:
    """The ``Order`` row of a freshly created order (``mode``: ``"SHADOW"``, ``"PAPER"``, ...)."""
    return Order(
        order_id=order.order_id,
        signal_id=order.signal_id,
        mode=mode,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        qty=order.qty,
        price=order.price,
        ts_event=order.ts_submitted,
    )


def book_fill(
    order: WorkingOrder,
    *,
    qty: Decimal,
    price: Decimal,
    ts_event: int,
    reason: str,
    fee_bps: Decimal,
    ledger: Ledger,
    open_orders: dict[str, WorkingOrder],
    out: list[Record],
) -> Fill:
    """Book one fill of ``qty`` at ``price``: its transition, the ``Fill`` and the ledger.

    A fill that completes the order also removes it from ``open_orders``.
    """
    action = fill_action(order, qty)
    fee = fee_for(qty, price, fee_bps)
    position_delta = position_delta_for(order.side, qty)
    fill = Fill(
        fill_id=fill_id_for(order.order_id, order.fills),
        order_id=order.order_id,
        symbol=order.symbol,
        side=order.side,
        qty=qty,
        price=price,
        fee=fee,
        cash_delta=cash_delta_for(position_delta, price, fee),
        position_delta=position_delta,
        ts_event=ts_event,
    )
    out.append(order.transition(action, ts_event, f"{reason}: {qty} @ {price}", qty))
    out.append(fill)
    order.fills += 1
    ledger.apply(fill)
    if order.state is OrderState.FILLED:
        open_orders.pop(order.order_id, None)
    return fill


def cancel_remainder(
    order: WorkingOrder,
    ts_event: int,
    reason: str,
    *,
    open_orders: dict[str, WorkingOrder],
    out: list[Record],
) -> None:
    """Cancel the unfilled remainder; what already filled stays booked (S11)."""
    leaves = order.leaves_qty
    out.append(
        order.transition(
            OrderAction.CANCEL,
            ts_event,
            f"{reason}; cancelled remainder {leaves} of {order.qty}",
        )
    )
    del open_orders[order.order_id]
