"""Signals that carry a desired notional and a reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec

from engine.config.bounds import Range
from engine.core.events import Side, Signal, Tick
from engine.core.hosted import signal_for


class Params(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    notional: Decimal = Decimal("50")
    every: Annotated[int, Range(1, 10**6)] = 500


class Sized:
    Params = Params

    def __init__(self, params: Params) -> None:
        self._notional = params.notional
        self._every = params.every
        self._seen = 0

    def on_tick(self, tick: Tick) -> Signal | None:
        self._seen += 1
        if self._seen % self._every:
            return None
        if (self._seen // self._every) % 2:
            return signal_for(tick, Side.BUY, notional=self._notional, reason="every Nth trade")
        return signal_for(tick, Side.SELL, reason="and out again")
