"""What the proof's risk audit reads from a replayed database (read-only).

``engine.proof.risk_caps.audit`` re-derives exposure and open orders from the
persisted record alone; this module is its data access, so the proof holds no
SQL. Fills and transitions are decoded by the schema's own mapping
(``engine.store.rows``); an order's entry price is the price of the tick that
caused its signal (the order's own price when that tick is not stored).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from engine.core.events import Fill, OrderEvent, Side
from engine.store.connection import open_readonly
from engine.store.rows import count_by, has_table, select_records


@dataclass(frozen=True, slots=True)
class OrderEntry:
    """An order as the audit sees it when it opens: at its cause's price and time."""

    order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    ts_event: int


@dataclass(frozen=True, slots=True)
class AuditRows:
    """Every fill, transition and order, each list in insertion (rowid) order."""

    fills: list[Fill] = field(default_factory=list)
    transitions: list[OrderEvent] = field(default_factory=list)
    entries: list[OrderEntry] = field(default_factory=list)
    vetoes_by_reason: dict[str, int] = field(default_factory=dict)


def order_entries(conn: sqlite3.Connection) -> list[OrderEntry]:
    """Every order in rowid order, priced and timed by the tick behind its signal."""
    if not has_table(conn, "orders"):
        return []
    rows = conn.execute(
        "SELECT o.order_id, o.symbol, o.side, o.qty, COALESCE(t.price, o.price),"
        " COALESCE(t.ts_event, o.ts_event) FROM orders o"
        " LEFT JOIN signals s ON s.signal_id = o.signal_id"
        " LEFT JOIN ticks t ON t.event_id = s.cause_id ORDER BY o.rowid"
    )
    return [
        OrderEntry(order_id, symbol, Side(side), Decimal(qty), Decimal(price), int(ts))
        for order_id, symbol, side, qty, price, ts in rows
    ]


def read_audit_rows(db_path: str | Path) -> AuditRows:
    """``AuditRows`` of the database at ``db_path`` (opened read-only, closed after)."""
    conn = open_readonly(db_path, verify=False)
    try:
        return AuditRows(
            fills=list(select_records(conn, Fill, "ORDER BY rowid")),
            transitions=list(select_records(conn, OrderEvent, "ORDER BY rowid")),
            entries=order_entries(conn),
            vetoes_by_reason=count_by(conn, "vetoes", "reason"),
        )
    finally:
        conn.close()
