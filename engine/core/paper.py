"""PAPER: the simulated venue's rules, and ``PaperMode``, which works the book by them.

Realistic enough that a paper result means something -- the classic dry-run
sins (everything fills instantly, at any size, at a price nobody traded) are
exactly what these rules forbid:

* **latency** -- an order reaches the venue ``latency_ms`` of event time after
  the signal; only trades printed at or after that moment, and processed after
  the order was submitted, can fill it.
* **market orders** fill at each later trade's price plus ``slippage_bps``
  (BUY pays up, SELL receives less).
* **limit orders** fill only when the tape trades at or through the limit
  (BUY: trade price <= limit; SELL: >=), at the limit price -- never better.
* **size** -- each fill is capped by the quantity of the trade that fills it,
  shared by all resting orders on the symbol in submission order, so a large
  order fills in parts (S11).
* **timeout** -- whatever is still unfilled ``order_timeout_s`` of event time
  after submission is cancelled.

Everything is a function of the tick sequence, so PAPER is deterministic under
replay. ``PaperVenue`` holds the rules (no state of its own); ``PaperMode`` is
PAPER's ``engine.core.modes.ModePolicy``: it applies them to the open orders of
execution's ``OrderBook``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from engine.config.schema import ExecutionSection, Mode
from engine.core.booking import OrderBook
from engine.core.events import NS_PER_MS, NS_PER_S, Order, OrderState, OrderType, Record, Side, Tick
from engine.core.modes import SimulatedMode
from engine.core.orders import OrderAction, WorkingOrder
from engine.core.sizing import EXACT, ZERO, slipped_price


@dataclass(frozen=True, slots=True)
class Match:
    qty: Decimal
    price: Decimal


@dataclass(frozen=True, slots=True)
class PaperVenue:
    latency_ns: int
    timeout_ns: int
    slippage_bps: Decimal

    @classmethod
    def from_settings(
        cls, latency_ms: int, order_timeout_s: float, slippage_bps: Decimal
    ) -> PaperVenue:
        # order_timeout_s is a float key; round once to whole nanoseconds (deterministic).
        return cls(
            latency_ns=latency_ms * NS_PER_MS,
            timeout_ns=round(order_timeout_s * NS_PER_S),
            slippage_bps=slippage_bps,
        )

    def schedule(self, order: WorkingOrder) -> None:
        """Set when the venue starts working ``order`` and when its remainder is cancelled."""
        order.active_at = order.ts_submitted + self.latency_ns
        order.expires_at = order.ts_submitted + self.timeout_ns

    def match(self, order: WorkingOrder, tick: Tick, available: Decimal) -> Match | None:
        """How much of ``order`` this trade fills, and at what price (``None``: no fill).

        ``available`` is what is left of the trade's quantity after earlier
        orders on the same trade took their share.
        """
        if tick.symbol != order.symbol or tick.ts_event < order.active_at or available <= ZERO:
            return None
        if order.order_type is OrderType.MARKET:
            price = slipped_price(tick.price, order.side, self.slippage_bps)
        else:
            crosses = (
                tick.price <= order.price if order.side is Side.BUY else tick.price >= order.price
            )
            if not crosses:
                return None
            price = order.price
        return Match(qty=min(order.leaves_qty, available), price=price)


class PaperMode(SimulatedMode):
    """PAPER: an approved order rests at the simulated venue and is worked trade by trade."""

    mode: Final = Mode.PAPER
    order_mode: Final = Mode.PAPER.name
    rests_limit_orders: Final = True
    fills_at_once: Final = False

    def __init__(self, book: OrderBook, settings: ExecutionSection) -> None:
        super().__init__(book, settings)
        self.venue = PaperVenue.from_settings(
            settings.latency_ms, settings.order_timeout_s, settings.slippage_bps
        )

    def resume(self, order: WorkingOrder) -> bool:
        self.venue.schedule(order)
        return True

    def place(self, order: WorkingOrder, record: Order, out: list[Record]) -> None:
        out.append(order.submitted_event("paper: submitted to the simulated venue"))
        self.venue.schedule(order)
        self._book.open(order)

    def work(self, tick: Tick, out: list[Record]) -> None:
        """Expire, accept and fill the open orders this trade reaches; append their records.

        An order past its ``order_timeout_s`` has its remainder cancelled before the
        trade is considered; one still in flight (``latency_ms``) is left alone.
        """
        book, settings, venue = self._book, self._settings, self.venue
        available = tick.qty
        for order in list(book.open_orders.values()):
            if order.expires_at is not None and tick.ts_event >= order.expires_at:
                book.cancel_remainder(
                    order,
                    order.expires_at,
                    f"paper: order_timeout_s {settings.order_timeout_s} elapsed",
                    out,
                )
                continue
            if order.state is OrderState.SUBMITTED:
                if tick.ts_event < order.active_at:
                    continue
                out.append(
                    order.transition(
                        OrderAction.ACCEPT,
                        order.active_at,
                        f"paper: reached the simulated venue after latency_ms "
                        f"{settings.latency_ms}",
                    )
                )
            match = venue.match(order, tick, available)
            if match is None:
                continue
            available = EXACT.subtract(available, match.qty)
            book.fill(
                order,
                qty=match.qty,
                price=match.price,
                ts_event=tick.ts_event,
                reason=f"paper: fill against trade {tick.event_id} ({tick.qty} @ {tick.price})",
                fee_bps=settings.fee_bps,
                out=out,
            )
