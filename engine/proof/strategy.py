"""Strategy properties the proof runs: ``sma_cross`` on random tick streams (hypothesis).

* determinism -- the same ticks give the same output, byte for byte, in fresh instances;
* chunk independence -- any split into ``on_batch`` chunks, or ``on_tick`` one by
  one, or a mix, gives the output of one ``on_batch`` over the whole stream;
* agreement with a naive reference that keeps every close and computes the
  means as exact fractions from the full list.

Streams mix two symbols, repeat prices (so equal SMAs happen), and move time
mostly forward with gaps and the occasional step back (late trades).

Each property is a plain function of its drawn arguments plus the strategies
that draw them; ``engine.proof.properties`` wraps it in ``@given`` with the
proof's fixed settings and seed, and ``tests/proof/test_strategy.py`` runs
exactly those (one copy of each property). Assertions carry their values:
outside pytest a bare ``assert`` says nothing about why it failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Final

import msgspec
from hypothesis import event
from hypothesis import strategies as st

from engine.core.events import NS_PER_S, Side, Signal, Tick, tick_id
from engine.core.strategy import SmaCross

T0: Final = 1_723_075_200 * NS_PER_S

Params = tuple[int, int, int]
Output = list[Tick | Signal]

_FEW_PRICES = st.sampled_from([Decimal(p) for p in ("1", "2", "3", "0.1", "0.2", "0.3", "2.50")])
prices = st.one_of(
    _FEW_PRICES,  # twice: mostly few distinct prices, so equal SMAs and crossings are common
    _FEW_PRICES,
    st.decimals(
        min_value=Decimal("0.00000001"),
        max_value=Decimal("100000"),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    ),
)
steps = st.one_of(
    st.integers(0, NS_PER_S // 3),  # several trades per bar
    st.integers(-NS_PER_S, 3 * NS_PER_S),  # gaps, and late (earlier-stamped) trades
)


@st.composite
def tick_streams(draw: st.DrawFn) -> list[Tick]:
    # An explicit length: plain st.lists mostly draws a handful of elements,
    # too few closes for slow-length windows to fill and cross.
    length = draw(st.integers(0, 150))
    row = st.tuples(st.sampled_from(["AAA", "BBB"]), steps, prices)
    rows = draw(st.lists(row, min_size=length, max_size=length))
    ticks = []
    ts = T0 + draw(st.integers(0, 2 * NS_PER_S))
    for n, (symbol, step, price) in enumerate(rows):
        ts = max(0, ts + step)
        ticks.append(
            Tick(
                event_id=tick_id("binance", symbol, n),
                venue="binance",
                symbol=symbol,
                trade_id=n,
                ts_event=ts,
                ts_recv=ts + 1_000 + n,
                price=price,
                qty=Decimal("1"),
            )
        )
    return ticks


@st.composite
def params(draw: st.DrawFn) -> Params:
    fast = draw(st.integers(1, 4))
    slow = fast + draw(st.integers(1, 4))
    return fast, slow, draw(st.sampled_from([0, 1, 2]))


def reference(ticks: Sequence[Tick], fast: int, slow: int, bar_seconds: int) -> Output:
    """sma_cross written the obvious way: every close kept, means as Fractions."""
    bar_ns = bar_seconds * NS_PER_S
    open_bar: dict[str, tuple[int, Tick]] = {}
    closes: dict[str, list[Fraction]] = {}
    regime: dict[str, int] = {}
    out: Output = []
    for tick in ticks:
        out.append(tick)
        symbol = tick.symbol
        if bar_ns == 0:
            close, end = tick, tick.ts_event
        else:
            bucket = tick.ts_event // bar_ns
            if symbol not in open_bar:
                open_bar[symbol] = (bucket, tick)
                continue
            open_bucket, last = open_bar[symbol]
            if bucket <= open_bucket:
                open_bar[symbol] = (open_bucket, tick)
                continue
            open_bar[symbol] = (bucket, tick)
            close, end = last, (open_bucket + 1) * bar_ns
        history = closes.setdefault(symbol, [])
        history.append(Fraction(close.price))
        if len(history) < slow:
            continue
        fast_mean = sum(history[-fast:], Fraction(0)) / fast
        slow_mean = sum(history[-slow:], Fraction(0)) / slow
        old = regime.get(symbol, 0)
        new = 1 if fast_mean > slow_mean else -1 if fast_mean < slow_mean else old
        regime[symbol] = new
        if old not in (0, new):  # a change of regime, not the first one
            out.append(
                Signal(
                    signal_id="sig:" + tick.event_id,
                    symbol=symbol,
                    side=Side.BUY if new == 1 else Side.SELL,
                    ts_event=end,
                    ts_recv=tick.ts_recv,
                    price=close.price,
                    cause_id=tick.event_id,
                )
            )
    return out


def _first_difference(got: Output, want: Output) -> str:
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"item {i}: {a!r} != {b!r}"
    return f"length {len(got)} != {len(want)}"


def _assert_same(got: Output, want: Output, what: str) -> None:
    assert got == want, f"{what}: {_first_difference(got, want)}"


def agrees_with_reference(ticks: list[Tick], p: Params) -> None:
    expected = reference(ticks, *p)
    event(f"signals: {min(3, len(expected) - len(ticks))}+")
    _assert_same(SmaCross(*p).on_batch(ticks), expected, f"on_batch vs reference, params {p}")


def fresh_instances_identical_bytes(ticks: list[Tick], p: Params) -> None:
    first = msgspec.json.encode(SmaCross(*p).on_batch(ticks))
    second = msgspec.json.encode(SmaCross(*p).on_batch(list(ticks)))
    assert first == second, f"two fresh SmaCross{p} encode differently"


def any_chunking_same_output(ticks: list[Tick], p: Params, data: st.DataObject) -> None:
    whole = SmaCross(*p).on_batch(ticks)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(ticks)), max_size=8)))
    bounds = [0, *cuts, len(ticks)]
    # Each chunk goes to on_batch, or tick by tick to on_tick: mixing must not matter.
    use_on_tick = data.draw(st.lists(st.booleans(), min_size=len(bounds), max_size=len(bounds)))
    strategy = SmaCross(*p)
    chunked: Output = []
    for start, stop, tick_by_tick in zip(bounds, bounds[1:], use_on_tick, strict=False):
        chunk = ticks[start:stop]
        if tick_by_tick:
            for tick in chunk:
                chunked.append(tick)
                signal = strategy.on_tick(tick)
                if signal is not None:
                    chunked.append(signal)
        else:
            chunked.extend(strategy.on_batch(tuple(chunk)))
    _assert_same(chunked, whole, f"chunks at {cuts} vs one on_batch, params {p}")


def on_tick_same_as_on_batch(ticks: list[Tick], p: Params) -> None:
    strategy = SmaCross(*p)
    one_by_one: Output = []
    for tick in ticks:
        one_by_one.append(tick)
        signal = strategy.on_tick(tick)
        if signal is not None:
            one_by_one.append(signal)
    _assert_same(one_by_one, SmaCross(*p).on_batch(ticks), f"on_tick vs on_batch, params {p}")
