"""Trading records: signals, vetoes, orders (with their transitions) and fills.

Every list takes the same validated ``RecordFilter`` (symbol, event-time range,
``limit`` of at most ``MAX_LIMIT``) and returns the newest rows first; values are
bound as SQL parameters, never formatted into SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from engine.dashboard.queries.bounds import DEFAULT_LIMIT


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """The validated filters every record list accepts."""

    limit: int = DEFAULT_LIMIT
    symbol: str | None = None
    from_ns: int | None = None
    to_ns: int | None = None

    def where(self, extra: Sequence[tuple[str, Any]] = ()) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.symbol is not None:
            clauses.append("symbol = ?")
            args.append(self.symbol)
        if self.from_ns is not None:
            clauses.append("ts_event >= ?")
            args.append(self.from_ns)
        if self.to_ns is not None:
            clauses.append("ts_event <= ?")
            args.append(self.to_ns)
        for clause, value in extra:
            clauses.append(clause)
            args.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _select(conn: sqlite3.Connection, table: str, columns: Sequence[str], flt: RecordFilter,
            extra: Sequence[tuple[str, Any]] = ()) -> list[dict[str, Any]]:
    where, args = flt.where(extra)
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM {table}{where}"
        " ORDER BY ts_event DESC, rowid DESC LIMIT ?",
        [*args, flt.limit],
    ).fetchall()
    return [dict(zip(columns, r, strict=True)) for r in rows]


SIGNAL_COLUMNS: Final = ("signal_id", "symbol", "side", "ts_event", "ts_recv", "price", "cause_id")
VETO_COLUMNS: Final = ("veto_id", "signal_id", "symbol", "reason", "detail", "ts_event")
ORDER_COLUMNS: Final = (
    "order_id", "signal_id", "mode", "symbol", "side", "order_type", "qty", "price", "ts_event",
)
ORDER_EVENT_COLUMNS: Final = (
    "order_id", "seq", "state", "ts_event", "reason", "filled_qty", "leaves_qty",
)
FILL_COLUMNS: Final = (
    "fill_id", "order_id", "symbol", "side", "qty", "price", "fee", "cash_delta",
    "position_delta", "ts_event",
)


def signals(conn: sqlite3.Connection, flt: RecordFilter) -> list[dict[str, Any]]:
    return _select(conn, "signals", SIGNAL_COLUMNS, flt)


def vetoes(conn: sqlite3.Connection, flt: RecordFilter, reason: str | None) -> list[dict[str, Any]]:
    return _select(conn, "vetoes", VETO_COLUMNS, flt, [("reason = ?", reason)] if reason else [])


def fills(conn: sqlite3.Connection, flt: RecordFilter) -> list[dict[str, Any]]:
    return _select(conn, "fills", FILL_COLUMNS, flt)


def orders(conn: sqlite3.Connection, flt: RecordFilter) -> list[dict[str, Any]]:
    """Orders newest first, each with its transitions in sequence order and its state now."""
    out = _select(conn, "orders", ORDER_COLUMNS, flt)
    if not out:
        return out
    ids = [o["order_id"] for o in out]
    marks_sql = ", ".join("?" * len(ids))
    events: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for row in conn.execute(
        f"SELECT {', '.join(ORDER_EVENT_COLUMNS)} FROM order_events"
        f" WHERE order_id IN ({marks_sql}) ORDER BY order_id, seq",
        ids,
    ).fetchall():
        event = dict(zip(ORDER_EVENT_COLUMNS, row, strict=True))
        events[event.pop("order_id")].append(event)
    for order in out:
        order["transitions"] = events[order["order_id"]]
        last = order["transitions"][-1] if order["transitions"] else None
        order["state"] = None if last is None else last["state"]
        order["filled_qty"] = None if last is None else last["filled_qty"]
    return out
