"""Numbered ticks for the persistence and batching tests (content-derived ids, fixed values)."""

from __future__ import annotations

from decimal import Decimal

from engine.core.events import Record, Tick


def tick(n: int) -> Tick:
    return Tick(event_id=f"binance:BTCUSDT:{n}", venue="binance", symbol="BTCUSDT", trade_id=n,
                ts_event=n, ts_recv=n, price=Decimal("100.5"), qty=Decimal("0.01"))


def ticks(start: int, count: int) -> list[Record]:
    return [tick(n) for n in range(start, start + count)]
