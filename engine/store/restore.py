"""Read-only queries that rebuild execution's state from the database at start-up.

A restart -- clean or after ``kill -9`` -- must resume with the positions, open
PAPER orders and decisions the previous run *persisted* (I3, I4). Whatever a
kill lost from the last unflushed batch is simply not here; because decisions
are deterministic and records idempotent, the next run recreates exactly that
part when the same ticks come again.

Only ``SELECT``s: this module never writes. Tables the schema does not have
yet (an older database) read as empty.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import Final

from engine.core.events import Fill, Order, OrderState, RiskState
from engine.core.orders import TERMINAL
from engine.core.restored import RestoredOrder, RestoredState
from engine.store.rows import columns_of, has_table, record_of, select_records

_TERMINAL_SQL: Final = ", ".join(f"'{state.value}'" for state in sorted(TERMINAL))


def load_fills(conn: sqlite3.Connection) -> list[Fill]:
    """Every fill, in insertion order (the order the ledger booked them)."""
    return list(select_records(conn, Fill, "ORDER BY rowid"))


def load_open_orders(conn: sqlite3.Connection) -> list[RestoredOrder]:
    """Orders whose latest transition is not terminal, with their persisted progress.

    The filled quantity is the sum of the order's persisted fills (the ledger's
    truth), not the last event's ``filled_qty``.
    """
    if not (has_table(conn, "orders") and has_table(conn, "order_events")):
        return []
    width = len(columns_of(Order))
    rows = conn.execute(
        f"SELECT {', '.join('o.' + c for c in columns_of(Order))}, e.state, e.seq"
        " FROM orders o JOIN order_events e ON e.order_id = o.order_id"
        " AND e.seq = (SELECT MAX(seq) FROM order_events WHERE order_id = o.order_id)"
        f" WHERE e.state NOT IN ({_TERMINAL_SQL})"
        " ORDER BY o.rowid"
    ).fetchall()
    restored: list[RestoredOrder] = []
    for r in rows:
        order = record_of(Order, r[:width])
        state, last_seq = r[width:]
        fill_qtys = conn.execute(
            "SELECT qty FROM fills WHERE order_id = ? ORDER BY rowid", (order.order_id,)
        ).fetchall()
        filled = sum((Decimal(q) for (q,) in fill_qtys), Decimal(0))
        restored.append(
            RestoredOrder(
                order=order,
                state=OrderState(state),
                filled_qty=filled,
                next_seq=last_seq + 1,
                fills=len(fill_qtys),
            )
        )
    return restored


def load_decided_signal_ids(conn: sqlite3.Connection) -> frozenset[str]:
    """Signals that already produced an order or a veto."""
    ids: set[str] = set()
    for table in ("orders", "vetoes"):
        if has_table(conn, table):
            ids.update(s for (s,) in conn.execute(f"SELECT signal_id FROM {table}"))
    return frozenset(ids)


def load_tape_watermarks(conn: sqlite3.Connection) -> dict[str, int]:
    """``"<venue>:<symbol>"`` -> the highest persisted trade id (``ticks`` and ``tape``)."""
    out: dict[str, int] = {}
    for table, column in (("ticks", "trade_id"), ("tape", "last_trade_id")):
        if not has_table(conn, table):
            continue
        rows = conn.execute(
            f"SELECT venue, symbol, MAX({column}) FROM {table} GROUP BY venue, symbol"
        )
        for venue, symbol, top in rows:
            key = f"{venue}:{symbol}"
            out[key] = max(out.get(key, int(top)), int(top))
    return out


MAX_TAPE_ISLANDS: Final = 10_000
"""Ranges of persisted trade ids kept per ``venue:symbol`` (a gap between two is an id
never persisted). Bound on memory: beyond it the lowest ranges are merged into one --
ids that old count as persisted, as every id below the highest once did."""


def load_tape_islands(conn: sqlite3.Connection) -> dict[str, tuple[tuple[int, int], ...]]:
    """``"<venue>:<symbol>"`` -> the persisted trade ids as sorted inclusive ranges.

    One pass of SQLite's window functions over ``ticks`` ("gaps and islands": ids
    minus their rank are constant along a run of consecutive ids), merged with the
    ranges of the ``tape`` table (runs that did not store their ticks,
    ``engine.store.tape``): overlapping or adjacent ranges become one.
    """
    found: dict[str, list[tuple[int, int]]] = {}
    if has_table(conn, "ticks"):
        rows = conn.execute(
            "SELECT venue, symbol, MIN(trade_id), MAX(trade_id) FROM ("
            " SELECT venue, symbol, trade_id, trade_id - ROW_NUMBER() OVER"
            " (PARTITION BY venue, symbol ORDER BY trade_id) AS run FROM ticks"
            ") GROUP BY venue, symbol, run ORDER BY venue, symbol, MIN(trade_id)"
        )
        for venue, symbol, first, last in rows:
            found.setdefault(f"{venue}:{symbol}", []).append((int(first), int(last)))
    if has_table(conn, "tape"):
        rows = conn.execute("SELECT venue, symbol, first_trade_id, last_trade_id FROM tape")
        for venue, symbol, first, last in rows:
            found.setdefault(f"{venue}:{symbol}", []).append((int(first), int(last)))
    out = {key: _merged(ranges) for key, ranges in found.items()}
    for ranges in out.values():
        if len(ranges) > MAX_TAPE_ISLANDS:
            keep = ranges[-(MAX_TAPE_ISLANDS - 1) :]
            merged = (ranges[0][0], ranges[-MAX_TAPE_ISLANDS][1])
            ranges[:] = [merged, *keep]
    return {key: tuple(ranges) for key, ranges in out.items()}


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted inclusive ranges, overlapping or adjacent ones joined."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def load_marks(conn: sqlite3.Connection) -> dict[str, Decimal]:
    """Symbol -> price of its latest persisted tick (the report's marks, too).

    The latest row of ``ticks`` and of ``tape`` per symbol; when both have one (a
    database continued with ``store_ticks`` switched), the later event time wins,
    ``ticks`` on a tie.
    """
    latest: dict[str, tuple[int, int, str]] = {}
    for rank, table in ((0, "tape"), (1, "ticks")):
        if not has_table(conn, table):
            continue
        rows = conn.execute(
            f"SELECT t.symbol, t.ts_event, t.price FROM {table} t JOIN"
            f" (SELECT symbol, MAX(rowid) AS last FROM {table} GROUP BY symbol) m"
            " ON t.rowid = m.last ORDER BY t.symbol"
        )
        for symbol, ts_event, price in rows:
            seen = latest.get(symbol)
            if seen is None or (int(ts_event), rank) >= seen[:2]:
                latest[symbol] = (int(ts_event), rank, price)
    return {symbol: Decimal(latest[symbol][2]) for symbol in sorted(latest)}


def load_risk_state(conn: sqlite3.Connection) -> tuple[RiskState | None, Decimal | None]:
    """The latest drawdown-guard record and the highest peak equity ever written."""
    states = list(select_records(conn, RiskState, "ORDER BY rowid"))
    if not states:
        return None, None
    return states[-1], max(s.peak_equity for s in states)


def load_restored_state(conn: sqlite3.Connection) -> RestoredState:
    """Everything ``Execution.restore`` needs, read from ``conn`` (read-only)."""
    risk_state, peak = load_risk_state(conn)
    return RestoredState(
        fills=tuple(load_fills(conn)),
        open_orders=tuple(load_open_orders(conn)),
        decided_signal_ids=load_decided_signal_ids(conn),
        tape_watermarks=load_tape_watermarks(conn),
        tape_islands=load_tape_islands(conn),
        risk_state=risk_state,
        peak_equity=peak,
        marks=load_marks(conn),
    )
