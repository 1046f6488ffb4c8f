"""Reading rows back as records: one path for every reader, driven by the schema.

``engine.store.schema.RECORD_TABLES`` says, per record type, its table, its
columns and both directions of the mapping (``row``: record -> row tuple for the
writer; ``record``: row tuple -> record for the readers). This module is how a
reader uses it: ``select_records`` selects exactly those columns and decodes each
row with the table's own ``record``, so no reader lists a table's columns again.

What the schema looks like in a given file (which tables and columns exist, how
many rows each holds) goes through sqlite-utils' ``Database`` introspection; the
record reads themselves are plain SQL through the mapping, because they are the
heavy reads (restore, report, digest, the dashboard's ledger) and a dict per row
would only be thrown away (docs/architecture.md "Schema").

Every function but ``insert_records`` only reads; a table a database does not
have yet (an older file, or one the engine never migrated) reads as empty.
``insert_records`` is the simple one-statement-per-record write for models of
the store (``engine.proof.invariants``); the engine's writer is
``engine.store.sqlite_store``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlite_utils import Database

from engine.core.events import Record
from engine.store.schema import RECORD_TABLES, RecordTable

R = TypeVar("R", bound=Record)


def _spec(kind: type[R]) -> RecordTable:
    # type[R] is one member of the Record union's types; mypy cannot see it as a key.
    return RECORD_TABLES[cast("type[Record]", kind)]


def introspect(conn: sqlite3.Connection) -> Database:
    """sqlite-utils' view of ``conn`` for schema questions; changes nothing on the connection.

    ``recursive_triggers`` and plugins are off: by default ``Database`` would run a
    PRAGMA and plugin hooks on a connection it did not open.
    """
    return Database(conn, recursive_triggers=False, execute_plugins=False)


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the database at ``conn`` has a table called ``name``."""
    return introspect(conn).table(name).exists()


def column_names(conn: sqlite3.Connection, table: str) -> set[str]:
    """The columns ``table`` has (none when it does not exist; an older schema may lack some)."""
    return {column.name for column in introspect(conn).table(table).columns}


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether ``table`` exists and has ``column``."""
    return column in column_names(conn, table)


def row_count(conn: sqlite3.Connection, table: str) -> int:
    """Rows in ``table``; 0 when the database has no such table."""
    found = introspect(conn).table(table)
    return found.count if found.exists() else 0


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Row count of every table in the database (SQLite's internal tables excluded), by name."""
    db = introspect(conn)
    return {
        name: db.table(name).count
        for name in sorted(db.table_names())
        if not name.startswith("sqlite_")
    }


def count_by(conn: sqlite3.Connection, table: str, column: str) -> dict[str, int]:
    """``{value: rows}`` of ``table`` grouped by ``column``, in value order; ``{}`` without it.

    ``table`` and ``column`` are the caller's constants, never outside input.
    """
    if not has_table(conn, table):
        return {}
    rows = conn.execute(
        f"SELECT {column}, COUNT(*) FROM {table} GROUP BY {column} ORDER BY {column}"
    )
    return {str(value): int(n) for value, n in rows}


def missing_tables(conn: sqlite3.Connection, specs: Sequence[RecordTable]) -> list[str]:
    """The tables of ``specs`` the database lacks (in ``specs`` order)."""
    present = set(introspect(conn).table_names())
    return [spec.table for spec in specs if spec.table not in present]


def select_rows(
    conn: sqlite3.Connection,
    kind: type[Record],
    tail: str = "",
    args: Sequence[Any] = (),
    *,
    lead: tuple[str, ...] = (),
) -> Iterator[tuple[Any, ...]]:
    """The raw rows of ``kind``'s table: ``lead`` columns, then its mapped columns in order.

    ``tail`` is a fixed ``WHERE``/``ORDER BY``/``LIMIT`` clause written by the
    caller; values go in ``args`` as parameters, never into ``tail``. ``lead``
    names extra leading columns (``rowid``) a reader needs beside the record.
    """
    spec = RECORD_TABLES[kind]
    if not has_table(conn, spec.table):
        return iter(())
    columns = ", ".join((*lead, *spec.columns))
    return iter(conn.execute(f"SELECT {columns} FROM {spec.table} {tail}", tuple(args)))


def select_records(
    conn: sqlite3.Connection, kind: type[R], tail: str = "", args: Sequence[Any] = ()
) -> Iterator[R]:
    """``select_rows`` decoded by the table's own ``record`` function.

    *Error handling:* a malformed stored value raises ``msgspec.ValidationError`` (a
    ``ValueError``); use ``select_rows`` + ``record_of`` to survive one.
    """
    spec = _spec(kind)
    return (cast(R, spec.record(row)) for row in select_rows(conn, spec.kind, tail, args))


def record_of(kind: type[R], row: Sequence[Any]) -> R:
    """One row of ``kind``'s mapped columns (in order) as a ``kind`` record; raises if malformed."""
    return cast(R, _spec(kind).record(row))


def is_stored(conn: sqlite3.Connection, record: Record) -> bool:
    """Whether a row with ``record``'s primary key is in its table (read by the key's columns)."""
    spec = RECORD_TABLES[type(record)]
    values = dict(zip(spec.columns, spec.row(record), strict=True))
    where = " AND ".join(f"{k} = ?" for k in spec.key)
    found = conn.execute(
        f"SELECT 1 FROM {spec.table} WHERE {where}", [values[k] for k in spec.key]
    ).fetchone()
    return found is not None


def insert_records(conn: sqlite3.Connection, records: Sequence[Record]) -> None:
    """Insert ``records`` one statement each, in one transaction (``conn`` in autocommit mode).

    The simple path, for tests and models of the store; the engine's writer is
    ``engine.store.sqlite_store`` (multi-row statements, run ids, retries).
    """
    conn.execute("BEGIN")
    for record in records:
        spec = RECORD_TABLES[type(record)]
        conn.execute(spec.insert_sql, spec.row(record))
    conn.execute("COMMIT")


def columns_of(kind: type[Record]) -> tuple[str, ...]:
    """The columns ``kind``'s table stores it in, in mapping order."""
    return RECORD_TABLES[kind].columns
