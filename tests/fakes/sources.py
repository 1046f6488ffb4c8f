"""Market data made up for the runtime tests: a zig-zag of ticks, a source of prepared batches."""

from __future__ import annotations

from decimal import Decimal

import trio
import trio.testing

from engine.core.events import Tick, tick_id
from engine.ports import TickBatch


def make_ticks(start: int, n: int) -> TickBatch:
    ticks = []
    for i in range(start, start + n):
        # A zig-zag so the SMA crosses and signals/orders/fills appear too.
        price = Decimal(100 + (i // 7) % 5) + Decimal(i % 3) / 10
        ticks.append(
            Tick(
                event_id=tick_id("binance", "BTCUSDT", i),
                venue="binance",
                symbol="BTCUSDT",
                trade_id=i,
                ts_event=i * 400_000_000,
                ts_recv=i * 400_000_000 + 1_000_000,
                price=price,
                qty=Decimal("0.5"),
            )
        )
    return ticks


class ListSource:
    """A MarketDataStream of prepared batches; optionally fails after sending them."""

    def __init__(self, batches: list[TickBatch], fail_with: Exception | None = None) -> None:
        self.batches = batches
        self.fail_with = fail_with

    async def stream(self, send: trio.MemorySendChannel[TickBatch]) -> None:
        for batch in self.batches:
            await send.send(batch)
        if self.fail_with is not None:
            raise self.fail_with
