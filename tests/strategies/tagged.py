"""A strategy with a text parameter (admission bounds text like every config string)."""

from __future__ import annotations

import msgspec

from engine.core.events import Signal, Tick


class Params(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tag: str = "a"


class Tagged:
    Params = Params

    def __init__(self, params: Params) -> None:
        self.tag = params.tag

    def on_tick(self, tick: Tick) -> Signal | None:
        return None
