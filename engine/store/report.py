"""The operator's audit of a database: positions, PnL, counts -- and conservation.

``build_report`` reads a database (read-only) and rebuilds everything from the
persisted records alone: the ledger from ``fills`` (the same ``Ledger`` the
engine uses), marks from the latest persisted tick of each symbol, order
outcomes from each order's last ``order_events`` row, vetoes by reason, and the
trading state from the last ``risk_states`` row.

Checks (any failure makes ``ok`` false and the CLI exit non-zero):

* **conservation** (I4): ``cash_delta + position_delta * price + fee == 0``
  exactly, for every row of ``fills`` (a value that is not a decimal fails);
* **fills vs orders**: the quantity filled according to each order's last
  transition equals the sum of its fills, and no order is overfilled -- a
  cancelled partial must not have been booked twice (S11).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine import logs
from engine.core.events import Fill, TradingState
from engine.core.ledger import Ledger
from engine.core.sizing import conserves
from engine.exits import ExitCode
from engine.store.connection import open_readonly
from engine.store.digest import digest
from engine.store.restore import load_marks
from engine.store.rows import (
    count_by,
    has_table,
    record_of,
    row_count,
    select_rows,
    table_counts,
)
from engine.store.runs import (
    SUMMARY_TABLES,
    RunRecord,
    count_runs,
    iso_ns,
    load_runs,
    previous_modes,
)

MAX_LISTED_PROBLEMS = 20
"""Problems listed by name in the report; the count covers all of them."""

MAX_REPORTED_RUNS = 20
"""Runs listed in a report (the latest ones); ``runs_total`` counts all of them."""


@dataclass(slots=True)
class Report:
    positions: dict[str, Decimal] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    cash: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    realised_pnl: Decimal = Decimal(0)
    unrealised_pnl: Decimal = Decimal(0)
    equity: Decimal = Decimal(0)
    signals: int = 0
    orders_by_state: dict[str, int] = field(default_factory=dict)
    fills: int = 0
    vetoes_by_reason: dict[str, int] = field(default_factory=dict)
    trading_state: str = str(TradingState.ACTIVE)
    conservation_violations: int = 0
    fill_mismatches: int = 0
    problems: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    """Every mode the database's runs recorded (one, unless it predates the refusal rules)."""
    runs_total: int = 0
    runs: list[RunRecord] = field(default_factory=list)
    """The latest ``MAX_REPORTED_RUNS`` runs, oldest first."""

    @property
    def ok(self) -> bool:
        return self.conservation_violations == 0 and self.fill_mismatches == 0

    def to_builtins(self) -> dict[str, Any]:
        """JSON-able form: decimals as exact strings."""
        return {
            "ok": self.ok,
            "trading_state": self.trading_state,
            "positions": {k: str(v) for k, v in self.positions.items()},
            "marks": {k: str(v) for k, v in self.marks.items()},
            "cash": str(self.cash),
            "fees": str(self.fees),
            "realised_pnl": str(self.realised_pnl),
            "unrealised_pnl": str(self.unrealised_pnl),
            "equity": str(self.equity),
            "signals": self.signals,
            "orders_by_state": self.orders_by_state,
            "fills": self.fills,
            "vetoes_by_reason": self.vetoes_by_reason,
            "conservation_violations": self.conservation_violations,
            "fill_mismatches": self.fill_mismatches,
            "problems": self.problems,
            "modes": self.modes,
            "runs_total": self.runs_total,
            "runs": [r.to_builtins() for r in self.runs],
        }

    def to_text(self) -> str:
        lines = [
            f"mode              {', '.join(self.modes) or 'none recorded'}",
            f"trading state     {self.trading_state}",
            "positions         "
            + (
                ", ".join(f"{s} {q} @ {self.marks.get(s, '?')}" for s, q in self.positions.items())
                or "none"
            ),
            f"cash              {self.cash}",
            f"fees              {self.fees}",
            f"realised PnL      {self.realised_pnl}",
            f"unrealised PnL    {self.unrealised_pnl}",
            f"equity            {self.equity}",
            f"signals           {self.signals}",
            "orders            "
            + (", ".join(f"{k} {v}" for k, v in self.orders_by_state.items()) or "none"),
            f"fills             {self.fills}",
            "vetoes            "
            + (", ".join(f"{k} {v}" for k, v in self.vetoes_by_reason.items()) or "none"),
            "conservation      "
            + (
                "OK"
                if self.conservation_violations == 0
                else f"FAILED for {self.conservation_violations} fill(s)"
            ),
            "fills vs orders   "
            + (
                "OK" if self.fill_mismatches == 0 else f"FAILED for {self.fill_mismatches} order(s)"
            ),
        ]
        lines.extend(f"  problem: {p}" for p in self.problems)
        listed = f" (latest {len(self.runs)} listed)" if len(self.runs) < self.runs_total else ""
        lines.append(f"runs              {self.runs_total}{listed}")
        lines.extend(f"  {run_line(r)}" for r in self.runs)
        return "\n".join(lines)


