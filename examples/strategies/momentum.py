"""An example user strategy: trade momentum over the last N trades of each symbol.

Run it (from the repository root)::

    hybrid-engine strategy check examples/strategies/momentum.py:Momentum
    hybrid-engine replay replays/btcusdt_20240808.gz --config examples/strategies/momentum.toml

It sees every trade in arrival order (``on_tick``). When the price has risen by
more than ``threshold_bps`` over the symbol's last ``lookback`` trades it says
BUY, when it has fallen by more it says SELL -- each side only when the symbol's
last signal was the other one. Everything is exact: prices are ``Decimal`` and
the comparison multiplies across instead of dividing.

What it may use: its own state, the tick, and pure modules (``decimal``,
``collections``, ``msgspec``, ``engine.core``). What ``strategy check`` refuses:
I/O, clocks and randomness -- see docs/strategies.md.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Annotated

import msgspec

from engine.config.bounds import Range
from engine.core.events import Side, Signal, Tick
from engine.core.hosted import signal_for

_BPS = Decimal(10_000)


class Params(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[strategy]`` keys besides ``kind``; each bounded like every config key."""

    lookback: Annotated[int, Range(1, 100_000, "trades")] = 200
    threshold_bps: Annotated[Decimal, Range(Decimal(0), Decimal(1000), "bps")] = Decimal("2")


class Momentum:
    """BUY after a rise of more than ``threshold_bps`` over ``lookback`` trades; SELL, a fall."""

    Params = Params

    def __init__(self, params: Params) -> None:
        self._lookback = params.lookback
        self._threshold = params.threshold_bps
        self._prices: dict[str, deque[Decimal]] = {}
        self._last: dict[str, Side] = {}

    def describe(self) -> str:
        return (
            f"momentum over {self._lookback} trades, threshold {self._threshold} bps; "
            f"first signal possible after {self._lookback + 1} trades"
        )

    def on_tick(self, tick: Tick) -> Signal | None:
        prices = self._prices.get(tick.symbol)
        if prices is None:
            prices = self._prices[tick.symbol] = deque(maxlen=self._lookback + 1)
        prices.append(tick.price)
        if len(prices) <= self._lookback:
            return None
        first = prices[0]
        # (price - first) / first * 10_000 > threshold, multiplied across (first > 0).
        move = (tick.price - first) * _BPS
        edge = self._threshold * first
        side = Side.BUY if move > edge else Side.SELL if move < -edge else None
        if side is None or self._last.get(tick.symbol) is side:
            return None
        self._last[tick.symbol] = side
        return signal_for(tick, side)
