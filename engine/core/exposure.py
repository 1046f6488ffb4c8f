"""Exposure: what the book holds plus what its open orders could still add, at a mark.

The risk chain judges a proposal against these figures. Open BUYs count with
their unfilled remainder, as if it filled: an order the venue may still fill
is exposure already (I2) -- in LIVE that includes an order whose cancellation
was requested but not yet confirmed.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from engine.core.events import Side
from engine.core.ledger import Ledger
from engine.core.orders import WorkingOrder
from engine.core.sizing import EXACT, ZERO


def symbol_exposure(
    ledger: Ledger, open_orders: Mapping[str, WorkingOrder], symbol: str, mark: Decimal
) -> Decimal:
    """Position plus the unfilled remainder of open BUYs of ``symbol``, at ``mark``."""
    qty = ledger.position(symbol)
    for order in open_orders.values():
        if order.symbol == symbol and order.side is Side.BUY:
            qty = EXACT.add(qty, order.leaves_qty)
    return EXACT.multiply(qty, mark)


def total_exposure(
    ledger: Ledger, open_orders: Mapping[str, WorkingOrder], marks: Mapping[str, Decimal]
) -> Decimal:
    """Sum of every symbol's exposure (held or ordered), each at its mark (zero if none)."""
    symbols = set(ledger.books) | {o.symbol for o in open_orders.values()}
    total = ZERO
    for symbol in sorted(symbols):
        total = EXACT.add(
            total, symbol_exposure(ledger, open_orders, symbol, marks.get(symbol, ZERO))
        )
    return total


def unsold_position(
    ledger: Ledger, open_orders: Mapping[str, WorkingOrder], symbol: str
) -> Decimal:
    """The position in ``symbol`` not already being sold by an open SELL (a SELL's size)."""
    qty = ledger.position(symbol)
    for order in open_orders.values():
        if order.symbol == symbol and order.side is Side.SELL:
            qty = EXACT.subtract(qty, order.leaves_qty)
    return qty
