"""Staleness: lag measured against the connection's normal latency, not a fixed zero."""

from __future__ import annotations

from pathlib import Path

import msgspec

from engine.config.schema import Config
from engine.core.choice import build_strategy
from engine.core.events import Side, Signal, Veto, VetoReason
from engine.core.execution import Execution
from engine.core.staleness import StalenessEstimator
from engine.proof.invariants import real_ticks

REAL_CAPTURE = Path(__file__).resolve().parents[2] / "replays" / "btcusdt_20240808.gz"
MS = 1_000_000


def test_real_capture_negative_skew_no_tick_stale_with_default_limit() -> None:
    ticks = real_ticks()
    assert len(ticks) == 9_757
    estimator = StalenessEstimator(Config().risk.max_staleness_ms)
    lags = [estimator.observe(t.ts_event, t.ts_recv) for t in ticks]
    # The recorder's clock runs ~1.27 s behind the exchange: the raw lag is negative...
    assert max(lag.raw_ns for lag in lags) < -1_000 * MS
    # ...and nothing is stale once measured against the learned baseline.
    assert not any(lag.stale for lag in lags)
    assert max(lag.excess_ns for lag in lags) < 1_000 * MS


def test_real_capture_tick_delayed_beyond_limit_is_stale() -> None:
    ticks = real_ticks()[:3000]
    estimator = StalenessEstimator(5000)
    for t in ticks:
        estimator.observe(t.ts_event, t.ts_recv)
    last = ticks[-1]
    # 5.1 s later than its normal ~-1.27 s: stale, though its raw lag is only ~3.8 s.
    lag = estimator.observe(last.ts_event, last.ts_recv + 5_100 * MS)
    assert lag.stale
    assert 5_000 * MS < lag.excess_ns < 5_200 * MS
    on_time = estimator.observe(last.ts_event, last.ts_recv + 4_000 * MS)
    assert not on_time.stale


def test_estimator_same_sequence_same_verdicts() -> None:
    def verdicts() -> list[tuple[int, bool]]:
        estimator = StalenessEstimator(5000, block=64)
        out = []
        for i in range(500):
            lag = ((i * 7919) % 997) * MS + (9_000 * MS if i % 50 == 0 else 0)
            result = estimator.observe(i * MS, i * MS + lag)
            out.append((result.baseline_ns, result.stale))
        return out

    first = verdicts()
    assert first == verdicts()
    # The delayed ticks, except the very first (it is its own baseline).
    assert sum(stale for _, stale in first) == 9


def test_estimator_first_block_uses_running_minimum() -> None:
    estimator = StalenessEstimator(100, block=4)
    assert estimator.observe(0, 50 * MS).baseline_ns == 50 * MS
    assert estimator.observe(0, 20 * MS).baseline_ns == 20 * MS
    late = estimator.observe(0, 130 * MS)
    assert (late.excess_ns, late.stale) == (110 * MS, True)


def test_estimator_offset_shift_learned_after_a_block() -> None:
    estimator = StalenessEstimator(100, block=10)
    for _ in range(10):
        estimator.observe(0, -1_000 * MS)  # an old, very negative offset
    shifted = [estimator.observe(0, 0) for _ in range(10)]
    assert all(lag.stale for lag in shifted)  # judged against the old block
    after = estimator.observe(0, 0)
    assert after.baseline_ns == 0
    assert not after.stale


def test_estimator_block_percentile_ignores_a_low_outlier() -> None:
    estimator = StalenessEstimator(100, block=200)
    estimator.observe(0, -60_000 * MS)  # one bogus exchange timestamp
    for _ in range(199):
        estimator.observe(0, 0)
    assert estimator.observe(0, 50 * MS).baseline_ns == 0


def test_real_capture_through_strategy_and_execution_has_no_stale_veto() -> None:
    config = Config()
    strategy = build_strategy(config.strategy)
    execution = Execution(config)
    records = []
    signals = 0
    ticks = real_ticks()
    for start in range(0, len(ticks), 1000):
        decisions = strategy.on_batch(ticks[start : start + 1000])
        signals += sum(isinstance(d, Signal) for d in decisions)
        records.extend(execution.process(decisions))
    vetoes = [r for r in records if isinstance(r, Veto)]
    assert signals > 10
    assert not [v for v in vetoes if v.reason is VetoReason.STALE_DATA]


def test_signal_caused_by_delayed_real_tick_vetoed_stale_with_lag_detail() -> None:
    ticks = list(real_ticks()[:2000])
    execution = Execution(Config())
    execution.process(list(ticks[:-1]))
    late = msgspec.structs.replace(ticks[-1], ts_recv=ticks[-1].ts_recv + 6_000 * MS)
    sig = Signal(
        signal_id=f"sig:{late.event_id}",
        symbol=late.symbol,
        side=Side.BUY,
        ts_event=late.ts_event,
        ts_recv=late.ts_recv,
        price=late.price,
        cause_id=late.event_id,
    )
    [veto] = execution.process([late, sig])
    assert isinstance(veto, Veto)
    assert veto.reason is VetoReason.STALE_DATA
    assert veto.detail.startswith(f"tick {late.event_id}: lag 6")

