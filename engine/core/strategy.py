"""``sma_cross``: a per-symbol fast/slow SMA crossover over time bars, pure.

Bars. With ``bar_seconds > 0`` a trade belongs to bucket
``ts_event // (bar_seconds * 10**9)`` (integer arithmetic, so no float can move a
trade across a bucket edge). A bar closes when the first trade of a *later*
bucket arrives; its close is the price of the last trade of its bucket in arrival
order. Empty buckets produce no bar, and the bar still open when the stream ends
is never closed (no trade proved it complete). With ``bar_seconds == 0`` every
trade is a bar of its own, closed by itself.

Late trades. A trade whose bucket is *earlier* than the open bar's (venue
timestamps out of order) is folded into the open bar: it becomes that bar's
latest price, exactly as if it carried the open bar's timestamp. The closed bar
it belongs to is history and is never reopened, so the outcome depends only on
arrival order -- deterministic, and the same for any chunking of the stream.

Signals. The regime (see ``engine.core.sma``) is evaluated at each close; a
change DOWN -> UP emits BUY, UP -> DOWN emits SELL, the first defined regime
emits nothing. The signal carries:

* ``ts_event`` = the end of the closed bar's bucket, ``(bucket + 1) * bar_ns``
  (for ``bar_seconds == 0``: the trade's own ``ts_event``) -- event time only;
* ``price`` = the bar's close;
* ``ts_recv``, ``cause_id`` = the receive time and id of the tick whose arrival
  closed the bar (for staleness checks and lineage), ``signal_id`` =
  ``"sig:" + cause_id``.

Performance. ``on_batch`` is on the replay hot path (a budget of a few µs per
tick for the whole engine). A tick that does not close a bar costs two attribute
reads, an integer division and a comparison: the open bar remembers its last
*tick*, not its price, and the current symbol's bar lives in locals until the
symbol changes. Decimal arithmetic happens only at bar closes.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final, Protocol

from engine.core.events import NS_PER_S, Side, Signal, Tick
from engine.core.sma import SmaPair, exact_arithmetic

_NO_BAR: Final = -(1 << 80)
"""Bucket of a symbol with no open bar: below the bucket of any int64-ns timestamp,
so the first trade always opens a bar and never closes one."""


def caused_signal(cause: Tick, side: Side, ts_event: int, price: Decimal) -> Signal:
    """The signal ``cause``'s arrival caused: its id, symbol and ``ts_recv`` are the tick's."""
    return Signal(
        signal_id="sig:" + cause.event_id,
        symbol=cause.symbol,
        side=side,
        ts_event=ts_event,
        ts_recv=cause.ts_recv,
        price=price,
        cause_id=cause.event_id,
    )


class StrategyParams(Protocol):
    """What ``from_config`` reads: ``engine.config.StrategySection`` fits.

    A protocol rather than an import so the core does not import the config
    module (which reads the environment and files).
    """

    @property
    def fast(self) -> int: ...
    @property
    def slow(self) -> int: ...
    @property
    def bar_seconds(self) -> int: ...


class _Book:
    """One symbol's state: its open bar and its SMA pair."""

    __slots__ = ("bucket", "last", "sma")

    def __init__(self, sma: SmaPair) -> None:
        self.bucket = _NO_BAR
        self.last: Tick | None = None  # last trade of the open bar; None: no open bar
        self.sma = sma


