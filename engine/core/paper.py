"""The PAPER venue: how a resting order meets the tape (pure rules, no state of its own).

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
replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from engine.core.events import OrderType, Side, Tick
from engine.core.orders import WorkingOrder
from engine.core.sizing import ZERO, slipped_price

NS_PER_MS: Final = 1_000_000
NS_PER_S: Final = 1_000_000_000


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
