"""/metrics parsed by prometheus-client's own text parser."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.counters import Counters
from engine.dashboard.app import build_app
from engine.metrics import CONTENT_TYPE, MetricsSnapshot, render
from tests.dashboard_support import asgi_get, live_copy, replay_database


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
    assert samples == {("hybrid_engine_healthy", ()): 0.0}


async def test_metrics_endpoint_replay_db_parses_with_counters_and_pnl(replay_db: Path) -> None:
    reply = await asgi_get(build_app(str(replay_db)), "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == CONTENT_TYPE
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
    assert _samples(reply.text) == {("hybrid_engine_healthy", ()): 0.0}
