"""/metrics parsed by prometheus-client's own text parser, whatever the database holds."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families

from engine.counters import Counters
from engine.dashboard.app import build_app
from engine.dashboard.metrics import MetricsSnapshot, render
from engine.store.sqlite_store import SqliteStore
from tests.fakes.dashboard_support import asgi_get, live_copy, replay_database


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture(scope="module")
def replay_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay_database(tmp_path_factory.mktemp("metrics") / "replay.db")


def test_render_snapshot_every_counter_named_after_it() -> None:
    counters = Counters(tick_count=12, persist_errors=1).snapshot()
    text = render(MetricsSnapshot(
        counters=counters, heartbeat_age_s=1.5, heartbeat_interval_s=10.0, healthy=True,
        run_id="run-1", mode="shadow", trading_state="ACTIVE", final=False,
        positions={"BTCUSDT": Decimal("0.5")}, marks={"BTCUSDT": Decimal("60000.5")},
        cash=Decimal("-30000.25"), fees=Decimal("0.1"), realized_pnl=Decimal("2"),
        unrealized_pnl=Decimal("-1"), equity=Decimal("0.0"),
    )).decode()
    samples = _samples(text)
    for name, value in counters.items():
        assert samples[(f"hybrid_engine_{name}", ())] == value
    assert samples[("hybrid_engine_tick_count", ())] == 12
    assert samples[("hybrid_engine_healthy", ())] == 1
    assert samples[("hybrid_engine_heartbeat_age_seconds", ())] == 1.5
    assert samples[("hybrid_engine_position", (("symbol", "BTCUSDT"),))] == 0.5
    assert samples[("hybrid_engine_mark_price", (("symbol", "BTCUSDT"),))] == 60000.5
    assert samples[("hybrid_engine_cash", ())] == -30000.25
    assert samples[("hybrid_engine_run_info",
                    (("mode", "shadow"), ("run_id", "run-1"), ("trading_state", "ACTIVE")))] == 1


def test_render_unknown_values_are_omitted_not_zero() -> None:
    samples = _samples(render(MetricsSnapshot()).decode())
    assert samples == {("hybrid_engine_healthy", ()): 0.0,
                       ("hybrid_engine_metrics_errors", ()): 0.0}


async def test_metrics_endpoint_replay_db_parses_with_counters_and_pnl(replay_db: Path) -> None:
    reply = await asgi_get(build_app(str(replay_db)), "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
    samples = _samples(reply.text)
    assert samples[("hybrid_engine_tick_count", ())] == 9757
    assert samples[("hybrid_engine_trade_count", ())] == 15
    assert samples[("hybrid_engine_heartbeat_final", ())] == 1
    assert samples[("hybrid_engine_healthy", ())] == 0  # the replay has finished
    assert samples[("hybrid_engine_heartbeat_age_seconds", ())] >= 0
    assert samples[("hybrid_engine_position", (("symbol", "BTCUSDT"),))] == pytest.approx(0.00162)
    for name in ("cash", "fees", "realized_pnl", "unrealized_pnl", "equity"):
        assert ("hybrid_engine_" + name, ()) in samples


async def test_metrics_endpoint_live_engine_is_healthy(replay_db: Path, tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    live_copy(replay_db, live, heartbeat_age_s=2.0)
    samples = _samples((await asgi_get(build_app(str(live)), "/metrics")).text)
    assert samples[("hybrid_engine_healthy", ())] == 1
    assert samples[("hybrid_engine_heartbeat_final", ())] == 0
    assert samples[("hybrid_engine_tick_count", ())] == 100


async def test_metrics_endpoint_missing_db_still_answers_unhealthy(tmp_path: Path) -> None:
    reply = await asgi_get(build_app(str(tmp_path / "absent.db")), "/metrics")
    assert reply.status == 200
    assert _samples(reply.text) == {("hybrid_engine_healthy", ()): 0.0,
                                    ("hybrid_engine_metrics_errors", ()): 0.0}


# -- hostile rows: /metrics answers 200 and parses whatever the tables hold ----------


class BadUtf8:
    """A TEXT value that is not UTF-8 (stored with CAST(blob AS TEXT)); reading it raises."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


