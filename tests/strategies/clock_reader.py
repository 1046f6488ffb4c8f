"""Deliberately broken: decides on the wall clock (strategy check must FAIL it)."""

from __future__ import annotations

import time

from engine.core.events import Side, Signal, Tick
from engine.core.hosted import signal_for


class ClockReader:
    def on_tick(self, tick: Tick) -> Signal | None:
        if time.time_ns() % 1000 == 0:
            return signal_for(tick, Side.BUY)
        return None
