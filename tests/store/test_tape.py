"""Scale: ``[engine] store_ticks = false`` -- a replay that stores the tape, not the ticks.

Real subprocesses, real signals, real SQLite files, the real bundled capture in PAPER
(orders rest across an interruption and fill in parts, as in ``tests/e2e/test_restart.py``).
"""

from __future__ import annotations

import signal
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from engine.core.events import Tick
from engine.runtime.console import progress_line, replay_done
from engine.store.restore import load_marks, load_tape_islands, load_tape_watermarks
from engine.store.tape import tape_rows
from tests.fakes.engine_process import REAL_CAPTURE, EngineProcess, parse_logs, run_engine

ENV = {"ENGINE_ENGINE_MODE": "paper", "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.2"}
NO_TICKS = {**ENV, "ENGINE_ENGINE_STORE_TICKS": "false"}


def replay(db: Path, env: dict[str, str], *extra: str) -> None:
    done = run_engine(["replay", str(REAL_CAPTURE), "--db", str(db), *extra], env=env)
    assert done.returncode == 0, done.stderr[-2000:]


def digest(db: Path) -> str:
    done = run_engine(["digest", "--db", str(db)])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


@pytest.fixture(scope="module")
def with_ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("ticks") / "ref.db"
    replay(db, ENV)
    return db


def test_store_ticks_false_same_digest_no_ticks_and_restore_facts_equal(
    tmp_path: Path, with_ticks: Path
) -> None:
    db = tmp_path / "tape.db"
    replay(db, NO_TICKS)
    assert count(db, "ticks") == 0 and count(with_ticks, "ticks") == 9757
    assert 0 < count(db, "tape") < 100  # ~10 batches of in-order trades, not 9757 rows
    assert count(db, "fills") == count(with_ticks, "fills") > 0
    assert digest(db) == digest(with_ticks)
    with sqlite3.connect(db) as tape, sqlite3.connect(with_ticks) as ticks:
        assert load_tape_islands(tape) == load_tape_islands(ticks)
        assert load_marks(tape) == load_marks(ticks)
        assert load_tape_watermarks(tape) == load_tape_watermarks(ticks)


@pytest.mark.slow
def test_store_ticks_false_sigkill_then_rerun_gives_the_uninterrupted_digest(
    tmp_path: Path, with_ticks: Path
) -> None:
    db = tmp_path / "e.db"
    engine = EngineProcess(
        ["replay", str(REAL_CAPTURE), "--db", str(db), "--speed", "25"], NO_TICKS)
    try:
        engine.wait_for(
            lambda line: line.get("event") == "heartbeat" and line.get("trade_count", 0) >= 3
        )
        engine.send_signal(signal.SIGKILL)
        assert engine.finish() == -signal.SIGKILL
    finally:
        engine.kill()
    assert 0 < count(db, "orders") < count(with_ticks, "orders")  # it stopped half-way
    replay(db, NO_TICKS)
    assert count(db, "ticks") == 0
    assert count(db, "orders") == count(with_ticks, "orders")
    assert digest(db) == digest(with_ticks)


def test_store_ticks_false_refused_for_a_live_or_synthetic_source(tmp_path: Path) -> None:
    done = run_engine(["run", "--db", str(tmp_path / "x.db")],
                      env={"ENGINE_ENGINE_STORE_TICKS": "false",
                           "ENGINE_INGEST_SOURCE": "synthetic"})
    assert done.returncode == 12
    assert "engine.store_ticks" in done.stderr


def tick(symbol: str, trade_id: int, price: str) -> Tick:
    return Tick(event_id=f"binance:{symbol}:{trade_id}", venue="binance", symbol=symbol,
                trade_id=trade_id, ts_event=trade_id * 1000, ts_recv=trade_id * 1000,
                price=Decimal(price), qty=Decimal(1))


def test_tape_rows_are_runs_of_consecutive_ids_in_arrival_order() -> None:
    ticks = [tick("A", 1, "1"), tick("B", 7, "5"), tick("A", 2, "2"), tick("A", 4, "4"),
             tick("A", 3, "3"), tick("B", 8, "6")]
    assert tape_rows(ticks) == [
        ("binance", "A", 1, 2, 2000, "2"),
        ("binance", "A", 4, 4, 4000, "4"),
        ("binance", "A", 3, 3, 3000, "3"),  # the last to arrive: its price is A's mark
        ("binance", "B", 7, 8, 8000, "6"),
    ]


def test_progress_bar_percent_and_eta_from_replay_bytes() -> None:
    first = {"tick_count": 100, "replay_bytes_read": 250, "replay_bytes_total": 1000}
    assert replay_done(None, first, 1.0) == "[#####...............]  25.0%"
    later = {"tick_count": 300, "replay_bytes_read": 500, "replay_bytes_total": 1000}
    # 250 bytes in 2 s: the remaining 500 take 4 s
    assert replay_done(first, later, 2.0) == "[##########..........]  50.0% ETA 4 s"
    assert replay_done(None, {"tick_count": 5}, 1.0) == ""  # not a replay: no bar
    line = progress_line(first, later, 2.0, "ACTIVE")
    assert line.startswith("[##########..........]  50.0% ETA 4 s | progress: 300 ticks")
    assert "100.0/s" in line


def test_progress_bar_real_replay_advances_and_reads_every_byte(tmp_path: Path) -> None:
    done = run_engine(
        ["replay", str(REAL_CAPTURE), "--db", str(tmp_path / "p.db"), "--speed", "60"],
        env={"ENGINE_ENGINE_PROGRESS": "always", "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.5"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    bars = [ln for ln in done.stderr.splitlines() if ln.startswith("[")]
    assert len(bars) >= 3, done.stderr[-2000:]
    percents = [float(ln.split("%")[0].split("]")[1]) for ln in bars]
    assert percents == sorted(percents) and percents[0] < 50 < percents[-1]
    assert any(" ETA " in ln and "/s" in ln for ln in bars[1:-1])
    final = next(ln for ln in parse_logs(done.stdout) if ln.get("event") == "clean_shutdown")
    assert final["replay_bytes_read"] == final["replay_bytes_total"] == REAL_CAPTURE.stat().st_size
