"""Trading records: signals, vetoes, orders (with their transitions) and fills.

Every list takes the same validated ``RecordFilter`` (symbol, event-time range,
``limit`` of at most ``MAX_LIMIT``) and returns the newest rows first; values are
bound as SQL parameters, never formatted into SQL. Each list selects its table's
columns from the schema's one mapping (``engine.store.rows``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.core.events import Fill, Order, OrderEvent, Record, Signal, Veto
from engine.dashboard.queries.bounds import DEFAULT_LIMIT
from engine.store.rows import columns_of, select_rows


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


def _select(conn: sqlite3.Connection, kind: type[Record], flt: RecordFilter,
            extra: Sequence[tuple[str, Any]] = ()) -> list[dict[str, Any]]:
    """Rows of ``kind``'s table as ``{column: stored value}`` (the schema's columns, in order)."""
    where, args = flt.where(extra)
    columns = columns_of(kind)
    rows = select_rows(
        conn, kind, f"{where} ORDER BY ts_event DESC, rowid DESC LIMIT ?", [*args, flt.limit]
    )
    return [dict(zip(columns, r, strict=True)) for r in rows]


def signals(conn: sqlite3.Connection, flt: RecordFilter) -> list[dict[str, Any]]:
    return _select(conn, Signal, flt)


def vetoes(conn: sqlite3.Connection, flt: RecordFilter, reason: str | None) -> list[dict[str, Any]]:
    return _select(conn, Veto, flt, [("reason = ?", reason)] if reason else [])


def fills(conn: sqlite3.Connection, flt: RecordFilter) -> list[dict[str, Any]]:
    return _select(conn, Fill, flt)


def orders(conn: sqlite3.Connection, flt: RecordFilter) -> list[dict[str, Any]]:
    """Orders newest first, each with its transitions in sequence order and its state now."""
    out = _select(conn, Order, flt)
    if not out:
        return out
    ids = [o["order_id"] for o in out]
    marks_sql = ", ".join("?" * len(ids))
    events: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    columns = columns_of(OrderEvent)
    for row in select_rows(
        conn, OrderEvent, f"WHERE order_id IN ({marks_sql}) ORDER BY order_id, seq", ids
    ):
        event = dict(zip(columns, row, strict=True))
        events[event.pop("order_id")].append(event)
    for order in out:
        order["transitions"] = events[order["order_id"]]
        last = order["transitions"][-1] if order["transitions"] else None
        order["state"] = None if last is None else last["state"]
        order["filled_qty"] = None if last is None else last["filled_qty"]
    return out
