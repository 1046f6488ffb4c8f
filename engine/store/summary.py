"""The end-of-run summary ``replay`` and ``run`` print on exit: this run's counts apart
from the database's totals, its mode(s) and digest (README "The two commands").
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from engine import logs
from engine.exits import ExitCode
from engine.store.connection import open_readonly
from engine.store.digest import digest
from engine.store.report import counts_text, ticks_processed
from engine.store.rows import table_counts
from engine.store.runs import RunRecord, count_runs, load_runs, previous_modes


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What ``replay`` and ``run`` say on exit: this run's counts apart from the totals."""

    run_id: str
    run: RunRecord | None
    totals: dict[str, int]
    modes: list[str]
    runs_total: int
    digest: str
    ticks_processed: int | None = None
    """Ticks the run handed downstream (its final heartbeat's ``ingest_processed``):
    a restart replays ticks the database already holds, which it does not write again."""


def run_summary(conn: sqlite3.Connection, run_id: str) -> RunSummary:
    """The summary of run ``run_id`` in the database at ``conn`` (read-only)."""
    found = load_runs(conn, 1, run_id=run_id)
    return RunSummary(
        run_id=run_id,
        run=found[0] if found else None,
        totals=table_counts(conn),
        modes=previous_modes(conn),
        runs_total=count_runs(conn),
        digest=digest(conn),
        ticks_processed=ticks_processed(conn, run_id),
    )


def _outcome(code: int) -> str:
    if code == 0:
        return "complete"
    name = ExitCode(code).name if code in ExitCode._value2member_map_ else "?"
    return f"stopped with exit {code} ({name})"


def summary_text(summary: RunSummary, command: str, code: int, db_path: str) -> str:
    """Three lines: this run (mode, what it wrote), the database's totals, its digest."""
    run = summary.run
    mode = (run.mode if run else None) or "?"
    this_run = counts_text(run.counts) if run else "nothing (no run row recorded)"
    processed = summary.ticks_processed
    read = "" if processed is None else f"processed {processed} ticks and "
    plural = "run" if summary.runs_total == 1 else "runs"
    return (
        f"{command} {_outcome(code)}, mode {mode}, {summary.run_id}: this run {read}wrote "
        f"{this_run}\n"
        f"database {Path(db_path).resolve()} ({summary.runs_total} {plural}, mode "
        f"{', '.join(summary.modes) or '?'}): {counts_text(summary.totals)}\n"
        f"digest {summary.digest} of the database (inspect: hybrid-engine report --db {db_path})"
    )


def print_run_summary(db_path: str, run_id: str, command: str, code: int) -> None:
    """Log ``<command>_results`` and print ``summary_text`` on stderr (never raises on a
    database it cannot read: the exit code already says how the run ended)."""
    try:
        conn = open_readonly(db_path)
        try:
            summary = run_summary(conn, run_id)
        finally:
            conn.close()
    except (sqlite3.Error, OSError) as exc:
        logs.warning(f"{command}_results_unavailable", db_path=db_path, error=repr(exc))
        return
    logs.info(
        f"{command}_results",
        db_path=str(Path(db_path).resolve()),
        run_id=run_id,
        mode=summary.run.mode if summary.run else None,
        exit_code=code,
        digest=summary.digest,
        this_run=summary.run.counts if summary.run else None,
        **summary.totals,
    )
    print(summary_text(summary, command, code, db_path), file=sys.stderr)
