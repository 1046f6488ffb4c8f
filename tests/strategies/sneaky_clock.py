"""Deliberately broken: reads the clock without importing a clock module by name."""

from __future__ import annotations

from engine.core.events import Signal, Tick

_clock = getattr(__builtins__, "__import__", None) or __builtins__["__import__"]  # type: ignore[index]


class SneakyClock:
    def __init__(self) -> None:
        self._now = _clock("ti" + "me").monotonic_ns

    def on_tick(self, tick: Tick) -> Signal | None:
        self._now()
        return None
