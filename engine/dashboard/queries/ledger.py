"""The portfolio from the fills: the current summary (cached) and the equity curve.

Both go through the engine's own ``Ledger`` (``engine.dashboard.queries.portfolio``),
so the dashboard's PnL is the engine's (I4). The summary reads only fills it
has not seen; the curve replays at most ``MAX_EQUITY_FILLS`` fills and prices
each point with one index seek per symbol.
"""

from __future__ import annotations

import sqlite3
import threading
from decimal import Decimal
from typing import Any, Final

from engine.core.events import Fill
from engine.dashboard.queries.market import marks, tick_span
from engine.dashboard.queries.portfolio import Book
from engine.store.rows import columns_of, select_rows

MAX_LEDGER_FILLS_PER_READ: Final = 50_000
"""Fills the ledger cache reads per chunk; it reads only fills it has not seen."""

MAX_EQUITY_FILLS: Final = 200_000
"""Most fills the equity curve replays; past it the curve stops early and says ``truncated``."""

SYMBOL_AT: Final = columns_of(Fill).index("symbol")
TS_AT: Final = columns_of(Fill).index("ts_event")


class LedgerCache:
    """The ledger over every fill, read incrementally (only fills not yet seen).

    Fills are append-only (``INSERT OR IGNORE``, never updated or deleted), so
    applying the rows past the last ``rowid`` seen keeps the ledger equal to a
    rebuild. When the table shrinks (a different database file) it rebuilds.
    Thread-safe: worker threads of concurrent requests share one cache.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._book = Book()
        self._last_rowid = 0

    def summary(self, conn: sqlite3.Connection) -> dict[str, Any]:
        """Positions, cash and PnL over every fill visible to ``conn``, marked at last prices."""
        with self._lock:
            self._catch_up(conn)
            marked = marks(conn, sorted(self._book.ledger.books))
            result = self._book.summary(marked)
        result["marks"] = {s: str(p) for s, p in marked.items()}
        return result

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        top = conn.execute("SELECT MAX(rowid) FROM fills").fetchone()[0] or 0
        if top < self._last_rowid:
            self._book = Book()
            self._last_rowid = 0
        while self._last_rowid < top:
            rows = list(select_rows(
                conn, Fill, "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
                (self._last_rowid, top, MAX_LEDGER_FILLS_PER_READ), lead=("rowid",),
            ))
            if not rows:
                break
            self._book.apply_rows(r[1:] for r in rows)
            self._last_rowid = rows[-1][0]


def equity_curve(
    conn: sqlite3.Connection, *, from_ns: int | None, to_ns: int | None, points: int
) -> dict[str, Any]:
    """Equity (cash + positions at the last price) at ``points`` evenly spaced event times.

    Built from the fills (ordered by event time) and one index seek per symbol
    and point for the price, so its cost does not grow with the tick table.
    Defaults to the whole span of recorded ticks.
    """
    span = tick_span(conn)
    if span is None:
        return {"from_ns": from_ns, "to_ns": to_ns, "points": [], "fill_count": 0}
    start = from_ns if from_ns is not None else span[0]
    end = to_ns if to_ns is not None else span[1]
    fill_rows = list(select_rows(
        conn, Fill, "WHERE ts_event <= ? ORDER BY ts_event, rowid LIMIT ?",
        (end, MAX_EQUITY_FILLS + 1),
    ))
    truncated = len(fill_rows) > MAX_EQUITY_FILLS
    fill_rows = fill_rows[:MAX_EQUITY_FILLS]
    book = Book()
    syms = sorted({r[SYMBOL_AT] for r in fill_rows})
    n = max(1, min(points, (end - start) or 1))
    step = max(1, (end - start) // n)
    out: list[list[Any]] = []
    i = 0
    for k in range(n + 1):
        t = min(end, start + k * step) if k < n else end
        while i < len(fill_rows) and fill_rows[i][TS_AT] <= t:
            book.apply_rows([fill_rows[i]])
            i += 1
        if out and out[-1][0] == t:
            continue
        equity = book.ledger.equity(marks(conn, syms, t)) if syms else Decimal(0)
        out.append([t, str(equity)])
    return {
        "from_ns": start,
        "to_ns": end,
        "columns": ["ts_event", "equity"],
        "points": out,
        "fill_count": len(fill_rows),
        "truncated": truncated,
    }