def _wall(ns: int | None) -> str:
    return "?" if ns is None else iso_ns(ns).replace(".000Z", "Z")


def counts_text(counts: dict[str, int]) -> str:
    """``"9757 ticks, 16 signals, 15 orders, 15 fills, 1 vetoes"``."""
    return ", ".join(f"{counts.get(t, 0)} {t}" for t in SUMMARY_TABLES)


def run_line(run: RunRecord) -> str:
    """One run for a person: id, command, mode, wall-clock span, exit, what it wrote."""
    if run.ended_wall_ns is None:
        end = "not ended (running, or killed)"
    else:
        end = f"{_wall(run.ended_wall_ns)} exit {run.exit_code}"
    counted = "" if run.counts_recorded else " (counted from run_id)"
    return (
        f"{run.run_id}  {run.command or '?'}  {run.mode or '?'}  "
        f"{_wall(run.started_wall_ns)} -> {end}: {counts_text(run.counts)}{counted}"
    )


def _note(report: Report, problem: str) -> None:
    if len(report.problems) < MAX_LISTED_PROBLEMS:
        report.problems.append(problem)


def _fill_from_row(row: tuple[Any, ...]) -> Fill | None:
    """A stored fill, or ``None`` when a value does not parse (reported, not booked)."""
    try:
        return record_of(Fill, row)
    except (InvalidOperation, ValueError, TypeError):
        return None


def _book_fills(conn: sqlite3.Connection, report: Report) -> tuple[Ledger, dict[str, Decimal]]:
    """Check every fill and book the ones that conserve; return the ledger and qty per order."""
    ledger = Ledger()
    filled: dict[str, Decimal] = {}
    for row in select_rows(conn, Fill, "ORDER BY rowid"):
        report.fills += 1
        fill = _fill_from_row(row)
        if fill is None or not conserves(
            fill.cash_delta, fill.position_delta, fill.price, fill.fee
        ):
            report.conservation_violations += 1
            _note(report, f"fill {row[0]}: cash_delta + position_delta * price + fee != 0")
            continue
        ledger.apply(fill)
        filled[fill.order_id] = filled.get(fill.order_id, Decimal(0)) + fill.qty
    return ledger, filled


def _check_orders(conn: sqlite3.Connection, report: Report, filled: dict[str, Decimal]) -> None:
    rows = conn.execute(
        "SELECT o.order_id, o.qty, e.state, e.filled_qty FROM orders o"
        " LEFT JOIN order_events e ON e.order_id = o.order_id"
        " AND e.seq = (SELECT MAX(seq) FROM order_events WHERE order_id = o.order_id)"
        " ORDER BY o.order_id"
    )
    states: Counter[str] = Counter()
    for order_id, qty, state, filled_qty in rows:
        states[state or "NO_EVENTS"] += 1
        booked = filled.get(order_id, Decimal(0))
        try:
            expected = Decimal(filled_qty) if filled_qty is not None else Decimal(0)
            too_much = booked > Decimal(qty)
        except InvalidOperation:
            expected, too_much = Decimal(-1), True
        if booked != expected or too_much:
            report.fill_mismatches += 1
            _note(
                report,
                f"order {order_id}: fills total {booked}, last transition says "
                f"{filled_qty} of {qty}",
            )
    report.orders_by_state = dict(sorted(states.items()))


def build_report(conn: sqlite3.Connection) -> Report:
    """Everything the operator needs from the database at ``conn`` (read-only)."""
    report = Report()
    report.modes = previous_modes(conn)
    report.runs_total = count_runs(conn)
    report.runs = load_runs(conn, MAX_REPORTED_RUNS)
    if not has_table(conn, "fills"):
        return report
    ledger, filled = _book_fills(conn, report)
    _check_orders(conn, report, filled)
    marks = load_marks(conn)
    report.positions = {s: q for s, q in ledger.positions().items() if q != 0}
    report.marks = {s: marks[s] for s in report.positions if s in marks}
    report.cash = ledger.cash
    report.fees = ledger.fees
    report.realised_pnl = ledger.realised
    report.unrealised_pnl = ledger.unrealised(marks)
    report.equity = ledger.equity(marks)
    report.signals = row_count(conn, "signals")
    report.vetoes_by_reason = count_by(conn, "vetoes", "reason")
    if has_table(conn, "risk_states"):
        last = conn.execute(
            "SELECT trading_state FROM risk_states ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        if last is not None:
            report.trading_state = last[0]
    return report


# -------------------------------------------------------------- the end-of-run summary


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


def _ticks_processed(conn: sqlite3.Connection, run_id: str) -> int | None:
    if not has_table(conn, "heartbeats"):
        return None
    row = conn.execute(
        "SELECT counters FROM heartbeats WHERE run_id = ? ORDER BY hb_id DESC LIMIT 1", (run_id,)
    ).fetchone()
    try:
        counters = json.loads(row[0]) if row is not None else None
    except (TypeError, ValueError):
        return None
    value = counters.get("ingest_processed") if isinstance(counters, dict) else None
    return value if isinstance(value, int) else None


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
        ticks_processed=_ticks_processed(conn, run_id),
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
