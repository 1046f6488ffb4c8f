"""Deliberately broken: its output depends on how the ticks were batched."""

from __future__ import annotations

from collections.abc import Sequence

from engine.core.events import Side, Signal, Tick
from engine.core.hosted import signal_for


class FirstOfBatch:
    """Says BUY, then SELL, ... at the first tick of every batch."""

    def __init__(self) -> None:
        self._side = Side.BUY

    def on_tick(self, tick: Tick) -> Signal | None:
        return None

    def on_batch(self, ticks: Sequence[Tick]) -> list[Tick | Signal]:
        if not ticks:
            return []
        signal = signal_for(ticks[0], self._side)
        self._side = Side.SELL if self._side is Side.BUY else Side.BUY
        return [ticks[0], signal, *ticks[1:]]
