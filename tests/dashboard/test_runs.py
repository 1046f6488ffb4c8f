"""The dashboard names each run: ``/api/runs`` and ``/api/status`` carry the run's mode,
strategy, risk-config hash, source identity and counts; the header's mode is the latest run's."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engine.config.schema import Config
from engine.dashboard.app import build_app
from engine.proof.evidence import risk_config_hash
from engine.store.sqlite_store import SqliteStore
from tests.fakes.dashboard_support import asgi_get, replay_database
from tests.fakes.engine_process import REAL_CAPTURE, REAL_TRADES
from tests.fakes.legacy_store import open_legacy_store


@pytest.fixture(scope="module")
def replay_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay_database(tmp_path_factory.mktemp("replay") / "replay.db")


async def _json(app: Any, path: str, query: str = "") -> Any:
    reply = await asgi_get(app, path, query)
    assert reply.status == 200, reply.text
    return reply.json()


async def test_api_runs_names_mode_params_source_and_counts(replay_db: Path) -> None:
    [run] = (await _json(build_app(str(replay_db)), "/api/runs"))["runs"]
    assert run["mode"] == "shadow" and run["command"] == "replay"
    assert run["strategy_kind"] == "sma_cross"
    assert run["strategy_params"] == {"fast": 5, "slow": 20, "bar_seconds": 1}
    assert run["risk_config_hash"] == risk_config_hash(Config())
    assert run["source_kind"] == "replay"
    [capture] = run["source"]["captures"]
    assert capture["name"] == REAL_CAPTURE.name
    assert capture["size"] == REAL_CAPTURE.stat().st_size
    assert capture["first_event_ns"] == run["first_event_ns"]
    assert run["first_event_ns"] <= run["last_event_ns"]
    assert run["counts"] == {"ticks": REAL_TRADES, "signals": 16, "orders": 15, "fills": 15,
                             "vetoes": 1}


@pytest.fixture
def next_run_db(replay_db: Path, tmp_path: Path) -> Path:
    """The replay's database plus a newer PAPER run whose heartbeat says shadow."""
    db = tmp_path / "e.db"
    shutil.copyfile(replay_db, db)
    store = SqliteStore.open(db)
    # The heartbeat's mode is a config value; the run row is what the run was.
    store.start_run("run-next", 1, "run", "paper", 1, "test", "{}")
    store.write_heartbeat("run-next", 2, 10.0, {"tick_count": 0}, False, "shadow", "ACTIVE")
    store.close()
    return db


async def test_header_mode_is_the_latest_runs_not_its_heartbeats(next_run_db: Path) -> None:
    status = await _json(build_app(str(next_run_db)), "/api/status")
    assert status["run"]["run_id"] == "run-next"
    assert status["mode"] == "paper"


@pytest.fixture
def legacy_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A database from before run identities (no ``0005_run_identity``), one run row."""
    db = tmp_path / "old.db"
    open_legacy_store(db, monkeypatch).close()
    with sqlite3.connect(db) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert "source_json" not in columns
    return db


async def test_api_runs_on_a_database_from_before_run_identity_reads_nulls(
    legacy_db: Path,
) -> None:
    [run] = (await _json(build_app(str(legacy_db)), "/api/runs"))["runs"]
    assert run["run_id"] == "run-old" and run["mode"] == "shadow"
    assert run["source"] is None and run["counts"] is None and run["risk_config_hash"] is None
