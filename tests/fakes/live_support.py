"""The core's one LIVE order book, for tests that drive the LIVE adapter without an engine.

In the engine ``Execution`` records an approved order and opens it in its book;
here ``place`` does the same on a bare ``LiveMode`` (no risk chain), so the
adapter under test reports into -- and reads -- the real book.
"""

from __future__ import annotations

from engine.core.booking import OrderBook
from engine.core.events import Order, Record
from engine.core.live_orders import LiveMode
from engine.core.orders import WorkingOrder

TIMEOUT_S = 30.0


def live_book(book: OrderBook | None = None) -> LiveMode:
    """A LIVE book over ``book`` (a new, empty one by default); its ``order_timeout_s``
    matters only to ticks, never sent here."""
    orders = OrderBook() if book is None else book
    return LiveMode(orders, TIMEOUT_S, round(TIMEOUT_S * 1_000_000_000))


def place(book: LiveMode, order: Order) -> list[Record]:
    """What the core records for an approved LIVE order: ``[Order, SUBMITTED]``, held open."""
    out: list[Record] = [order]
    book.place(WorkingOrder.of(order), order, out)
    book.take_intents()
    return out
