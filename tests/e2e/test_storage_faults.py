"""Storage faults against the real engine: real SQLite files, real subprocesses, real signals.

Each test breaks the database the way a careless operator or a failing disk would
(a lock held too long, the file deleted or replaced, the disk full, a corrupt page,
a read-only file, a writer stuck in SQLite past the drain deadline) and checks the
documented exit code (docs/operations.md, "Storage faults"), that nothing accepted
is lost where the fault allows it, and that no traceback escapes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from engine.dashboard.db import DatabaseUnavailable, ReadOnlyDatabase
from engine.store.sqlite_store import SqliteStore
from tests.fakes.dashboard_support import http_get, serve_dashboard
from tests.fakes.engine_process import REAL_CAPTURE, EngineProcess, LogLine, run_engine
from tests.fakes.fake_exchange import Session, open_fake_exchange

SYNTHETIC_FAST = {
    "ENGINE_INGEST_SOURCE": "synthetic",
    "ENGINE_INGEST_SYNTHETIC_RATE_PER_S": "2000",
    "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.2",
}


def scalar(db: Path, sql: str) -> object:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchone()[0]


def final_counters(db: Path) -> dict[str, int]:
    raw = scalar(db, "SELECT counters FROM heartbeats WHERE final = 1")
    assert isinstance(raw, str), "no final heartbeat stored"
    counters: dict[str, int] = json.loads(raw)
    return counters


def persisted(line: LogLine) -> bool:
    return line.get("event") == "heartbeat" and line["persist_count"] > 0


def no_traceback(engine: EngineProcess) -> str:
    assert engine.proc.stderr is not None
    err = engine.proc.stderr.read()
    assert "Traceback" not in err, err[-3000:]
    return err


def one_line_refusal(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 12, (result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- a lock held longer than the enqueue timeout ------------------------------------


def lock_past_overload_then_release(engine: EngineProcess, db: Path) -> dict[str, int]:
    """Lock the database once the engine persisted something, hold the lock until the
    engine declares overload, release it (well within the drain deadline), and check
    the run: exit 13, retries counted, every accepted tick written. The final counters."""
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        engine.wait_for(persisted)
        locker.execute("BEGIN EXCLUSIVE")
        # Held past enqueue_timeout_s: the queues behind the stuck writer stayed full.
        fault = engine.wait_for(lambda e: e.get("event") == "stopping_on_fault")
        assert fault["exit_code"] == 13
        locker.execute("COMMIT")  # freed within the drain deadline
        code = engine.finish()
    finally:
        locker.close()
        engine.kill()
    no_traceback(engine)
    assert code == 13
    counters = final_counters(db)
    assert counters["persist_retries"] > 0
    ticks = scalar(db, "SELECT count(*) FROM ticks")
    assert ticks == counters["ingest_processed"] > 0  # nothing accepted was lost
    return counters



@pytest.mark.parametrize("source", ["replay", "synthetic"])
def test_lock_longer_than_enqueue_timeout_loses_nothing_accepted_and_exits_13(
    tmp_path: Path, source: str
) -> None:
    db = tmp_path / "engine.db"
    SqliteStore.open(db).close()  # schema in place, so the test can lock it
    env = {
        **SYNTHETIC_FAST,
        "ENGINE_ENGINE_BUSY_TIMEOUT_MS": "1000",
        "ENGINE_ENGINE_ENQUEUE_TIMEOUT_S": "1.0",
        "ENGINE_ENGINE_DRAIN_TIMEOUT_S": "60",
    }
    if source == "replay":
        args = ["replay", str(REAL_CAPTURE), "--db", str(db), "--speed", "20"]
    else:
        args = ["run", "--db", str(db)]
    engine = EngineProcess(args, env=env)
    counters = lock_past_overload_then_release(engine, db)
    if source == "replay":  # lossless backpressure: the file was read more slowly
        assert counters["bp_drops_tick"] == 0
    assert scalar(db, "SELECT exit_code FROM runs ORDER BY started_wall_ns DESC") == 13
    assert scalar(db, "SELECT clean_shutdown FROM runs ORDER BY started_wall_ns DESC") == 0
    retries = [e["persist_retries"] for e in engine.events("heartbeat")]
    assert retries[-1] == counters["persist_retries"]


# -- the database file deleted or replaced under the running engine -----------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_database_file_deleted_or_replaced_mid_run_stops_with_12(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "engine.db"
    engine = EngineProcess(["run", "--db", str(db)], env=SYNTHETIC_FAST)
    try:
        engine.wait_for(persisted)
        if how == "deleted":
            db.unlink()
        else:
            other = tmp_path / "other.db"
            SqliteStore.open(other).close()
            os.replace(other, db)
        replaced = engine.wait_for(lambda e: e.get("event") == "store_file_replaced", 30)
        code = engine.finish(30)
    finally:
        engine.kill()
    err = no_traceback(engine)
    assert code == 12
    assert f"{db} {'removed' if how == 'deleted' else 'replaced'}" in replaced["changed"]
    assert not engine.events("clean_shutdown")
    stopped = engine.events("engine_stopped")
    assert [e["exit_code"] for e in stopped] == [12]
    assert "StoreFileReplaced" in stopped[0]["error"]
    assert "Traceback" not in err
    if how == "replaced":  # the other database was not written into
        assert scalar(db, "SELECT count(*) FROM ticks") == 0


# -- disk full on a small file system ----------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("disk-full test needs root to mount a small tmpfs")
    where.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(fs: Path) -> Path:
    """Write a file until the file system is full; return it."""
    filler = fs / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError:
            pass
    # Whatever a full buffer still held is gone with ENOSPC; the file system is full.
    return filler


@pytest.mark.parametrize("space_returns", [False, True])
def test_disk_full_mid_run_is_a_resource_stop_13(tmp_path: Path, space_returns: bool) -> None:
    with small_tmpfs(tmp_path / "fs", "16m") as fs:
        db = fs / "engine.db"
        engine = EngineProcess(
            ["run", "--db", str(db)],
            env={**SYNTHETIC_FAST, "ENGINE_ENGINE_DRAIN_TIMEOUT_S": "30" if space_returns else "1"},
        )
        filler = None
        try:
            engine.wait_for(persisted)
            filler = fill(fs)
            fault = engine.wait_for(lambda e: e.get("event") == "stopping_on_fault", 60)
            if space_returns:
                filler.unlink()
            code = engine.finish(60)
        finally:
            engine.kill()
        no_traceback(engine)
        assert code == 13
        assert "StorageFull" in fault["error"] or "StorageFailed" in fault["error"]
        retried = engine.events("persist_fault_retry")  # or a heartbeat met it first
        assert retried or engine.events("heartbeat_write_failed")
        if space_returns:  # the drain wrote everything that was accepted
            counters = final_counters(db)
            assert scalar(db, "SELECT count(*) FROM ticks") == counters["ingest_processed"] > 0
            events = [(e["event"], e.get("error", "")) for e in engine.lines
                      if e.get("level") != "info" or "fault" in e["event"]]
            assert bool(engine.events("persist_fault_recovered")) == bool(retried), events


# -- a corrupt page ------------------------------------------------------------------


@pytest.fixture(scope="module")
def corrupt_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real replay's database with one b-tree page in the middle overwritten."""
    db = tmp_path_factory.mktemp("corrupt") / "engine.db"
    result = run_engine(["replay", str(REAL_CAPTURE), "--db", str(db)])
    assert result.returncode == 0, result.stderr[-2000:]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    with db.open("r+b") as f:
        f.seek(page_size * (pages // 2))
        f.write(bytes(range(256)) * (page_size // 256))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:  # too damaged even to be checked
            verdict = str(exc)
    assert verdict != "ok"
    return db


@pytest.mark.parametrize("command", ["replay", "run"])
def test_corrupt_page_refused_at_start_with_12_and_one_line(
    corrupt_db: Path, command: str
) -> None:
    before = sha256(corrupt_db)
    args = ["replay", str(REAL_CAPTURE)] if command == "replay" else ["run"]
    result = run_engine([*args, "--db", str(corrupt_db)], timeout=60)
    one_line_refusal(result, "quick_check", str(corrupt_db))
    assert sha256(corrupt_db) == before  # nothing written into the damaged file


@pytest.mark.parametrize("command", ["report", "digest"])
def test_corrupt_page_refused_by_readers_with_12(corrupt_db: Path, command: str) -> None:
    result = run_engine([command, "--db", str(corrupt_db)], timeout=60)
    one_line_refusal(result, "quick_check")


def test_corrupt_page_fails_the_healthcheck(corrupt_db: Path) -> None:
    result = run_engine(["health", "--db", str(corrupt_db), "--url", ""], timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "quick_check" in result.stdout + result.stderr


def test_corrupt_page_refused_by_the_dashboard_reader(corrupt_db: Path) -> None:
    reader = ReadOnlyDatabase(corrupt_db)
    with pytest.raises(DatabaseUnavailable, match="quick_check"), reader.connect() as conn:
        conn.execute("SELECT count(*) FROM ticks").fetchone()


async def test_corrupt_page_dashboard_over_http_refuses_data_and_reports_unhealthy(
    corrupt_db: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        base = await serve_dashboard(nursery, corrupt_db)
        portfolio = await http_get(f"{base}/api/portfolio")
        healthz = await http_get(f"{base}/healthz")
        metrics = await http_get(f"{base}/metrics")
        nursery.cancel_scope.cancel()
    assert portfolio.status == 503
    assert "quick_check" in portfolio.json()["error"]
    assert healthz.status == 503
    assert metrics.status == 200  # scrapes keep working and say so
    assert "hybrid_engine_healthy 0" in metrics.text


# -- a read-only database -------------------------------------------------------------


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i`` (refuses writes even to root); skipped where it is not available."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr not available")
    result = subprocess.run(
        ["chattr", "+i", str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot make a file immutable here: {result.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_read_only_database_refused_at_start_with_12_naming_the_key(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    SqliteStore.open(db).close()
    before = sha256(db)
    with immutable(db):
        result = run_engine(["replay", str(REAL_CAPTURE), "--db", str(db)], timeout=60)
    one_line_refusal(result, "--db", "not writable")
    assert sha256(db) == before


# -- a writer stuck in SQLite past the drain deadline (a frozen disk) ----------------


def test_writer_stuck_in_sqlite_past_drain_deadline_process_exits_13_in_bound(
    tmp_path: Path,
) -> None:
    # busy_timeout 120 s: the writer thread sits inside one SQLite call for two minutes
    # (as on a frozen disk); it cannot be cancelled. The process must still end by
    # drain_timeout_s + HARD_STOP_GRACE_S (1 + 2 s), not when SQLite gives up.
    drain_s, grace_s, slack_s = 1.0, 2.0, 15.0
    db = tmp_path / "engine.db"
    SqliteStore.open(db).close()
    engine = EngineProcess(
        ["replay", str(REAL_CAPTURE), "--db", str(db), "--speed", "4"],
        env={
            "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.2",
            "ENGINE_ENGINE_BUSY_TIMEOUT_MS": "120000",
            "ENGINE_ENGINE_DRAIN_TIMEOUT_S": str(drain_s),
        },
    )
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        engine.wait_for(persisted)
        locker.execute("BEGIN EXCLUSIVE")  # the drain's last flush waits on it, in SQLite
        signalled = time.monotonic()
        engine.send_signal(signal.SIGINT)
        code = engine.finish(120)
        elapsed = time.monotonic() - signalled
    finally:
        locker.close()
        engine.kill()
    assert code == 13
    assert elapsed < drain_s + grace_s + slack_s, elapsed  # SQLite alone would take 120 s
    assert engine.events("shutdown_forced")
    assert [e["exit_code"] for e in engine.events("shutdown_deadline_exit")] == [13]


async def test_live_feed_lock_past_enqueue_timeout_drops_at_the_edge_loses_nothing_accepted(
    tmp_path: Path,
) -> None:
    # A real WebSocket feed (fake exchange on 127.0.0.1) at 2,000 trades/s while the
    # writer is locked out: the feed never waits -- ticks beyond the full queues are
    # refused at the edge and counted -- and every tick that was accepted is written.
    async with open_fake_exchange("binance", [Session(rate_per_s=2000)]) as fake:
        db = tmp_path / "engine.db"
        SqliteStore.open(db).close()
        config = tmp_path / "engine.toml"
        config.write_text(
            f'[engine]\ndb_path = "{db}"\nheartbeat_interval_s = 0.2\n'
            "busy_timeout_ms = 1000\nenqueue_timeout_s = 1.0\ndrain_timeout_s = 60.0\n"
            f'[ingest]\nsource = "websocket"\nurl = "{fake.url}"\nsymbols = ["BTCUSDT"]\n'
        )
        engine = EngineProcess(["run", "--config", str(config)])
        counters = await trio.to_thread.run_sync(lock_past_overload_then_release, engine, db)
    assert counters["bp_drops_tick"] > 0  # refused at the edge, never accepted


def test_read_only_mount_refused_at_start_with_12(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "fs", "4m") as fs:
        db = fs / "engine.db"
        SqliteStore.open(db).close()
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(fs)], capture_output=True, text=True, check=False
        )
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        result = run_engine(["replay", str(REAL_CAPTURE), "--db", str(db)], timeout=60)
    one_line_refusal(result, "--db", "not writable")
