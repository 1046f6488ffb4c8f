"""Deliberately broken strategies: one raises, one mutates ticks, one forges lineage."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from engine.core.events import Side, Signal, Tick
from engine.core.hosted import signal_for


class Params(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    after: int = 5000
    """Raise at this tick (counted from 1)."""


class RaisesAfter:
    Params = Params

    def __init__(self, params: Params) -> None:
        self._after = params.after
        self._seen = 0

    def on_tick(self, tick: Tick) -> Signal | None:
        self._seen += 1
        if self._seen == self._after:
            raise ZeroDivisionError(f"strategy bug at tick {tick.event_id}")
        if self._seen % 1000 == 0:
            return signal_for(tick, Side.BUY if self._seen % 2000 else Side.SELL)
        return None


class MutatesTicks:
    def on_tick(self, tick: Tick) -> Signal | None:
        msgspec.structs.force_setattr(tick, "price", tick.price + Decimal("0.01"))
        return None


class ForgesLineage:
    def on_tick(self, tick: Tick) -> Signal | None:
        if tick.trade_id % 100 == 0:
            signal = signal_for(tick, Side.BUY)
            return msgspec.structs.replace(signal, cause_id="someone-else")
        return None


class RefusesToBuild:
    """Its constructor refuses (a bad combination its Params cannot express): exit 12."""

    def __init__(self) -> None:
        raise ValueError("needs a venue this engine does not have")

    def on_tick(self, tick: Tick) -> Signal | None:
        return None
