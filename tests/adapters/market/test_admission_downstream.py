"""Hypothesis downstream of admission: any ticks admission can let through never make
the strategy, execution (SHADOW, PAPER), the store (a real SQLite file), the restore,
``hybrid-engine report`` or the dashboard (every JSON API and ``/metrics``) raise.

The ticks are drawn from everything ``parse_decimal`` admits (any magnitude in
``[1e-12, 1e15)``, any scale up to 12) rather than through the price band: the band
admits any such value sooner or later (a symbol's first tick, a re-anchor, a slow
drift), so downstream must be safe for all of them. Issue 10: a 76-digit price once
raised ``decimal.Inexact`` in sizing and made ``report`` and ``/api/portfolio`` fail.
"""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

import msgspec
import trio
from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.market.admission import MAX_SCALE, parse_decimal
from engine.config.schema import (
    Config,
    EngineSection,
    ExecutionSection,
    Mode,
    OrderTypeName,
    RiskSection,
    StrategySection,
)
from engine.core.events import Record, Signal, Tick
from engine.core.execution import Execution
from engine.core.strategy import from_config
from engine.counters import Counters
from engine.store.report import build_report
from engine.store.restore import load_restored_state
from engine.store.sqlite_store import SqliteStore
from tests.fakes.admission_fuzz import fuzzed, inputs, profile
from tests.fakes.dashboard_support import asgi_get

NOW_NS = 1_796_000_000_000 * 1_000_000
SYMBOLS = ("BTCUSDT", "ETHUSDT", "X")
ENDPOINTS = (
    ("/api/status", ""), ("/api/symbols", ""), ("/api/portfolio", ""), ("/api/equity", ""),
    ("/api/signals", ""), ("/api/orders", ""), ("/api/fills", ""), ("/api/vetoes", ""),
    ("/api/runs", ""), ("/api/heartbeats", ""), ("/metrics", ""),
)  # fmt: skip


@st.composite
def admissible_decimal(draw: st.DrawFn) -> Decimal:
    """Any value ``parse_decimal`` admits, with the extremes likely."""
    whole = draw(st.one_of(st.integers(0, 10**15 - 1), st.sampled_from([0, 1, 10**15 - 1])))
    scale = draw(st.integers(0, MAX_SCALE))
    fraction = draw(st.integers(0, 10**scale - 1)) if scale else 0
    text = f"{whole}.{fraction:0{scale}d}" if scale else str(whole)
    value = parse_decimal(text)
    if value is None:  # zero
        value = Decimal("1E-12")
    return value


@st.composite
def admitted_ticks(draw: st.DrawFn) -> list[Tick]:
    n = draw(st.integers(1, 60))
    ticks = []
    ts = NOW_NS
    next_id = dict.fromkeys(SYMBOLS, 1)
    for _ in range(n):
        symbol = draw(st.sampled_from(SYMBOLS))
        ts += draw(st.integers(0, 3 * 10**9))
        lag = draw(st.integers(-(10**9), 300 * 10**9))
        trade_id = next_id[symbol] + draw(st.integers(0, 3))
        next_id[symbol] = trade_id + 1
        ticks.append(
            Tick(event_id=f"binance:{symbol}:{trade_id}", venue="binance", symbol=symbol,
                 trade_id=trade_id, ts_event=ts, ts_recv=ts + lag,
                 price=draw(admissible_decimal()), qty=draw(admissible_decimal()))
        )
    return ticks


configs = st.builds(
    lambda mode, order_type, drawdown, bar_seconds, latency: msgspec.structs.replace(
        Config(),
        engine=EngineSection(mode=mode),
        strategy=StrategySection(fast=2, slow=4, bar_seconds=bar_seconds),
        risk=RiskSection(max_drawdown_usd=drawdown),
        execution=ExecutionSection(order_type=order_type, latency_ms=latency,
                                   limit_offset_bps=Decimal("5")),
    ),
    st.sampled_from([Mode.SHADOW, Mode.PAPER]),
    st.sampled_from(list(OrderTypeName)),
    st.sampled_from([None, Decimal("10"), Decimal("1E+6")]),
    st.sampled_from([0, 1]),
    st.sampled_from([0, 50]),
)


def run_pipeline(cfg: Config, ticks: list[Tick], db: Path) -> None:
    """Strategy -> execution -> store, in two runs with a restart between them."""
    half = len(ticks) // 2
    for part in (ticks[:half], ticks[half:]):
        store = SqliteStore.open(db)
        try:
            execution = Execution(cfg)
            execution.restore(load_restored_state(store.connection))
            strategy = from_config(cfg.strategy)
            for i in range(0, len(part), 7):
                decisions: list[Tick | Signal] = strategy.on_batch(part[i : i + 7])
                records: list[Record] = [*decisions, *execution.process(decisions)]
                store.write_records(records)
                execution.equity()
                execution.total_exposure()
        finally:
            store.close()


async def read_dashboard(db: Path) -> None:
    from engine.dashboard.app import build_app

    app = build_app(str(db))
    for path, query in ENDPOINTS:
        reply = await asgi_get(app, path, query)
        assert reply.status == 200, (path, reply.status, reply.body[:300])
    for symbol in SYMBOLS:
        reply = await asgi_get(app, "/api/prices", f"symbol={symbol}")
        assert reply.status == 200, (symbol, reply.body[:300])


@profile(40, fuzz_share=0.005)
@given(configs, admitted_ticks())
def test_admitted_ticks_never_raise_downstream(cfg: Config, ticks: list[Tick]) -> None:
    inputs["downstream_ticks"] += len(ticks)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "engine.db"
        run_pipeline(cfg, ticks, db)
        store = SqliteStore.open(db)
        try:
            store.start_run("run-1", 1, "replay", str(cfg.engine.mode), NOW_NS, "test", "{}")
            store.write_heartbeat("run-1", NOW_NS, 10.0, Counters().snapshot(), True,
                                  str(cfg.engine.mode), "ACTIVE")  # fmt: skip
            report = build_report(store.connection)
            report.to_text()
            msgspec.json.encode(report.to_builtins())
            assert report.ok, report.to_text()
        finally:
            store.close()
        trio.run(read_dashboard, db)


PROPERTIES = [test_admitted_ticks_never_raise_downstream]
fuzzed(__name__, PROPERTIES)
