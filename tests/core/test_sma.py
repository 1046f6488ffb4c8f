"""sma_cross on hand-made sequences: bars, regimes, crossings, signal fields."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Context, Decimal

import pytest

from engine.config.schema import StrategySection
from engine.core.events import NS_PER_S, Side, Signal, Tick, tick_id
from engine.core.sma import DOWN, UNDEFINED, UP, SmaPair, exact_arithmetic
from engine.core.strategy import SmaCross, from_config

T0 = 1_723_075_200 * NS_PER_S  # 2024-08-08T00:00:00Z, on a bar edge
RECV_LAG = 3_000_000  # ts_recv - ts_event of every test tick, so the two never coincide
S = NS_PER_S


def make_tick(n: int, ts_event: int, price: str | Decimal, symbol: str = "BTCUSDT") -> Tick:
    return Tick(
        event_id=tick_id("binance", symbol, n),
        venue="binance",
        symbol=symbol,
        trade_id=n,
        ts_event=ts_event,
        ts_recv=ts_event + RECV_LAG,
        price=Decimal(price),
        qty=Decimal("0.5"),
    )


def one_per_second(prices: Sequence[str], symbol: str = "BTCUSDT", first: int = 0) -> list[Tick]:
    """Trade k at T0 + k s + 0.5 s: each trade closes the previous one's bar."""
    return [make_tick(first + k, T0 + k * S + S // 2, p, symbol) for k, p in enumerate(prices)]


def signals_of(out: Sequence[Tick | Signal]) -> list[Signal]:
    return [x for x in out if isinstance(x, Signal)]


def test_on_batch_fall_then_rise_then_fall_emits_buy_then_sell_with_exact_fields() -> None:
    # Closes 3 2 1 | 4 | 1 1 with fast=2, slow=3:
    # after 1: fast 1.5 < slow 2 -> DOWN (first regime: silent)
    # after 4: fast 2.5 > slow 7/3 -> UP: BUY, caused by trade 4 (which closed bar 3)
    # after 1: fast 2.5 > slow 2 -> UP;  after 1: fast 1 < slow 2 -> DOWN: SELL (trade 6)
    ticks = one_per_second(["3", "2", "1", "4", "1", "1", "9"])
    out = SmaCross(fast=2, slow=3, bar_seconds=1).on_batch(ticks)

    buy = Signal(
        signal_id="sig:binance:BTCUSDT:4",
        symbol="BTCUSDT",
        side=Side.BUY,
        ts_event=T0 + 4 * S,  # end of bucket 3, the closed bar
        ts_recv=ticks[4].ts_recv,  # the tick that closed the bar
        price=Decimal("4"),  # the closed bar's close
        cause_id="binance:BTCUSDT:4",
    )
    sell = Signal(
        signal_id="sig:binance:BTCUSDT:6",
        symbol="BTCUSDT",
        side=Side.SELL,
        ts_event=T0 + 6 * S,
        ts_recv=ticks[6].ts_recv,
        price=Decimal("1"),
        cause_id="binance:BTCUSDT:6",
    )
    assert out == [*ticks[:5], buy, ticks[5], ticks[6], sell]


def test_on_batch_first_defined_regime_emits_nothing() -> None:
    # Closes 1 2 3 4 5: UP from the third close on, never a crossing.
    ticks = one_per_second(["1", "2", "3", "4", "5", "6"])
    strategy = SmaCross(fast=2, slow=3, bar_seconds=1)
    assert strategy.on_batch(ticks) == ticks


def test_on_batch_fewer_than_slow_closes_emits_nothing() -> None:
    # Only 2 closed bars with slow=3: undefined, however the prices swing.
    ticks = one_per_second(["9", "1", "9"])
    assert SmaCross(fast=1, slow=3, bar_seconds=1).on_batch(ticks) == ticks


def test_on_batch_equal_smas_keep_previous_regime_no_signal() -> None:
    # fast=2 slow=4. Closes 4 4 1 1 -> fast 1 < slow 2.5: DOWN.
    # Close 4: window 4 1 1 4 -> fast 2.5 == slow 2.5: unchanged (still DOWN), no signal.
    # Close 3: window 1 1 4 3 -> fast 3.5 > slow 2.25: UP -> BUY. Had "equal" reset the
    # regime to undefined, this would have been a first regime and stayed silent.
    ticks = one_per_second(["4", "4", "1", "1", "4", "3", "0"])
    out = SmaCross(fast=2, slow=4, bar_seconds=1).on_batch(ticks)
    [signal] = signals_of(out)
    assert (signal.side, signal.cause_id, signal.price) == (
        Side.BUY,
        "binance:BTCUSDT:6",
        Decimal("3"),
    )


def test_on_batch_constant_prices_then_rise_first_regime_silent() -> None:
    # Equal SMAs from the start leave the regime undefined, so the first
    # difference (a rise: UP) is a first defined regime and emits nothing;
    # the fall after it is a real crossing.
    ticks = one_per_second(["5", "5", "5", "5", "8", "8", "1", "1", "1", "1"])
    out = SmaCross(fast=2, slow=3, bar_seconds=1).on_batch(ticks)
    assert [(s.side, s.cause_id) for s in signals_of(out)] == [(Side.SELL, "binance:BTCUSDT:7")]


def test_on_batch_time_gap_produces_no_bars_for_empty_buckets() -> None:
    # fast=1 slow=3. Closes 1 2 3 (buckets 0-2): UP. Then nothing until bucket 10.
    # Its close 2.6 makes the window 2 3 2.6: fast 2.6 > slow 2.53 -> still UP, no
    # signal. Had buckets 3..9 been bars carrying 3 forward, the window would be
    # 3 3 2.6: fast 2.6 < slow 2.87 -> a SELL.
    ticks = [
        make_tick(0, T0 + 0 * S, "1"),
        make_tick(1, T0 + 1 * S, "2"),
        make_tick(2, T0 + 2 * S, "3"),
        make_tick(3, T0 + 10 * S, "2.6"),
        make_tick(4, T0 + 11 * S, "2.6"),
    ]
    assert SmaCross(fast=1, slow=3, bar_seconds=1).on_batch(ticks) == ticks


def test_on_batch_after_gap_signal_time_is_closed_bar_end() -> None:
    # fast=1 slow=2. Closes 2 (bucket 0), 1 (bucket 1, closed by the trade at 5 s):
    # DOWN. Close 3 (bucket 5), closed by the trade at 9 s: UP -> BUY stamped at the
    # end of bucket 5 (6 s), not at the closing trade's time (9 s).
    ticks = [
        make_tick(0, T0 + 0 * S, "2"),
        make_tick(1, T0 + 1 * S, "1"),
        make_tick(2, T0 + 5 * S, "3"),
        make_tick(3, T0 + 9 * S, "3"),
    ]
    out = SmaCross(fast=1, slow=2, bar_seconds=1).on_batch(ticks)
    assert [(s.side, s.ts_event, s.ts_recv, s.cause_id) for s in signals_of(out)] == [
        (Side.BUY, T0 + 6 * S, ticks[3].ts_recv, "binance:BTCUSDT:3"),
    ]


def test_on_batch_bar_close_is_last_trade_in_arrival_order() -> None:
    # Bucket 3 holds three trades; their timestamps are out of order inside the
    # bucket. The close is the one that arrived last (6), not the latest ts (7).
    ticks = [
        make_tick(0, T0 + 0 * S, "5"),
        make_tick(1, T0 + 1 * S, "4"),
        make_tick(2, T0 + 2 * S, "3"),
        make_tick(3, T0 + 3 * S + 100, "1"),
        make_tick(4, T0 + 3 * S + 900, "7"),
        make_tick(5, T0 + 3 * S + 500, "6"),
        make_tick(6, T0 + 4 * S, "6"),
    ]
    out = SmaCross(fast=1, slow=2, bar_seconds=1).on_batch(ticks)
    # closes 5 4 3 6: DOWN, DOWN, UP at the close of bucket 3 -> BUY at price 6
    [signal] = signals_of(out)
    assert (signal.side, signal.price, signal.ts_event) == (Side.BUY, Decimal("6"), T0 + 4 * S)


def test_on_batch_late_trade_of_earlier_bucket_folds_into_open_bar() -> None:
    # Bucket 1 is open when a trade stamped in bucket 0 arrives: it becomes the
    # open bar's latest price (bucket 0 is already closed and never reopens).
    ticks = [
        make_tick(0, T0 + 0 * S, "3"),
        make_tick(1, T0 + 1 * S, "2"),
        make_tick(2, T0 + 2 * S, "1"),  # closes bucket 1 (close 2): DOWN after 3 2
        make_tick(3, T0 + 1 * S + 1, "9"),  # stamped in bucket 1 while bucket 2 is open
        make_tick(4, T0 + 3 * S, "1"),  # closes bucket 2 with close 9 (the late trade)
    ]
    out = SmaCross(fast=1, slow=2, bar_seconds=1).on_batch(ticks)
    [signal] = signals_of(out)
    assert signal.side is Side.BUY
    assert signal.price == Decimal("9")
    assert signal.ts_event == T0 + 3 * S  # end of the open bar's bucket (2), not bucket 1's
    assert signal.cause_id == "binance:BTCUSDT:4"
    assert out.index(signal) == 5
    one_by_one = SmaCross(fast=1, slow=2, bar_seconds=1)
    assert [one_by_one.on_tick(t) for t in ticks] == [None, None, None, None, signal]


def test_on_batch_open_bar_at_end_is_not_closed() -> None:
    strategy = SmaCross(fast=2, slow=3, bar_seconds=1)
    ticks = one_per_second(["3", "2", "1", "4"])  # the bar of 4 stays open
    assert strategy.on_batch(ticks) == ticks
    # A later trade in the same bucket only moves the open bar's close ...
    same_bucket = make_tick(4, T0 + 3 * S + S // 2 + 1, "4.5")
    assert strategy.on_batch([same_bucket]) == [same_bucket]
    # ... and the first trade of a later bucket closes it, in its own batch.
    closer = make_tick(5, T0 + 4 * S + 1, "0")
    out = strategy.on_batch([closer])
    assert out[0] is closer
    [signal] = signals_of(out)
    assert (signal.side, signal.price, signal.cause_id, signal.ts_recv) == (
        Side.BUY,
        Decimal("4.5"),
        "binance:BTCUSDT:5",
        closer.ts_recv,
    )


def test_on_batch_bar_seconds_60_buckets_by_minute() -> None:
    minute = 60 * S
    # One trade per minute, 59 s into it: closes 3 2 1 4 -> BUY at the 4th close.
    ticks = [make_tick(k, T0 + k * minute + 59 * S, p) for k, p in enumerate("32147")]
    out = SmaCross(fast=2, slow=3, bar_seconds=60).on_batch(ticks)
    [signal] = signals_of(out)
    assert (signal.side, signal.ts_event, signal.cause_id) == (
        Side.BUY,
        T0 + 4 * minute,  # end of bucket 3 (minute 3)
        "binance:BTCUSDT:4",
    )


def test_on_batch_bar_seconds_zero_every_trade_is_a_bar() -> None:
    # Same closes as the first test, but each trade closes its own bar at once.
    ticks = [make_tick(k, T0 + k * 1_000 + 7, p) for k, p in enumerate("3214")]
    out = SmaCross(fast=2, slow=3, bar_seconds=0).on_batch(ticks)
    buy = Signal(
        signal_id="sig:binance:BTCUSDT:3",
        symbol="BTCUSDT",
        side=Side.BUY,
        ts_event=ticks[3].ts_event,  # the trade's own time
        ts_recv=ticks[3].ts_recv,
        price=Decimal("4"),
        cause_id="binance:BTCUSDT:3",
    )
    assert out == [*ticks, buy]


def test_on_batch_bar_seconds_zero_same_timestamp_trades_are_separate_bars() -> None:
    ticks = [make_tick(k, T0, p) for k, p in enumerate("3214")]
    out = SmaCross(fast=2, slow=3, bar_seconds=0).on_batch(ticks)
    assert [s.side for s in signals_of(out)] == [Side.BUY]


def test_on_batch_two_symbols_interleaved_are_independent() -> None:
    a = one_per_second(["3", "2", "1", "4", "1", "1", "9"], symbol="AAA")
    b = one_per_second(["5", "5", "5", "5", "5", "5", "5"], symbol="BBB", first=100)
    interleaved = [t for pair in zip(a, b, strict=True) for t in pair]
    out = SmaCross(fast=2, slow=3, bar_seconds=1).on_batch(interleaved)
    alone = SmaCross(fast=2, slow=3, bar_seconds=1).on_batch(a)
    assert signals_of(out) == signals_of(alone)
    # each signal directly after its causing tick
    for signal in signals_of(out):
        assert out[out.index(signal) - 1].event_id == signal.cause_id
    assert [t for t in out if isinstance(t, Tick)] == interleaved


def test_on_batch_other_symbol_trade_does_not_close_a_bar() -> None:
    # BBB trades in later buckets must not close AAA's open bar.
    a = one_per_second(["3", "2", "1", "4"], symbol="AAA")
    b = [make_tick(100 + k, T0 + (10 + k) * S, "1", "BBB") for k in range(5)]
    strategy = SmaCross(fast=2, slow=3, bar_seconds=1)
    assert signals_of(strategy.on_batch([*a, *b])) == []
    closer = make_tick(4, T0 + 20 * S, "1", "AAA")
    [signal] = signals_of(strategy.on_batch([closer]))
    assert (signal.symbol, signal.price, signal.ts_event) == ("AAA", Decimal("4"), T0 + 4 * S)


def test_on_batch_means_equal_exactly_where_float_differs_no_signal() -> None:
    # fast=2 slow=3, closes 1 0.2 0.3 -> fast 0.25 < slow 0.5: DOWN.
    # close 0.1: fast (0.3+0.1)/2 = 0.2 == slow (0.2+0.3+0.1)/3 = 0.2 exactly:
    # unchanged, no signal. In binary floats the fast mean is the larger one
    # (a spurious BUY), as the assertion on the float model below proves.
    closes = ["1", "0.2", "0.3", "0.1"]
    floats = [float(c) for c in closes[1:]]
    assert sum(floats[-2:]) / 2 > sum(floats) / 3  # the trap floats fall into
    ticks = one_per_second([*closes, "0.1"])
    assert signals_of(SmaCross(fast=2, slow=3, bar_seconds=1).on_batch(ticks)) == []


def test_on_batch_prices_beyond_28_digits_compare_exactly() -> None:
    # 31 significant digits: the default decimal context (28 digits) would round
    # the sums and products to equal values; floats cannot tell them apart at all.
    c1, c2, c3 = (Decimal(f"100000000000000000000.000000000{k}") for k in (2, 1, 3))
    assert c2 < c1 < c3
    assert float(c1) == float(c2) == float(c3)
    rounding = Context(prec=28)  # the default context's precision
    assert rounding.add(c2, c3) == rounding.multiply(c3, 2)  # the trap it would fall into
    # fast=1 slow=2: c2 < mean(c1, c2): DOWN; c3 > mean(c2, c3): UP -> BUY
    ticks = [make_tick(k, T0 + k * S, p) for k, p in enumerate([c1, c2, c3, c3])]
    [signal] = signals_of(SmaCross(fast=1, slow=2, bar_seconds=1).on_batch(ticks))
    assert (signal.side, signal.price) == (Side.BUY, c3)


def test_on_tick_same_signals_as_on_batch() -> None:
    ticks = one_per_second(["3", "2", "1", "4", "1", "1", "9"])
    strategy = SmaCross(fast=2, slow=3, bar_seconds=1)
    results = [strategy.on_tick(t) for t in ticks]
    assert [r.signal_id if r else None for r in results] == [
        None,
        None,
        None,
        None,
        "sig:binance:BTCUSDT:4",
        None,
        "sig:binance:BTCUSDT:6",
    ]
    assert [r for r in results if r] == signals_of(
        SmaCross(fast=2, slow=3, bar_seconds=1).on_batch(ticks)
    )


def test_on_batch_no_signal_returns_new_list_of_same_ticks() -> None:
    ticks = one_per_second(["1", "1"])
    out = SmaCross(fast=1, slow=2, bar_seconds=1).on_batch(ticks)
    assert out == ticks
    assert out is not ticks


def test_on_batch_empty_batch_returns_empty_list() -> None:
    assert SmaCross(fast=1, slow=2, bar_seconds=0).on_batch([]) == []
    assert SmaCross(fast=1, slow=2, bar_seconds=1).on_batch(()) == []


@pytest.mark.parametrize(
    ("fast", "slow", "bar_seconds"),
    [(0, 2, 1), (3, 3, 1), (4, 3, 1), (1, 2, -1)],
)
def test_smacross_nonsensical_parameters_raise_value_error(
    fast: int, slow: int, bar_seconds: int
) -> None:
    with pytest.raises(ValueError, match="sma_cross needs"):
        SmaCross(fast=fast, slow=slow, bar_seconds=bar_seconds)


def test_from_config_defaults_fast5_slow20_bar1() -> None:
    strategy = from_config(StrategySection())
    # 20 rising closes then a fall: the defaults' first crossing
    prices = [str(100 + k) for k in range(21)] + ["1"] * 3
    out = strategy.on_batch(one_per_second(prices))
    [signal] = signals_of(out)
    # UP from close 20 on; closes ... 120 | 1: fast (117+118+119+120+1)/5 = 95 vs
    # slow (102..120 + 1)/20 = 105.5 -> DOWN -> SELL, caused by trade 22
    assert (signal.side, signal.cause_id) == (Side.SELL, "binance:BTCUSDT:22")


def test_smapair_regime_sequence_and_crossings() -> None:
    pair = SmaPair(fast=1, slow=2)
    with exact_arithmetic():
        assert pair.push(Decimal(2)) is None
        assert pair.regime == UNDEFINED
        assert pair.push(Decimal(1)) is None  # first regime: silent
        assert pair.regime == DOWN
        assert pair.push(Decimal(1)) is None  # equal: unchanged
        assert pair.regime == DOWN
        assert pair.push(Decimal(3)) is Side.BUY
        assert pair.regime == UP
        assert pair.push(Decimal(4)) is None
        assert pair.push(Decimal(2)) is Side.SELL
        assert pair.regime == DOWN


def test_smapair_nonsensical_lengths_raise_value_error() -> None:
    with pytest.raises(ValueError, match="fast < slow"):
        SmaPair(fast=2, slow=2)
