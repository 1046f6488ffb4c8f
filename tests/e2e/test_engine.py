"""The whole engine in real subprocesses: replay, signals, exit codes, locks, PRAGMAs."""

from __future__ import annotations

import gzip
import json
import signal
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from engine.store.sqlite_store import SqliteStore
from tests.fakes.engine_process import (
    REAL_CAPTURE,
    REAL_TRADES,
    EngineProcess,
    parse_logs,
    run_engine,
)

pytestmark = pytest.mark.slow


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def scalar(db: Path, sql: str) -> object:
    return query(db, sql)[0][0]


def final_heartbeat(db: Path) -> dict[str, int]:
    rows = query(db, "SELECT counters FROM heartbeats WHERE final = 1 ORDER BY hb_id DESC LIMIT 1")
    assert rows, "no final heartbeat recorded"
    counters: dict[str, int] = json.loads(str(rows[0][0]))
    return counters


def test_replay_real_capture_persists_every_trade_and_exits_0(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    result = run_engine(["replay", str(REAL_CAPTURE), "--db", str(db)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert scalar(db, "SELECT count(*) FROM ticks") == REAL_TRADES
    assert scalar(db, "SELECT count(DISTINCT event_id) FROM ticks") == REAL_TRADES
    assert query(db, "SELECT min(trade_id), max(trade_id) FROM ticks") == [(3735683259, 3735693015)]
    assert query(db, "SELECT exit_code, clean_shutdown FROM runs") == [(0, 1)]
    counters = final_heartbeat(db)
    assert counters["ingest_processed"] == REAL_TRADES
    assert counters["tick_count"] == REAL_TRADES
    assert counters["signal_count"] == scalar(db, "SELECT count(*) FROM signals")
    assert counters["stale_ticks"] == 0  # the recorder's 1.27 s clock skew is normal
    events = [line["event"] for line in parse_logs(result.stdout)]
    assert events[-3:] == ["wal_checkpointed", "clean_shutdown", "replay_results"]
    assert parse_logs(result.stdout)[-2]["recorded"] is True


def test_replay_twice_into_same_database_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    assert run_engine(["replay", str(REAL_CAPTURE), "--db", str(db)]).returncode == 0
    first = run_engine(["digest", "--db", str(db)]).stdout
    assert run_engine(["replay", str(REAL_CAPTURE), "--db", str(db)]).returncode == 0
    assert run_engine(["digest", "--db", str(db)]).stdout == first
    assert scalar(db, "SELECT count(*) FROM ticks") == REAL_TRADES


def test_pragmas_read_back_from_database_file_after_run(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    assert run_engine(["replay", str(REAL_CAPTURE), "--db", str(db)]).returncode == 0
    with sqlite3.connect(db) as conn:  # a fresh connection: only the file's own state
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    recorded = json.loads(str(scalar(db, "SELECT pragmas_json FROM runs")))
    assert recorded["journal_mode"] == "wal"
    assert recorded["synchronous"] == 1  # NORMAL
    assert int(recorded["busy_timeout"]) >= 1000
    assert recorded["temp_store"] == 2  # MEMORY


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_paced_replay_drains_and_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    db = tmp_path / "engine.db"
    engine = EngineProcess(
        ["replay", str(REAL_CAPTURE), "--db", str(db), "--speed", "1"],
        env={"ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.2"},
    )
    try:
        engine.wait_for(lambda e: e.get("event") == "heartbeat" and e["ingest_processed"] > 0)
        engine.send_signal(signum)
        code = engine.finish()
    finally:
        engine.kill()
    assert code == 0
    assert engine.events("shutdown_requested")[0]["signal"] == signum.name
    assert engine.events("clean_shutdown"), "no clean-shutdown marker logged"
    assert query(db, "SELECT exit_code, clean_shutdown FROM runs") == [(0, 1)]
    counters = final_heartbeat(db)
    persisted = scalar(db, "SELECT count(*) FROM ticks")
    assert persisted == counters["ingest_processed"]
    assert 0 < counters["ingest_processed"] < REAL_TRADES  # it really was interrupted
    assert counters["tick_count"] == counters["ingest_processed"]  # drained, not dropped


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[strategy]\nfast = 30\nslow = 20\n", "strategy.slow"),
        ("[risk]\nmax_exposure_usd = -1\n", "risk.max_exposure_usd"),
        ("[execution]\nunknown_knob = 1\n", "execution.unknown_knob"),
    ],
)
def test_bad_config_exits_12_naming_the_key(tmp_path: Path, toml: str, key: str) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(toml)
    db = tmp_path / "engine.db"
    result = run_engine(["replay", str(REAL_CAPTURE), "--config", str(config), "--db", str(db)])
    assert result.returncode == 12
    assert key in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not db.exists(), "a refused config must not touch the database"


def test_live_mode_without_gate_exits_12(tmp_path: Path) -> None:
    result = run_engine(
        ["replay", str(REAL_CAPTURE), "--db", str(tmp_path / "e.db")],
        env={"ENGINE_ENGINE_MODE": "live"},
    )
    assert result.returncode == 12
    assert "live" in result.stderr.lower()


def test_locked_database_is_waited_out_and_nothing_is_lost(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    SqliteStore.open(db).close()  # create + migrate, so the test can lock a real schema
    engine = EngineProcess(
        ["replay", str(REAL_CAPTURE), "--db", str(db), "--speed", "4"],
        env={
            "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.2",
            "ENGINE_ENGINE_BUSY_TIMEOUT_MS": "1000",
        },
    )
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        engine.wait_for(lambda e: e.get("event") == "heartbeat" and e["persist_count"] > 0)
        locker.execute("BEGIN EXCLUSIVE")
        # The engine's first attempt waits busy_timeout (1 s) before it reports a retry,
        # so seeing the retry proves the lock was held longer than busy_timeout.
        engine.wait_for(lambda e: e.get("event") == "persist_lock_retry")
        locker.execute("COMMIT")
        engine.wait_for(lambda e: e.get("event") == "heartbeat" and e["persist_errors"] > 0)
        engine.send_signal(signal.SIGINT)
        code = engine.finish()
    finally:
        locker.close()
        engine.kill()
    assert code == 0
    counters = final_heartbeat(db)
    assert counters["persist_errors"] >= 1
    assert scalar(db, "SELECT count(*) FROM ticks") == counters["ingest_processed"] > 0


def test_drawdown_halt_is_logged_once_and_later_entries_vetoed(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    result = run_engine(
        ["replay", str(REAL_CAPTURE), "--db", str(db)],
        env={"ENGINE_RISK_MAX_DRAWDOWN_USD": "0.05"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    changes = [
        line for line in parse_logs(result.stdout) if line["event"] == "trading_state_changed"
    ]
    assert [(c["before"], c["after"]) for c in changes] == [("ACTIVE", "HALTED")]
    assert Decimal(changes[0]["peak_equity"]) - Decimal(changes[0]["equity"]) > Decimal("0.05")
    assert int(str(scalar(db, "SELECT count(*) FROM vetoes WHERE reason = 'HALTED'"))) > 0
    assert final_heartbeat_row(db) == "HALTED"


def final_heartbeat_row(db: Path) -> object:
    return scalar(db, "SELECT trading_state FROM heartbeats WHERE final = 1")


@pytest.mark.parametrize("force", ["drain_timeout", "second_signal"])
def test_drain_that_cannot_finish_is_forced_and_exits_13(tmp_path: Path, force: str) -> None:
    """The writer is stuck on a lock held by another connection; the stop still happens."""
    db = tmp_path / "engine.db"
    SqliteStore.open(db).close()
    engine = EngineProcess(
        ["replay", str(REAL_CAPTURE), "--db", str(db), "--speed", "4"],
        env={
            "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.2",
            "ENGINE_ENGINE_BUSY_TIMEOUT_MS": "1000",
            "ENGINE_ENGINE_DRAIN_TIMEOUT_S": "1.5" if force == "drain_timeout" else "600",
        },
    )
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        engine.wait_for(lambda e: e.get("event") == "heartbeat" and e["persist_count"] > 0)
        locker.execute("BEGIN EXCLUSIVE")
        engine.wait_for(lambda e: e.get("event") == "persist_lock_retry")
        engine.send_signal(signal.SIGINT)
        engine.wait_for(lambda e: e.get("event") == "shutdown_requested")
        if force == "second_signal":
            engine.send_signal(signal.SIGINT)
        forced = engine.wait_for(lambda e: e.get("event") == "shutdown_forced")
        code = engine.finish()  # while the lock is still held: nothing waits for it
    finally:
        locker.close()
        engine.kill()
    assert code == 13
    expected = "second signal" if force == "second_signal" else "drain_timeout_s"
    assert expected in forced["reason"]
    stopped = engine.events("engine_stopped")
    assert stopped and stopped[0]["exit_name"] == "OVERLOAD"
    assert not engine.events("clean_shutdown")


def test_delayed_tick_is_counted_stale_and_the_normal_skew_is_not(tmp_path: Path) -> None:
    """The capture's recorder clock runs ~1.27 s behind the exchange: that is normal.
    One trade delivered 7 s late (beyond max_staleness_ms = 5 s) is stale."""
    lines = gzip.decompress(REAL_CAPTURE.read_bytes()).splitlines()
    trades = [i for i, line in enumerate(lines) if b'"e":"trade"' in line]
    late = trades[3000]
    ts, _, payload = lines[late].partition(b" ")
    lines[late] = str(int(ts) + 7_000_000_000).encode() + b" " + payload
    capture = tmp_path / "delayed.capture"
    capture.write_bytes(b"\n".join(lines) + b"\n")
    db = tmp_path / "engine.db"
    result = run_engine(["replay", str(capture), "--db", str(db)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert final_heartbeat(db)["stale_ticks"] == 1


@pytest.mark.parametrize("release_after_first_signal", [True, False], ids=["released", "forced"])
def test_database_locked_at_startup_is_waited_on_and_signals_are_heard(
    tmp_path: Path, release_after_first_signal: bool
) -> None:
    """Another process holds the write lock when the engine starts (e.g. a backup).
    The engine waits (it never crashes on a lock) yet still obeys SIGINT: released
    after the first signal, it drains the nothing it accepted and exits 0; held
    through a second signal, it gives up and exits 13 -- no traceback either way."""
    db = tmp_path / "engine.db"
    SqliteStore.open(db).close()
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    engine = EngineProcess(
        ["replay", str(REAL_CAPTURE), "--db", str(db), "--speed", "1"],
        env={"ENGINE_ENGINE_BUSY_TIMEOUT_MS": "1000"},
    )
    try:
        engine.wait_for(lambda e: e.get("event") == "persist_lock_retry" and e["what"] == "run")
        engine.send_signal(signal.SIGINT)
        engine.wait_for(lambda e: e.get("event") == "shutdown_requested")
        if release_after_first_signal:
            locker.execute("COMMIT")
        else:
            engine.send_signal(signal.SIGINT)
            engine.wait_for(lambda e: e.get("event") == "shutdown_forced")
        code = engine.finish()
        stderr = engine.proc.stderr.read() if engine.proc.stderr else ""
    finally:
        locker.close()
        engine.kill()
    assert "Traceback" not in stderr
    if release_after_first_signal:
        assert code == 0
        assert query(db, "SELECT exit_code, clean_shutdown FROM runs") == [(0, 1)]
        assert scalar(db, "SELECT count(*) FROM ticks") == 0  # stopped before ingest began
    else:
        assert code == 13
        assert engine.events("engine_stopped")[0]["exit_name"] == "OVERLOAD"
