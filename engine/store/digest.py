"""The digest: one sha256 over what two deterministic runs must agree on (S8).

Covered: the ``in_digest`` tables of ``engine.store.schema.RECORD_TABLES`` --
signals, vetoes, orders, order_events, fills -- in that fixed order, each with
its mapped columns (``hashed_columns``: the signals' notional and reason are
stored but not hashed) in their fixed order and its rows ordered by primary key.
Not covered: ticks (the input, not a decision), heartbeats and runs (wall clock).

Framing is unambiguous: the hash input is a sequence of newline-terminated
compact JSON arrays -- ``["table", name, [columns...]]`` before each table,
then one array per row. A value's canonical form is its stored form: TEXT as a
JSON string (decimal strings exactly as stored), INTEGER as a JSON integer,
NULL as ``null``. Row order uses SQLite's BINARY collation (bytewise), which
does not depend on locale or insertion order.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from engine.store.connection import open_readonly
from engine.store.schema import DIGEST_TABLES, RecordTable


def _line(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    ) + b"\n"


def _check_value(value: object) -> object:
    if value is None or isinstance(value, int | str):
        return value
    # No digest table has a REAL or BLOB column; a float here would make the
    # digest depend on float formatting, so refuse it loudly.
    raise TypeError(f"digest: unexpected {type(value).__name__} value {value!r}")


def _table_rows(conn: sqlite3.Connection, spec: RecordTable) -> sqlite3.Cursor:
    # The digest's columns of the mapping (``hashed_columns``: all but the signals'
    # stored-only notional and reason).
    columns = ", ".join(spec.hashed_columns)
    return conn.execute(f"SELECT {columns} FROM {spec.table} ORDER BY {', '.join(spec.key)}")


def digest(conn: sqlite3.Connection) -> str:
    """The sha256 hex digest of the decision tables' canonical content."""
    h = hashlib.sha256()
    for spec in DIGEST_TABLES:
        h.update(_line(["table", spec.table, list(spec.hashed_columns)]))
        for row in _table_rows(conn, spec):
            h.update(_line([_check_value(v) for v in row]))
    return h.hexdigest()


def digest_path(path: str | Path) -> str:
    """``digest`` of the database at ``path``, opened read-only (never writes)."""
    conn = open_readonly(path)
    try:
        return digest(conn)
    finally:
        conn.close()