DECIMAL_TEXTS = st.sampled_from([
    "NaN", "sNaN", "-sNaN", "Infinity", "-Infinity", "1e999999999", "-1E+999999999",
    "1e-999999999", "0E-1000000", "0", "-0", "1" * 400, "0x10", "1_000", "", " 5 ", "\x00",
])
SQL_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    DECIMAL_TEXTS,
    st.text(max_size=30),
    st.binary(max_size=12),
    st.binary(min_size=1, max_size=6).map(lambda b: BadUtf8(b"\xff" + b)),
    st.sampled_from(['{"tick_count": 1e999}', '{"tick_count": 18446744073709551616}',
                     '{"a b": 1, "tick_count": -5, "x": "y", "": 3}', "[1, 2]", "null", "{",
                     '{"strategy": {"fast": "x"}}', '"run"\n} 1', 'mode"} 1\n# x']),
)
HOSTILE_COLUMNS = {
    "runs": ("run_id", "pid", "command", "mode", "started_wall_ns", "ended_wall_ns",
             "exit_code", "clean_shutdown", "code_version", "config_json", "pragmas_json"),
    "heartbeats": ("run_id", "ts_wall_ns", "interval_s", "final", "mode", "trading_state",
                   "counters"),
    "fills": ("fill_id", "order_id", "symbol", "side", "qty", "price", "fee", "cash_delta",
              "position_delta", "ts_event"),
    "ticks": ("event_id", "venue", "symbol", "trade_id", "ts_event", "ts_recv", "price", "qty"),
}
HOSTILE_ROWS = st.fixed_dictionaries({
    table: st.lists(st.tuples(*[SQL_VALUES] * len(columns)), max_size=3)
    for table, columns in HOSTILE_COLUMNS.items()
})


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the engine's real schema (migrations applied), no rows."""
    path = tmp_path_factory.mktemp("hostile") / "empty.db"
    SqliteStore.open(path).close()
    return path


def _insert_hostile(path: Path, rows: dict[str, list[tuple[Any, ...]]]) -> int:
    inserted = 0
    with sqlite3.connect(path) as conn:
        for table, values in rows.items():
            columns = HOSTILE_COLUMNS[table]
            for row in values:
                marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, BadUtf8) else "?"
                                  for v in row)
                args = [v.raw if isinstance(v, BadUtf8) else v for v in row]
                # OR IGNORE: a row a NOT NULL/CHECK/PRIMARY KEY constraint refuses is skipped.
                cursor = conn.execute(
                    f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                    args)
                inserted += cursor.rowcount
    return inserted


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=HOSTILE_ROWS)
async def test_metrics_and_healthz_hostile_rows_answer_and_parse(
    empty_db: Path, rows: dict[str, list[tuple[Any, ...]]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hostile.db"
        shutil.copyfile(empty_db, path)
        _insert_hostile(path, rows)
        reply = await asgi_get(build_app(str(path)), "/metrics")
        health = await asgi_get(build_app(str(path)), "/healthz")
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
    samples = _samples(reply.text)  # the parser raises on anything Prometheus would refuse
    assert samples[("hybrid_engine_healthy", ())] in (0.0, 1.0)
    assert samples[("hybrid_engine_metrics_errors", ())] in (0.0, 1.0, 2.0, 3.0, 4.0)
    assert health.status in (200, 503), health.text  # a verdict, never a 500
    assert health.json()["status"] in ("ok", "fail")


@pytest.mark.parametrize(
    ("table", "row", "part"),
    [
        # A later tick marks BTCUSDT at a signalling NaN, which no float can carry.
        ("ticks", ("binance:BTCUSDT:x", "binance", "BTCUSDT", 1, 2**62, 2**62, "sNaN", "1"),
         "ledger"),
        ("fills", ("f", "o", "BTCUSDT", "BUY", "1", "not-a-number", "0", "0", "1", 0), "ledger"),
        ("runs", (BadUtf8(b"\xffrun"), 1, "run", "shadow", 0, None, None, 0, "v", "{}", "{}"),
         "run"),
    ],
)
async def test_metrics_endpoint_unreadable_part_is_counted_others_still_exposed(
    replay_db: Path, tmp_path: Path, table: str, row: tuple[Any, ...], part: str
) -> None:
    path = tmp_path / "broken.db"
    shutil.copyfile(replay_db, path)
    assert _insert_hostile(path, {table: [row]}) == 1
    reply = await asgi_get(build_app(str(path)), "/metrics")
    assert reply.status == 200
    samples = _samples(reply.text)
    assert samples[("hybrid_engine_metrics_errors", ())] >= 1
    if part == "ledger":
        assert ("hybrid_engine_cash", ()) not in samples
        assert samples[("hybrid_engine_tick_count", ())] == 9757  # the heartbeat still reads


@pytest.mark.parametrize(
    "heartbeat",
    [("r", "x", 10.0, 0, "shadow", "ACTIVE", "{}"), ("r", 1, "abc", 0, "shadow", "ACTIVE", "{}")],
)
async def test_healthz_unreadable_heartbeat_is_503_with_reason_metrics_still_200(
    empty_db: Path, tmp_path: Path, heartbeat: tuple[Any, ...]
) -> None:
    path = tmp_path / "hostile.db"
    shutil.copyfile(empty_db, path)
    run = ("r", 1, "run", "shadow", 0, None, None, 0, "v", "{}", "{}")
    assert _insert_hostile(path, {"runs": [run], "heartbeats": [heartbeat]}) == 2
    health = await asgi_get(build_app(str(path)), "/healthz")
    assert health.status == 503
    assert health.json()["problems"] == [
        "health unreadable: ValueError reading the latest run or heartbeat"]
    metrics = await asgi_get(build_app(str(path)), "/metrics")
    assert metrics.status == 200
    assert _samples(metrics.text)[("hybrid_engine_metrics_errors", ())] == 1
