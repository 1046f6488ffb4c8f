"""One database, one account, end to end: real ``hybrid-engine`` processes on real files.

The bundled capture is split at a line into an *early* and a *late* capture (the
late one's first trade is after the early one's last): replaying early then late
continues the account, late then early is refused; a different mode or risk config
is refused; the same capture again continues with the same digest; the summary
states this run's counts apart from the database's totals.
"""

from __future__ import annotations

import gzip
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.engine_process import (
    REAL_CAPTURE,
    REAL_TRADES,
    EngineProcess,
    parse_logs,
    run_engine,
)

pytestmark = pytest.mark.slow

COUNTED = ("ticks", "signals", "orders", "fills", "vetoes")


@pytest.fixture(scope="module")
def halves(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real capture cut in two at its middle line: (early.gz, late.gz)."""
    lines = gzip.decompress(REAL_CAPTURE.read_bytes()).splitlines(keepends=True)
    cut = len(lines) // 2
    out = tmp_path_factory.mktemp("captures")
    early, late = out / "early.gz", out / "late.gz"
    early.write_bytes(gzip.compress(b"".join(lines[:cut])))
    late.write_bytes(gzip.compress(b"".join(lines[cut:])))
    return early, late


def replay(db: Path, *captures: Path, env: dict[str, str] | None = None) -> Any:
    return run_engine(["replay", *map(str, captures), "--db", str(db)], env=env)


def results(done: Any) -> dict[str, Any]:
    [line] = [x for x in parse_logs(done.stdout) if x.get("event") == "replay_results"]
    return line


def db_state(db: Path) -> tuple[str, int, list[tuple[Any, ...]]]:
    digest = run_engine(["digest", "--db", str(db)])
    assert digest.returncode == 0, digest.stderr
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        ticks = conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0]
        runs = conn.execute("SELECT run_id, mode, exit_code FROM runs ORDER BY rowid").fetchall()
    return digest.stdout.strip(), ticks, runs


def assert_refused(done: Any, *words: str) -> None:
    assert done.returncode == 12, done.stderr[-2000:]
    [line] = [x for x in done.stderr.splitlines() if x.strip()]  # one line, no traceback
    assert line.startswith("hybrid-engine: configuration error: ")
    assert "use a new --db" in line
    for word in words:
        assert word in line


def test_mode_switch_refused_with_12_and_database_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    assert replay(db, REAL_CAPTURE).returncode == 0
    before = db_state(db)
    done = replay(db, REAL_CAPTURE, env={"ENGINE_ENGINE_MODE": "paper"})
    assert_refused(done, "holds shadow runs", "this run is paper")
    assert db_state(db) == before


def test_other_risk_config_refused_with_12(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    assert replay(db, REAL_CAPTURE).returncode == 0
    before = db_state(db)
    done = replay(db, REAL_CAPTURE, env={"ENGINE_RISK_MAX_OPEN_ORDERS": "3"})
    assert_refused(done, "risk config")
    assert db_state(db) == before


def test_other_strategy_refused_with_12_naming_both_and_database_unchanged(
    tmp_path: Path,
) -> None:
    db = tmp_path / "e.db"
    assert replay(db, REAL_CAPTURE).returncode == 0
    before = db_state(db)
    donchian = replay(db, REAL_CAPTURE, env={"ENGINE_STRATEGY_KIND": "donchian_breakout"})
    assert_refused(donchian, "written by strategy sma_cross {", "strategy is donchian_breakout {")
    fast = replay(db, REAL_CAPTURE, env={"ENGINE_STRATEGY_FAST": "3"})
    assert_refused(fast, '"fast":5', '"fast":3')
    assert db_state(db) == before
    # the default parameters written out explicitly are the same strategy: it continues
    same = replay(db, REAL_CAPTURE, env={"ENGINE_STRATEGY_FAST": "5", "ENGINE_STRATEGY_SLOW": "20"})
    assert same.returncode == 0, same.stderr[-2000:]


def test_older_capture_refused_with_12(tmp_path: Path, halves: tuple[Path, Path]) -> None:
    early, late = halves
    db = tmp_path / "e.db"
    assert replay(db, late).returncode == 0
    before = db_state(db)
    assert_refused(replay(db, early), "capture early.gz starts at", "before the last trade")
    assert db_state(db) == before


def test_same_capture_again_continues_with_the_same_digest(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    first = replay(db, REAL_CAPTURE)
    assert first.returncode == 0
    digest, ticks, _ = db_state(db)
    again = replay(db, REAL_CAPTURE)
    assert again.returncode == 0, again.stderr[-2000:]
    assert results(again)["this_run"] == dict.fromkeys(COUNTED, 0)  # nothing new to write
    assert "this run processed 9757 ticks and wrote 0 ticks" in again.stderr
    after_digest, after_ticks, runs = db_state(db)
    assert (after_digest, after_ticks) == (digest, ticks) == (digest, REAL_TRADES)
    assert [(mode, code) for _, mode, code in runs] == [("shadow", 0), ("shadow", 0)]


def test_next_capture_continues_and_summary_separates_run_from_totals(
    tmp_path: Path, halves: tuple[Path, Path]
) -> None:
    early, late = halves
    db = tmp_path / "e.db"
    one = replay(db, early)
    assert one.returncode == 0, one.stderr[-2000:]
    two = replay(db, late)
    assert two.returncode == 0, two.stderr[-2000:]
    first, second = results(one), results(two)
    assert first["mode"] == second["mode"] == "shadow"
    # this run's counts are the rows it wrote; the totals are the database's
    for table in COUNTED:
        assert first[table] == first["this_run"][table], table
        assert second[table] == first["this_run"][table] + second["this_run"][table], table
    assert 0 < first["this_run"]["ticks"] < REAL_TRADES
    assert first["this_run"]["ticks"] + second["this_run"]["ticks"] == REAL_TRADES
    text = two.stderr.splitlines()
    assert text[-3].startswith(f"replay complete, mode shadow, {second['run_id']}: this run")
    assert f"wrote {second['this_run']['ticks']} ticks" in text[-3]
    assert text[-2].startswith("database ") and "(2 runs, mode shadow)" in text[-2]
    assert f": {second['ticks']} ticks" in text[-2]
    assert text[-1].startswith(f"digest {second['digest']} of the database")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        per_run = dict(conn.execute("SELECT run_id, COUNT(*) FROM ticks GROUP BY run_id"))
    assert per_run == {first["run_id"]: first["this_run"]["ticks"],
                       second["run_id"]: second["this_run"]["ticks"]}


def test_report_and_digest_name_the_mode_and_the_runs(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    assert replay(db, REAL_CAPTURE, env={"ENGINE_ENGINE_MODE": "paper"}).returncode == 0
    assert replay(db, REAL_CAPTURE, env={"ENGINE_ENGINE_MODE": "paper"}).returncode == 0
    report = run_engine(["report", "--db", str(db), "--json"])
    assert report.returncode == 0, report.stdout[-2000:]
    data = json.loads(report.stdout.splitlines()[-1])
    assert data["modes"] == ["paper"] and data["runs_total"] == 2
    first, second = data["runs"]
    assert (first["command"], first["mode"], first["exit_code"]) == ("replay", "paper", 0)
    assert first["counts"]["ticks"] == REAL_TRADES and second["counts"]["ticks"] == 0
    assert first["started_wall_ns"] <= first["ended_wall_ns"] <= second["started_wall_ns"]
    text = run_engine(["report", "--db", str(db)]).stdout
    assert "mode              paper" in text and "runs              2" in text
    assert f"{first['run_id']}  replay  paper" in text
    digest = run_engine(["digest", "--db", str(db)])
    assert digest.stderr.strip() == "mode paper (2 runs)"


def test_run_after_a_stop_with_the_same_config_continues_and_prints_its_summary(
    tmp_path: Path,
) -> None:
    db = tmp_path / "e.db"
    env = {"ENGINE_INGEST_SYNTHETIC_RATE_PER_S": "500", "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.2"}
    engine = EngineProcess(["run", "--db", str(db)], env)
    try:
        engine.wait_for(lambda x: x.get("event") == "heartbeat" and x.get("tick_count", 0) > 0)
        engine.send_signal(signal.SIGINT)
        assert engine.finish() == 0
        assert engine.proc.stderr is not None
        stopped = engine.proc.stderr.read()
    finally:
        engine.kill()
    [first] = engine.events("run_results")
    assert first["exit_code"] == 0 and first["this_run"]["ticks"] == first["ticks"] > 0
    assert f"run complete, mode shadow, {first['run_id']}" in stopped
    assert "(1 run, mode shadow)" in stopped
    bounded = {**env, "ENGINE_INGEST_SYNTHETIC_MAX_TICKS": "200"}
    again = run_engine(["run", "--db", str(db)], env=bounded)
    assert again.returncode == 0, again.stderr[-2000:]
    [second] = [x for x in parse_logs(again.stdout) if x.get("event") == "run_results"]
    assert second["this_run"]["ticks"] == 200
    assert second["ticks"] == first["ticks"] + 200
    assert f"run complete, mode shadow, {second['run_id']}" in again.stderr
    assert "(2 runs, mode shadow)" in again.stderr
