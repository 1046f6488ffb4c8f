"""Restarts: a replay stopped half-way (SIGINT, or SIGKILL losing the unflushed tail),
then run again into the same database, ends exactly where one uninterrupted run ends.

Real subprocesses, real signals, real SQLite files; PAPER mode so that orders
rest across the interruption and fill in parts. "Exactly" is checked three ways:
the decision digest (signals, vetoes, orders, order_events, fills) is equal,
the report (positions, cash, fees, PnL, counts) is equal, and no signal has two
orders (the primary keys make a duplicate id impossible; the counts prove no
second order under another id either).
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.engine_process import REAL_CAPTURE, EngineProcess, run_engine

ENV = {
    "ENGINE_ENGINE_MODE": "paper",
    "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.2",
}
SPEED = "25"
"""Replay pace for the run that gets interrupted: the capture's ~6 min in ~15 s."""


def replay(db: Path, *extra: str) -> None:
    done = run_engine(["replay", str(REAL_CAPTURE), "--db", str(db), *extra], env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]


def outcome(db: Path) -> tuple[str, dict[str, Any], int, int]:
    digest = run_engine(["digest", "--db", str(db)])
    assert digest.returncode == 0, digest.stderr
    report = run_engine(["report", "--db", str(db), "--json"])
    assert report.returncode == 0, report.stdout
    account = json.loads(report.stdout.splitlines()[-1])
    # how many runs it took differs, and so does the latest run's own figures; the account not
    for history in ("runs", "runs_total", "run"):
        account.pop(history)
    conn = sqlite3.connect(db)
    try:
        orders = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        per_signal = conn.execute(
            "SELECT COUNT(*) FROM (SELECT signal_id FROM orders GROUP BY signal_id"
            " HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    finally:
        conn.close()
    return digest.stdout.strip(), account, orders, per_signal


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], int, int]:
    db = tmp_path_factory.mktemp("reference") / "ref.db"
    replay(db)
    return outcome(db)


def interrupt(db: Path, signum: signal.Signals, after_fills: int) -> int:
    """Replay at pace, stop it with ``signum`` once ``after_fills`` fills happened."""
    engine = EngineProcess(["replay", str(REAL_CAPTURE), "--db", str(db), "--speed", SPEED], ENV)
    try:
        engine.wait_for(
            lambda line: line.get("event") == "heartbeat"
            and line.get("trade_count", 0) >= after_fills
        )
        engine.send_signal(signum)
        return engine.finish()
    finally:
        engine.kill()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "expected_exit"), [(signal.SIGINT, 0), (signal.SIGKILL, -signal.SIGKILL)]
)
def test_replay_interrupted_then_rerun_same_state_as_uninterrupted(
    tmp_path: Path,
    uninterrupted: tuple[str, dict[str, Any], int, int],
    signum: signal.Signals,
    expected_exit: int,
) -> None:
    db = tmp_path / "e.db"
    assert interrupt(db, signum, after_fills=3) == expected_exit
    partial = outcome(db)
    assert partial[2] < uninterrupted[2]  # it really stopped half-way
    replay(db)
    digest, report, orders, duplicated = outcome(db)
    ref_digest, ref_report, ref_orders, _ = uninterrupted
    assert duplicated == 0
    assert orders == ref_orders
    assert report == ref_report
    assert digest == ref_digest


@pytest.mark.slow
def test_replay_run_twice_into_same_database_changes_nothing(
    tmp_path: Path, uninterrupted: tuple[str, dict[str, Any], int, int]
) -> None:
    db = tmp_path / "e.db"
    replay(db)
    replay(db)
    assert outcome(db) == uninterrupted
