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
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

from engine.core.events import Fill, Order, OrderState, OrderType, RiskState, Side, TradingState
from engine.core.orders import TERMINAL
from engine.core.restored import RestoredOrder, RestoredState

_TERMINAL_SQL: Final = ", ".join(f"'{state.value}'" for state in sorted(TERMINAL))


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


FILL_COLUMNS = (
    "fill_id, order_id, symbol, side, qty, price, fee, cash_delta, position_delta, ts_event"
)


def fill_from_row(r: Sequence[Any]) -> Fill:
    """A ``fills`` row (``FILL_COLUMNS`` order) as a ``Fill``; raises on a malformed value."""
    return Fill(
        fill_id=r[0],
        order_id=r[1],
        symbol=r[2],
        side=Side(r[3]),
        qty=Decimal(r[4]),
        price=Decimal(r[5]),
        fee=Decimal(r[6]),
        cash_delta=Decimal(r[7]),
        position_delta=Decimal(r[8]),
        ts_event=r[9],
    )


def load_fills(conn: sqlite3.Connection) -> list[Fill]:
    """Every fill, in insertion order (the order the ledger booked them)."""
    if not _has_table(conn, "fills"):
        return []
    rows = conn.execute(f"SELECT {FILL_COLUMNS} FROM fills ORDER BY rowid")
    return [fill_from_row(r) for r in rows]


def load_open_orders(conn: sqlite3.Connection) -> list[RestoredOrder]:
    """Orders whose latest transition is not terminal, with their persisted progress.

    The filled quantity is the sum of the order's persisted fills (the ledger's
    truth), not the last event's ``filled_qty``.
    """
    if not (_has_table(conn, "orders") and _has_table(conn, "order_events")):
        return []
    rows = conn.execute(
        "SELECT o.order_id, o.signal_id, o.mode, o.symbol, o.side, o.order_type, o.qty,"
        " o.price, o.ts_event, e.state, e.seq"
        " FROM orders o JOIN order_events e ON e.order_id = o.order_id"
        " AND e.seq = (SELECT MAX(seq) FROM order_events WHERE order_id = o.order_id)"
        f" WHERE e.state NOT IN ({_TERMINAL_SQL})"
        " ORDER BY o.rowid"
    ).fetchall()
    restored: list[RestoredOrder] = []
    for r in rows:
        order = Order(
            order_id=r[0],
            signal_id=r[1],
            mode=r[2],
            symbol=r[3],
            side=Side(r[4]),
            order_type=OrderType(r[5]),
            qty=Decimal(r[6]),
            price=Decimal(r[7]),
            ts_event=r[8],
        )
        fill_qtys = conn.execute(
            "SELECT qty FROM fills WHERE order_id = ? ORDER BY rowid", (order.order_id,)
        ).fetchall()
        filled = sum((Decimal(q) for (q,) in fill_qtys), Decimal(0))
        restored.append(
            RestoredOrder(
                order=order,
                state=OrderState(r[9]),
                filled_qty=filled,
                next_seq=r[10] + 1,
                fills=len(fill_qtys),
            )
        )
    return restored


def load_decided_signal_ids(conn: sqlite3.Connection) -> frozenset[str]:
    """Signals that already produced an order or a veto."""
    ids: set[str] = set()
    for table in ("orders", "vetoes"):
        if _has_table(conn, table):
            ids.update(s for (s,) in conn.execute(f"SELECT signal_id FROM {table}"))
    return frozenset(ids)


def load_tape_watermarks(conn: sqlite3.Connection) -> dict[str, int]:
    """``"<venue>:<symbol>"`` -> the highest persisted trade id (``ticks`` and ``tape``)."""
    out: dict[str, int] = {}
    for table, column in (("ticks", "trade_id"), ("tape", "last_trade_id")):
        if not _has_table(conn, table):
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
    if _has_table(conn, "ticks"):
        rows = conn.execute(
            "SELECT venue, symbol, MIN(trade_id), MAX(trade_id) FROM ("
            " SELECT venue, symbol, trade_id, trade_id - ROW_NUMBER() OVER"
            " (PARTITION BY venue, symbol ORDER BY trade_id) AS run FROM ticks"
            ") GROUP BY venue, symbol, run ORDER BY venue, symbol, MIN(trade_id)"
        )
        for venue, symbol, first, last in rows:
            found.setdefault(f"{venue}:{symbol}", []).append((int(first), int(last)))
    if _has_table(conn, "tape"):
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
        if not _has_table(conn, table):
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
    if not _has_table(conn, "risk_states"):
        return None, None
    rows = conn.execute(
        "SELECT state_id, trading_state, ts_event, equity, peak_equity, max_drawdown_usd,"
        " reason FROM risk_states ORDER BY rowid"
    ).fetchall()
    if not rows:
        return None, None
    r = rows[-1]
    latest = RiskState(
        state_id=r[0],
        trading_state=TradingState(r[1]),
        ts_event=r[2],
        equity=Decimal(r[3]),
        peak_equity=Decimal(r[4]),
        max_drawdown_usd=Decimal(r[5]),
        reason=r[6],
    )
    return latest, max(Decimal(row[4]) for row in rows)


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
