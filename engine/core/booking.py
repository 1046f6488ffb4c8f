"""The order book: execution's open orders and ledger, and the one way to book into them.

``OrderBook`` owns the state an order changes -- the open orders by id and the
ledger of fills -- and is the one place that turns "this order filled ``qty``
at ``price``" or "its remainder is cancelled" into the ``OrderEvent`` / ``Fill``
records to persist *and* the matching change in memory, so SHADOW's immediate
fill, PAPER's fills against the tape and LIVE's venue trades cannot book
differently. In LIVE it is the only order book: ``engine.core.live_orders``
turns the venue's reports into bookings here (docs/execution.md, "LIVE").

Ids are deterministic (I3): ``order_id = "ord:" + signal_id`` (also the
client order id), ``veto_id = "veto:" + signal_id``. A fill id names what
filled: ``simulated_fill_id`` (``"fill:<order_id>:<n>"``, ``n`` the fills
already booked for the order -- SHADOW, PAPER) or ``venue_fill_id``
(``"fill:<order_id>:T<trade id>"``, the venue's trade -- LIVE). See
``docs/execution.md``.
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


def simulated_fill_id(order_id: str, n: int) -> str:
    """The id of the ``n``-th fill (from 0) a simulated venue books for ``order_id``."""
    return f"fill:{order_id}:{n}"


def venue_fill_id(order_id: str, trade_id: int) -> str:
    """The id of the fill of ``order_id`` that is the venue's trade ``trade_id`` (LIVE)."""
    return f"fill:{order_id}:T{trade_id}"


def trade_id_of(fill_id: str) -> int | None:
    """The venue trade id inside a ``venue_fill_id`` (``None`` for a simulated fill id)."""
    _, sep, tail = fill_id.rpartition(":T")
    return int(tail) if sep and tail.isdigit() else None


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


class OrderBook:
    """Open orders by id and the ledger of every fill booked (restored ones included)."""

    __slots__ = ("ledger", "open_orders")

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = Ledger() if ledger is None else ledger
        self.open_orders: dict[str, WorkingOrder] = {}

    def open(self, order: WorkingOrder) -> None:
        """Hold ``order`` as open (until it fills, is cancelled or the venue ends it)."""
        self.open_orders[order.order_id] = order

    def close(self, order_id: str) -> None:
        """``order_id`` reached a terminal state: it is no longer open."""
        del self.open_orders[order_id]

    def fill(
        self,
        order: WorkingOrder,
        *,
        qty: Decimal,
        price: Decimal,
        ts_event: int,
        reason: str,
        fee_bps: Decimal,
        out: list[Record],
    ) -> Fill:
        """Book one simulated fill of ``qty`` at ``price`` (SHADOW, PAPER): see ``book``."""
        fee = fee_for(qty, price, fee_bps)
        position_delta = position_delta_for(order.side, qty)
        fill = Fill(
            fill_id=simulated_fill_id(order.order_id, order.fills),
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
        self.book(order, fill, f"{reason}: {qty} @ {price}", out)
        return fill

    def book(self, order: WorkingOrder, fill: Fill, reason: str, out: list[Record]) -> None:
        """Book ``fill`` of ``order`` -- every mode's one way: its transition, the ``Fill``,
        the ledger, in that order. A fill that completes the order also closes it."""
        out.append(order.transition(fill_action(order, fill.qty), fill.ts_event, reason, fill.qty))
        out.append(fill)
        order.fills += 1
        self.ledger.apply(fill)
        if order.state is OrderState.FILLED:
            self.open_orders.pop(order.order_id, None)

    def cancel_remainder(
        self, order: WorkingOrder, ts_event: int, reason: str, out: list[Record]
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
        self.close(order.order_id)
