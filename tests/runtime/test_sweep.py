"""``hybrid-engine sweep``: real engine processes per combination, ranked, and stopped cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.load import load_config
from engine.config.schema import StrategySection
from engine.exits import ConfigError
from engine.runtime import sweep
from tests.fakes.engine_process import REAL_CAPTURE, REPLAYS, REPO, engine_env, run_engine

PAPER = str(REPLAYS / "paper.toml")
GRID = ["--grid", "strategy.fast=3,5", "--grid", "strategy.slow=4,30"]
"""Four combinations; fast=5 slow=4 is refused by the configuration (slow must exceed fast)."""


def _sweep(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_engine(
        ["sweep", str(REAL_CAPTURE), "--config", PAPER, *GRID, "--jobs", "2",
         "--out", str(out), *extra]
    )


def _figures(db: Path) -> dict[str, object]:
    done = run_engine(["report", "--db", str(db), "--json"])
    assert done.returncode == 0, done.stderr[-2000:]
    figures: dict[str, object] = json.loads(done.stdout)["run"]
    figures.pop("run_id")
    figures.pop("trades")  # not in sweep.json; the digest below compares every fill
    return figures


def _digest(db: Path) -> str:
    done = run_engine(["digest", "--db", str(db)])
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_sweep_ranks_every_combination_and_its_best_row_replays_alone(tmp_path: Path) -> None:
    first = _sweep(tmp_path / "a")
    assert first.returncode == 1, first.stderr[-2000:]  # one combination failed: a row, no abort
    lines = first.stdout.splitlines()
    assert lines[0] == "ranked by net_pnl"
    rows = json.loads((tmp_path / "a" / "sweep.json").read_text())["rows"]
    assert len(rows) == 4
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    failed = [r for r in rows if r["error"]]
    assert [r["params"] for r in failed] == [{"strategy.fast": "5", "strategy.slow": "4"}]
    assert "slow (4) must be greater than fast (5)" in failed[0]["error"]
    assert rows[-1]["error"]  # failures rank last
    ok = [r for r in rows if not r["error"]]
    pnls = [float(r["net_pnl"]) for r in ok]  # floats only to check the order here
    assert pnls == sorted(pnls, reverse=True)
    assert len(lines) == 1 + 1 + 4 and "FAILED" in lines[-1]
    csv_rows = (tmp_path / "a" / "sweep.csv").read_text().splitlines()
    assert len(csv_rows) == 5 and csv_rows[0].startswith("rank,strategy.fast,strategy.slow,")

    # the same grid gives the same table, byte for byte (and the same files)
    second = _sweep(tmp_path / "b")
    assert second.stdout == first.stdout
    for table in ("sweep.json", "sweep.csv"):
        assert (tmp_path / "b" / table).read_bytes() == (tmp_path / "a" / table).read_bytes()

    # the best row, replayed alone with its parameters, reproduces the same figures
    best = rows[0]
    alone = tmp_path / "alone.db"
    env = {sweep.env_name(k): v for k, v in best["params"].items()}
    done = run_engine(["replay", str(REAL_CAPTURE), "--config", PAPER, "--db", str(alone)], env)
    assert done.returncode == 0, done.stderr[-2000:]
    best_db = tmp_path / "a" / best["db"]
    assert _figures(alone) == _figures(best_db)
    assert best["figures"] == _figures(alone)
    assert _digest(alone) == _digest(best_db)
    assert _figures(alone)["strategy_params"] == {"bar_seconds": 1, "fast": 3, "slow": 30}


def _wait_for_text(path: Path, needle: str, timeout: float) -> None:
    """Bounded wait until ``path`` holds ``needle`` (the child logs its progress there)."""
    deadline = time.monotonic() + timeout
    while needle not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{path.name}: no {needle!r} within {timeout}s"
        threading.Event().wait(0.05)


def _started(lines: list[str]) -> list[tuple[int, int]]:
    """``(combination, pid)`` of every "started combination" line of the sweep."""
    found = (re.search(r"started combination (\d+) .* pid (\d+)", line) for line in lines)
    return [(int(m.group(1)), int(m.group(2))) for m in found if m]


def test_sigint_stops_every_child_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "sweep", str(REAL_CAPTURE),
         "--grid", "strategy.fast=3,5,8", "--jobs", "2", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env=engine_env({"ENGINE_INGEST_SPEED": "1"}),  # the recorded pace: minutes per child
    )
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        while sum("started combination" in line for line in seen) < 2:  # two jobs at once
            line = proc.stderr.readline()
            assert line, f"sweep ended early ({proc.wait(5)})"
            seen.append(line)
        for index, _ in _started(seen):  # each child has its signal handlers in place
            _wait_for_text(out / f"c{index:04d}.log", '"pipeline_started"', 60)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=90)
        seen += proc.stderr.read().splitlines(keepends=True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(seen)
    assert code == 13, text[-2000:]
    stopping = [n for n, line in enumerate(seen) if "stopping every child" in line]
    assert stopping, text[-2000:]
    started = _started(seen)
    assert len(started) >= 2
    # no child starts once the sweep is stopping
    assert max(n for n, line in enumerate(seen) if "started combination" in line) < stopping[0]
    for index, pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the child is gone (and was reaped)
        conn = sqlite3.connect(out / f"c{index:04d}.db")
        ended, clean = conn.execute("SELECT ended_wall_ns, clean_shutdown FROM runs").fetchone()
        conn.close()
        assert ended is not None and clean == 1  # the engine drained and recorded its end
    started_ids = {index for index, _ in started}
    for index in {1, 2, 3} - started_ids:
        assert not (out / f"c{index:04d}.db").exists()  # never started
    assert not (out / "sweep.json").exists()


def test_grid_arguments_are_admitted_once_or_refused_naming_the_flag(tmp_path: Path) -> None:
    assert sweep.parse_grid(["strategy.fast=3, 5"]) == [("strategy.fast", ["3", "5"])]
    for bad, says in [
        ([], "--grid: give at least one"),
        (["strategy.fast"], "is not section.key"),
        (["strategy=3"], "is not section.key"),
        (["strategy.fast=3,,5"], "is not section.key"),
        (["strategy.nope=1"], "--grid strategy.nope: no such configuration key"),
        (["strategy.fast=3,3"], "repeated"),
        (["strategy.fast=3", "strategy.fast=4"], "given twice"),
        ([f"strategy.fast={','.join(map(str, range(1, 70)))}"], "at most 64 values"),
        ([f"risk.max_open_orders={','.join(map(str, range(1, 40)))}",
          f"strategy.fast={','.join(map(str, range(1, 40)))}"], "1521 combinations"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            sweep.parse_grid(bad)
    # a value is admitted by the configuration loader itself, per combination
    jobs = sweep.plan(["x"], [("strategy.fast", ["2", "0"])], tmp_path, environ={})
    assert jobs[0].refused is None
    assert load_config(None, environ=jobs[0].env).strategy.params == StrategySection(fast=2)
    assert jobs[1].refused is not None and "strategy.fast" in jobs[1].refused
    refused = run_engine(["sweep", str(REAL_CAPTURE), "--grid", "strategy.typo=1",
                          "--out", str(tmp_path / "o")])
    assert refused.returncode == 12
    assert refused.stderr.strip().endswith("--grid strategy.typo: no such configuration key")
    bad = tmp_path / "bad.toml"
    bad.write_text("[strategy]\nfast = 0\n")
    refused = run_engine(["sweep", str(REAL_CAPTURE), "--config", str(bad), "--grid",
                          "strategy.slow=30", "--out", str(tmp_path / "o2")])
    assert refused.returncode == 12 and "strategy.fast" in refused.stderr
    assert not (tmp_path / "o2").exists()  # refused before anything is written
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    refused = run_engine(["sweep", str(REAL_CAPTURE), "--grid", "strategy.fast=3",
                          "--out", str(tmp_path / "full")])
    assert refused.returncode == 12 and "--out:" in refused.stderr


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=120), max_size=10))
def test_any_grid_argument_is_admitted_or_refused_with_config_error(specs: list[str]) -> None:
    try:
        grid = sweep.parse_grid(specs)
    except ConfigError as exc:
        assert str(exc).startswith("--grid")
        return
    assert 1 <= len(grid) <= sweep.MAX_KEYS
    for key, values in grid:
        assert sweep.env_name(key).startswith("ENGINE_") and 1 <= len(values) <= sweep.MAX_VALUES
