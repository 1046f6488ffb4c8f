"""Ticks and signals made by hand, a millisecond apart from a fixed instant; a config per mode."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from engine.config.schema import Config, EngineSection, ExecutionSection, Mode
from engine.core.events import Side, Signal, Tick

T0 = 1_723_161_255_000_000_000


def tick(n: int, price: str, qty: str = "1", lag_ms: int = 0, symbol: str = "BTCUSDT") -> Tick:
    ts = T0 + n * 1_000_000
    return Tick(
        event_id=f"binance:{symbol}:{n}",
        venue="binance",
        symbol=symbol,
        trade_id=n,
        ts_event=ts,
        ts_recv=ts + lag_ms * 1_000_000,
        price=Decimal(price),
        qty=Decimal(qty),
    )


def signal(t: Tick, side: Side, price: str | None = None) -> Signal:
    return Signal(
        signal_id=f"sig:{t.event_id}",
        symbol=t.symbol,
        side=side,
        ts_event=t.ts_event,
        ts_recv=t.ts_recv,
        price=Decimal(price) if price is not None else t.price,
        cause_id=t.event_id,
    )


def config(mode: Mode = Mode.SHADOW, **execution: object) -> Config:
    return msgspec.structs.replace(
        Config(),
        engine=EngineSection(mode=mode),
        execution=msgspec.convert(execution, ExecutionSection, strict=False),
    )
