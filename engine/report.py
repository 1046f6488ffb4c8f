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

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.core.events import Fill, TradingState
from engine.core.ledger import Ledger
from engine.core.sizing import conserves
from engine.store.restore import FILL_COLUMNS, fill_from_row

MAX_LISTED_PROBLEMS = 20
"""Problems listed by name in the report; the count covers all of them."""


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
        }

    def to_text(self) -> str:
        lines = [
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
        return "\n".join(lines)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _note(report: Report, problem: str) -> None:
    if len(report.problems) < MAX_LISTED_PROBLEMS:
        report.problems.append(problem)


def _fill_from_row(row: tuple[Any, ...]) -> Fill | None:
    """A stored fill, or ``None`` when a value does not parse (reported, not booked)."""
    try:
        return fill_from_row(row)
    except (InvalidOperation, ValueError, TypeError):
        return None


def _book_fills(conn: sqlite3.Connection, report: Report) -> tuple[Ledger, dict[str, Decimal]]:
    """Check every fill and book the ones that conserve; return the ledger and qty per order."""
    ledger = Ledger()
    filled: dict[str, Decimal] = {}
    rows = conn.execute(f"SELECT {FILL_COLUMNS} FROM fills ORDER BY rowid")
    for row in rows:
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
    if not _has_table(conn, "fills"):
        return report
    ledger, filled = _book_fills(conn, report)
    _check_orders(conn, report, filled)
    marks = {
        symbol: Decimal(price)
        for symbol, price in conn.execute(
            "SELECT t.symbol, t.price FROM ticks t JOIN"
            " (SELECT symbol, MAX(rowid) AS last FROM ticks GROUP BY symbol) m"
            " ON t.rowid = m.last ORDER BY t.symbol"
        )
    }
    report.positions = {s: q for s, q in ledger.positions().items() if q != 0}
    report.marks = {s: marks[s] for s in report.positions if s in marks}
    report.cash = ledger.cash
    report.fees = ledger.fees
    report.realised_pnl = ledger.realised
    report.unrealised_pnl = ledger.unrealised(marks)
    report.equity = ledger.equity(marks)
    report.signals = conn.execute("SELECT COUNT(*) FROM signals").fetchone()[0]
    report.vetoes_by_reason = dict(
        conn.execute("SELECT reason, COUNT(*) FROM vetoes GROUP BY reason ORDER BY reason")
    )
    if _has_table(conn, "risk_states"):
        last = conn.execute(
            "SELECT trading_state FROM risk_states ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        if last is not None:
            report.trading_state = last[0]
    return report
