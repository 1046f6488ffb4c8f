"""PAPER: working the resting orders against one trade of the tape.

``engine.core.paper`` holds the venue's rules (latency, slippage, limits, size,
timeout) and no state; this applies them to execution's open orders on each
tick and books the outcome (``engine.core.booking``). Orders are worked in
submission order, so earlier orders take their share of a trade's quantity
first and a large order fills in parts (S11).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.core.booking import book_fill, cancel_remainder
from engine.core.events import OrderState, Record, Tick
from engine.core.ledger import Ledger
from engine.core.orders import OrderAction, WorkingOrder
from engine.core.paper import PaperVenue
from engine.core.sizing import EXACT

if TYPE_CHECKING:  # engine.config reads the environment: the core only needs its types
    from engine.config import ExecutionSection


def work_orders(
    venue: PaperVenue,
    tick: Tick,
    *,
    settings: ExecutionSection,
    ledger: Ledger,
    open_orders: dict[str, WorkingOrder],
    out: list[Record],
) -> None:
    """Expire, accept and fill the open orders this trade reaches; append their records.

    An order past its ``order_timeout_s`` has its remainder cancelled before the
    trade is considered; one still in flight (``latency_ms``) is left alone.
    """
    available = tick.qty
    for order in list(open_orders.values()):
        if order.expires_at is not None and tick.ts_event >= order.expires_at:
            cancel_remainder(
                order,
                order.expires_at,
                f"paper: order_timeout_s {settings.order_timeout_s} elapsed",
                open_orders=open_orders,
                out=out,
            )
            continue
        if order.state is OrderState.SUBMITTED:
            if tick.ts_event < order.active_at:
                continue
            out.append(
                order.transition(
                    OrderAction.ACCEPT,
                    order.active_at,
                    f"paper: reached the simulated venue after latency_ms {settings.latency_ms}",
                )
            )
        match = venue.match(order, tick, available)
        if match is None:
            continue
        available = EXACT.subtract(available, match.qty)
        book_fill(
            order,
            qty=match.qty,
            price=match.price,
            ts_event=tick.ts_event,
            reason=f"paper: fill against trade {tick.event_id} ({tick.qty} @ {tick.price})",
            fee_bps=settings.fee_bps,
            ledger=ledger,
            open_orders=open_orders,
            out=out,
        )