class SmaCross:
    """The ``sma_cross`` strategy over any number of symbols, each independent.

    Feed ticks in arrival order with ``on_tick`` or ``on_batch`` (mixing them
    is fine: both advance the same state). The output depends only on the ticks
    and their order, never on how they were split into batches.
    """

    __slots__ = ("_bar_ns", "_books", "_fast", "_slow")

    def __init__(self, fast: int, slow: int, bar_seconds: int) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"sma_cross needs 1 <= fast < slow, got fast={fast} slow={slow}")
        if bar_seconds < 0:
            raise ValueError(f"sma_cross needs bar_seconds >= 0, got {bar_seconds}")
        self._fast = fast
        self._slow = slow
        self._bar_ns = bar_seconds * NS_PER_S
        self._books: dict[str, _Book] = {}

    def describe(self) -> str:
        """The start line's words: the averages, the bars, and when the first signal can come.

        The slow SMA needs ``slow`` closes and a crossing one more (the first
        regime the averages define is not a crossing, ``engine.core.sma``); a bar
        closes only when a trade of a later bar arrives.
        """
        seconds = self._bar_ns // NS_PER_S
        bars = "every trade" if seconds == 0 else f"{seconds} s bars"
        return f"SMA {self._fast}/{self._slow} on {bars}, {warmup_text(self._slow + 1, seconds)}"

    def _book(self, symbol: str) -> _Book:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _Book(SmaPair(self._fast, self._slow))
        return book

    def _close(self, book: _Book, close: Tick, ts_event: int, cause: Tick) -> Signal | None:
        """Push the bar closed by ``cause``; the signal if the regime flipped.

        Runs inside ``exact_arithmetic()`` (see ``engine.core.sma``).
        """
        side = book.sma.push(close.price)
        if side is None:
            return None
        return caused_signal(cause, side, ts_event, close.price)

    def on_tick(self, tick: Tick) -> Signal | None:
        """Account for one trade; the signal its arrival caused, if any."""
        book = self._book(tick.symbol)
        bar_ns = self._bar_ns
        if bar_ns == 0:
            with exact_arithmetic():
                return self._close(book, tick, tick.ts_event, tick)
        bucket = tick.ts_event // bar_ns
        last = book.last
        if bucket <= book.bucket:  # same bar, or a late trade folded into it
            book.last = tick
            return None
        closed = book.bucket
        book.bucket = bucket
        book.last = tick
        if last is None:
            return None
        with exact_arithmetic():
            return self._close(book, last, (closed + 1) * bar_ns, tick)

    def on_batch(self, ticks: Sequence[Tick]) -> list[Tick | Signal]:
        """Every tick in order, each signal placed right after the tick that caused it."""
        with exact_arithmetic():
            if self._bar_ns == 0:
                fired = self._decide_trade_bars(ticks)
            else:
                fired = self._decide_time_bars(ticks)
        return interleave(ticks, fired)

    def _decide_time_bars(self, ticks: Sequence[Tick]) -> list[tuple[int, Signal]]:
        """The signals of ``ticks`` (``bar_seconds > 0``), each with its cause's index."""
        bar_ns = self._bar_ns
        close_bar = self._close
        get_book = self._book
        fired: list[tuple[int, Signal]] = []
        # The current symbol's open bar, cached in locals; written back to its
        # book whenever the symbol changes and at the end.
        symbol: str | None = None
        book: _Book | None = None
        bucket = _NO_BAR
        last: Tick | None = None
        for i, tick in enumerate(ticks):
            if tick.symbol != symbol:
                if book is not None:
                    book.bucket = bucket
                    book.last = last
                symbol = tick.symbol
                book = get_book(symbol)
                bucket = book.bucket
                last = book.last
            b = tick.ts_event // bar_ns
            if b <= bucket:  # same bar, or a late trade folded into it
                last = tick
                continue
            if last is not None:
                assert book is not None
                signal = close_bar(book, last, (bucket + 1) * bar_ns, tick)
                if signal is not None:
                    fired.append((i, signal))
            bucket = b
            last = tick
        if book is not None:
            book.bucket = bucket
            book.last = last
        return fired

    def _decide_trade_bars(self, ticks: Sequence[Tick]) -> list[tuple[int, Signal]]:
        """The signals of ``ticks`` (``bar_seconds == 0``: every trade is a bar)."""
        close_bar = self._close
        get_book = self._book
        fired: list[tuple[int, Signal]] = []
        symbol: str | None = None
        book: _Book | None = None
        for i, tick in enumerate(ticks):
            if tick.symbol != symbol:
                symbol = tick.symbol
                book = get_book(symbol)
            assert book is not None
            signal = close_bar(book, tick, tick.ts_event, tick)
            if signal is not None:
                fired.append((i, signal))
        return fired


def interleave(ticks: Sequence[Tick], fired: list[tuple[int, Signal]]) -> list[Tick | Signal]:
    """``ticks`` with each ``(index, signal)`` inserted right after ``ticks[index]``."""
    if not fired:
        return list(ticks)
    out: list[Tick | Signal] = []
    start = 0
    for index, signal in fired:
        out.extend(ticks[start : index + 1])
        out.append(signal)
        start = index + 1
    out.extend(ticks[start:])
    return out


def duration_text(seconds: float) -> str:
    """``45 s``, ``21 min``, ``1.5 h``, ``2 d``."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def warmup_text(bars: int, bar_seconds: int) -> str:
    """``first signal possible after 21 bars of 1 s (at least 21 s of trades)``."""
    if bar_seconds == 0:
        return f"first signal possible after {bars} trades (every trade is a bar)"
    return (
        f"first signal possible after {bars} bars of {duration_text(bar_seconds)}"
        f" (at least {duration_text(bars * bar_seconds)} of trades)"
    )


def from_config(section: StrategyParams) -> SmaCross:
    """The strategy the ``[strategy]`` section (``StrategySection``) describes."""
    return SmaCross(fast=section.fast, slow=section.slow, bar_seconds=section.bar_seconds)
