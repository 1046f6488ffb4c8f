"""``donchian_breakout``: a per-symbol channel breakout over time bars, pure.

Bars are built exactly as ``sma_cross`` builds them (``engine.core.strategy``):
bucket ``ts_event // (bar_seconds * 10**9)``, a bar closes when the first trade
of a later bucket arrives, empty buckets make no bar, the bar still open at the
end never closes, and a late trade (an earlier bucket) is folded into the open
bar. Each bar also has a *high* and a *low*: the max and min price of its trades,
late ones included. With ``bar_seconds == 0`` every trade is a bar of its own,
high = low = close.

Signals. When a bar closes and at least ``lookback`` earlier bars of its symbol
have closed, ``upper`` is the highest high and ``lower`` the lowest low of the
``lookback`` bars before it. ``close > upper`` is an up-breakout, ``close <
lower`` a down-breakout. BUY on an up-breakout unless the symbol's last signal
was BUY; SELL on a down-breakout unless it was SELL (the first breakout of
either side emits). ``ts_event`` is the end of the closed bar's bucket (the
trade's own ``ts_event`` for ``bar_seconds == 0``), ``price`` the bar's close,
``cause_id`` / ``ts_recv`` / ``signal_id`` from the tick whose arrival closed the
bar -- the same lineage as ``sma_cross``.

Exactness. Prices are only compared (``max``, ``min``, ``>``, ``<``), never
added or divided: ``Decimal`` comparison is exact whatever its digits, so no
context is needed.

Cost. The channel over the last ``lookback`` bars is recomputed at each close
from a bounded deque (O(lookback) per close, at most ``DONCHIAN_MAX_LOOKBACK``); a tick
that does not close a bar costs a division, two comparisons and a tuple.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from engine.config.schema import DONCHIAN_MAX_LOOKBACK
from engine.core.events import NS_PER_S, Side, Signal, Tick
from engine.core.strategy import caused_signal, interleave, warmup_text

_NO_BAR: Final = -(1 << 80)


class _Channel:
    """One symbol: its open bar (bucket, close, high, low) and the closed bars' highs/lows."""

    __slots__ = ("bucket", "close", "high", "highs", "last_side", "low", "lows")

    def __init__(self, lookback: int) -> None:
        self.bucket = _NO_BAR
        self.close: Decimal | None = None  # None: no open bar
        self.high = Decimal(0)
        self.low = Decimal(0)
        self.highs: deque[Decimal] = deque(maxlen=lookback)
        self.lows: deque[Decimal] = deque(maxlen=lookback)
        self.last_side: Side | None = None


class DonchianBreakout:
    """The ``donchian_breakout`` strategy over any number of symbols, each independent.

    Feed ticks in arrival order with ``on_tick`` or ``on_batch``; the output
    depends only on the ticks and their order, never on how they were batched.
    """

    __slots__ = ("_bar_ns", "_channels", "_lookback")

    def __init__(self, lookback: int, bar_seconds: int) -> None:
        if not 1 <= lookback <= DONCHIAN_MAX_LOOKBACK:
            raise ValueError(f"donchian_breakout needs 1 <= lookback <= {DONCHIAN_MAX_LOOKBACK}")
        if bar_seconds < 0:
            raise ValueError(f"donchian_breakout needs bar_seconds >= 0, got {bar_seconds}")
        self._lookback = lookback
        self._bar_ns = bar_seconds * NS_PER_S
        self._channels: dict[str, _Channel] = {}

    def describe(self) -> str:
        """The start line's words: the channel, the bars, and when the first signal can come."""
        seconds = self._bar_ns // NS_PER_S
        bars = "every trade" if seconds == 0 else f"{seconds} s bars"
        warmup = warmup_text(self._lookback + 1, seconds)
        return f"Donchian breakout over {self._lookback} bars on {bars}, {warmup}"

    def _close(self, ch: _Channel, ts_event: int, cause: Tick) -> Signal | None:
        """Account for the closed open bar of ``ch``; the signal its close caused, if any."""
        close = ch.close
        assert close is not None
        high, low = ch.high, ch.low
        side: Side | None = None
        if len(ch.highs) == self._lookback:
            if close > max(ch.highs):
                side = Side.BUY
            elif close < min(ch.lows):
                side = Side.SELL
        ch.highs.append(high)
        ch.lows.append(low)
        if side is None or side is ch.last_side:
            return None
        ch.last_side = side
        return caused_signal(cause, side, ts_event, close)

    def on_tick(self, tick: Tick) -> Signal | None:
        """Account for one trade; the signal its arrival caused, if any."""
        ch = self._channels.get(tick.symbol)
        if ch is None:
            ch = self._channels[tick.symbol] = _Channel(self._lookback)
        price = tick.price
        bar_ns = self._bar_ns
        if bar_ns == 0:
            ch.close = ch.high = ch.low = price
            return self._close(ch, tick.ts_event, tick)
        bucket = tick.ts_event // bar_ns
        if bucket <= ch.bucket:  # same bar, or a late trade folded into it
            ch.close = price
            if price > ch.high:
                ch.high = price
            elif price < ch.low:
                ch.low = price
            return None
        signal = None
        if ch.close is not None:
            signal = self._close(ch, (ch.bucket + 1) * bar_ns, tick)
        ch.bucket = bucket
        ch.close = ch.high = ch.low = price
        return signal

    def on_batch(self, ticks: Sequence[Tick]) -> list[Tick | Signal]:
        """Every tick in order, each signal placed right after the tick that caused it."""
        on_tick = self.on_tick
        fired: list[tuple[int, Signal]] = []
        for i, tick in enumerate(ticks):
            signal = on_tick(tick)
            if signal is not None:
                fired.append((i, signal))
        return interleave(ticks, fired)
