"""donchian_breakout against a reference written from the issue's words, on every real capture.

The reference keeps every bar of every symbol in a list (open bucket, close,
high, low) and recomputes the channel by slicing; it shares no code with
``engine.core.donchian`` (nor with ``sma_cross``'s bar building).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.load import load_config
from engine.core.choice import build_strategy
from engine.core.donchian import DonchianBreakout
from engine.core.events import Side, Signal, Tick
from engine.exits import ConfigError
from engine.proof.any_strategy import capture_ticks, first_difference, run_batches
from engine.proof.strategy import tick_streams

REPO = Path(__file__).resolve().parents[2]
CAPTURES = {
    "binance_btcusdt_20240808": REPO / "replays" / "btcusdt_20240808.gz",
    "coinbase_matches": REPO / "tests" / "data" / "COINBASE.matches.ws.28.0",
    "coinbase_sample": REPO / "tests" / "data" / "coinbase_sample.ws",
    "tardis_binance_futures": REPO / "tests" / "data" / "history" / "tardis_trades.csv",
}
"""Every real capture the engine can replay today (tests/data/PROVENANCE.md, history/)."""

NS = 1_000_000_000
Output = list[Tick | Signal]


def reference(ticks: list[Tick], lookback: int, bar_seconds: int) -> Output:
    """donchian_breakout the obvious way: all bars kept, the channel sliced out at each close."""
    bars: dict[str, list[dict[str, object]]] = {}  # closed bars: high, low
    open_bar: dict[str, dict[str, object]] = {}  # bucket, close, high, low
    last_signal: dict[str, Side] = {}
    out: Output = []
    for tick in ticks:
        out.append(tick)
        sym = tick.symbol
        closed: dict[str, object] | None = None
        end = 0
        if bar_seconds == 0:
            closed = {"close": tick.price, "high": tick.price, "low": tick.price}
            end = tick.ts_event
        else:
            bucket = tick.ts_event // (bar_seconds * NS)
            bar = open_bar.get(sym)
            if bar is None:
                open_bar[sym] = {"bucket": bucket, "close": tick.price, "high": tick.price,
                                 "low": tick.price}
                continue
            if bucket <= bar["bucket"]:  # type: ignore[operator]
                bar["close"] = tick.price
                bar["high"] = max(bar["high"], tick.price)  # type: ignore[type-var]
                bar["low"] = min(bar["low"], tick.price)  # type: ignore[type-var]
                continue
            closed = bar
            end = (bar["bucket"] + 1) * bar_seconds * NS  # type: ignore[operator]
            open_bar[sym] = {"bucket": bucket, "close": tick.price, "high": tick.price,
                             "low": tick.price}
        history = bars.setdefault(sym, [])
        side = None
        if len(history) >= lookback:
            window = history[len(history) - lookback :]
            upper = max(b["high"] for b in window)  # type: ignore[type-var]
            lower = min(b["low"] for b in window)  # type: ignore[type-var]
            close = closed["close"]
            if close > upper:  # type: ignore[operator]
                side = Side.BUY
            elif close < lower:  # type: ignore[operator]
                side = Side.SELL
        history.append(closed)
        if side is not None and last_signal.get(sym) != side:
            last_signal[sym] = side
            out.append(Signal(
                signal_id="sig:" + tick.event_id, symbol=sym, side=side, ts_event=end,
                ts_recv=tick.ts_recv, price=closed["close"], cause_id=tick.event_id,  # type: ignore[arg-type]
            ))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def real_ticks() -> dict[str, list[Tick]]:
    return {name: capture_ticks([path]) for name, path in CAPTURES.items()}


@pytest.mark.parametrize("capture", sorted(CAPTURES))
@pytest.mark.parametrize(("lookback", "bar_seconds"), [(20, 1), (1, 1), (5, 0), (3, 5), (2, 0)])
def test_signals_equal_the_reference_on_every_real_capture(
    real_ticks: dict[str, list[Tick]], capture: str, lookback: int, bar_seconds: int
) -> None:
    ticks = real_ticks[capture]
    assert ticks, f"{capture}: no ticks decoded"
    want = reference(ticks, lookback, bar_seconds)
    got = DonchianBreakout(lookback, bar_seconds).on_batch(ticks)
    assert got == want, first_difference(got, want)
    # In replay-sized batches too (the pipeline's shape).
    got = run_batches(DonchianBreakout(lookback, bar_seconds), ticks, range(0, len(ticks), 500))
    assert got == want, first_difference(got, want)


def test_default_parameters_signal_on_the_bundled_capture(
    real_ticks: dict[str, list[Tick]],
) -> None:
    """The figures for the closing note: the default (20 bars of 1 s) does trade."""
    ticks = real_ticks["binance_btcusdt_20240808"]
    out = reference(ticks, 20, 1)
    signals = [s for s in out if isinstance(s, Signal)]
    assert len(signals) == 8
    assert [s.side for s in signals[:2]] in ([Side.BUY, Side.SELL], [Side.SELL, Side.BUY])
    assert DonchianBreakout(20, 1).on_batch(ticks) == out


@settings(max_examples=300, deadline=None)
@given(ticks=tick_streams(), lookback=st.integers(1, 4), bar_seconds=st.sampled_from([0, 1, 2]))
def test_signals_equal_the_reference_on_random_streams(
    ticks: list[Tick], lookback: int, bar_seconds: int
) -> None:
    """Late trades, equal prices, two symbols: the cases a capture may not have."""
    want = reference(ticks, lookback, bar_seconds)
    got = DonchianBreakout(lookback, bar_seconds).on_batch(ticks)
    assert got == want, first_difference(got, want)


def test_a_late_trade_moves_the_open_bars_high_and_low() -> None:
    def tick(n: int, second: float, price: str) -> Tick:
        ts = int(second * NS)
        return Tick(event_id=f"x:A:{n}", venue="x", symbol="A", trade_id=n, ts_event=ts,
                    ts_recv=ts, price=Decimal(price), qty=Decimal(1))  # fmt: skip

    # Bars: [10], [11 with a late 20 folded in], then a close of 15 < high 20: no breakout.
    ticks = [tick(0, 0.1, "10"), tick(1, 1.1, "11"), tick(2, 0.5, "20"), tick(3, 2.1, "15"),
             tick(4, 3.1, "16")]  # fmt: skip
    out = DonchianBreakout(1, 1).on_batch(ticks)
    signals = [s for s in out if isinstance(s, Signal)]
    # Bar 1 closes at 20 (the late trade is its latest price) > bar 0's high 10: BUY.
    # Bar 2 closes at 15, inside bar 1's channel (low 11, high 20 -- the late trade's).
    assert [(s.side, s.price, s.ts_event) for s in signals] == [(Side.BUY, Decimal(20), 2 * NS)]
    assert out == reference(ticks, 1, 1)


def test_chosen_by_config_and_its_keys_validated(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text('[strategy]\nkind = "donchian_breakout"\nlookback = 7\nbar_seconds = 0\n')
    config = load_config(path, environ={})
    assert config.strategy.kind == "donchian_breakout"
    strategy = build_strategy(config.strategy)
    assert isinstance(strategy, DonchianBreakout)
    assert "over 7 bars on every trade" in strategy.describe()
    for bad, key in (("lookback = 0", "strategy.lookback"), ("fast = 5", "strategy.fast"),
                     ('lookback = "x"', "strategy.lookback"), ("bar_seconds = 1.5",
                     "strategy.bar_seconds")):  # fmt: skip
        path.write_text(f'[strategy]\nkind = "donchian_breakout"\n{bad}\n')
        with pytest.raises(ConfigError, match=rf"^{key}: "):
            load_config(path, environ={})
