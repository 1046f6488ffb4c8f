"""The one row <-> record mapping per table: every table round-trips, every reader uses it.

``engine.store.schema.RECORD_TABLES`` gives each record type its columns, a
record -> row function (the writer's) and a row -> record function (every
reader's, via ``engine.store.rows``). These tests hold the two directions to each
other, to the real tables the migrations create, and to the digest.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.events import (
    Fill,
    Order,
    OrderEvent,
    OrderState,
    OrderType,
    Record,
    Side,
    Signal,
    Veto,
    VetoReason,
)
from engine.store import rows
from engine.store.digest import digest
from engine.store.schema import (
    DIGEST_TABLES,
    HEARTBEAT_COLUMNS,
    RECORD_TABLES,
    RUN_COLUMNS,
    RUN_IDENTITY_COLUMNS,
    migrate,
)
from engine.store.sqlite_store import SqliteStore

KINDS = list(RECORD_TABLES)

_DECIMALS = st.decimals(allow_nan=False, allow_infinity=False)
_INTS = st.integers(-(2**63), 2**63 - 1)


def _values_for(kind: Any) -> st.SearchStrategy[Any]:
    if kind is Decimal:
        return _DECIMALS
    if kind == Decimal | None:  # a signal's optional notional
        return st.none() | _DECIMALS
    if kind is int:
        return _INTS
    if isinstance(kind, type) and issubclass(kind, Enum):
        return st.sampled_from(list(kind))
    assert kind is str, f"no strategy for field type {kind!r}: extend the test"
    return st.text(max_size=20)


def records_of(kind: type[Record]) -> st.SearchStrategy[Record]:
    """Any record of ``kind``, every field drawn from its full type."""
    fields = {f.name: _values_for(f.type) for f in msgspec.structs.fields(kind)}
    return st.builds(kind, **fields)


any_record = st.sampled_from(KINDS).flatmap(records_of)


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(":memory:", isolation_level=None)
    migrate(c)
    yield c
    c.close()


@given(any_record)
def test_every_table_round_trips(record: Record) -> None:
    """record -> row -> record is the identity, and the row is exactly what was written."""
    spec = RECORD_TABLES[type(record)]
    row = spec.row(record)
    back = rows.record_of(type(record), row)
    assert back == record
    assert type(back) is type(record)
    assert spec.row(back) == row  # exact: the same decimal strings, not merely equal values


@settings(max_examples=50)
@given(st.lists(any_record, max_size=12))
def test_round_trip_through_sqlite(records: list[Record]) -> None:
    """Through a real SQLite table and back: the readers' decode is the writer's inverse."""
    c = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(c)
        rows.insert_records(c, records)
        for kind in KINDS:
            firsts: dict[tuple[Any, ...], Record] = {}
            for r in records:  # ON CONFLICT DO NOTHING: the first record of a key stays
                if type(r) is kind:
                    spec = RECORD_TABLES[kind]
                    key = tuple(dict(zip(spec.columns, spec.row(r), strict=True))[k]
                                for k in spec.key)
                    firsts.setdefault(key, r)
            stored = list(rows.select_records(c, kind, "ORDER BY rowid"))
            assert stored == list(firsts.values())
            assert all(rows.is_stored(c, r) for r in firsts.values())
    finally:
        c.close()


def test_store_writes_what_readers_read(tmp_path: Path) -> None:
    """The engine's own writer (multi-row INSERTs, run id) and the mapping's reader agree."""
    fill = Fill(fill_id="f1", order_id="o1", symbol="BTCUSDT", side=Side.BUY, qty=Decimal("0.5"),
                price=Decimal("100.10"), fee=Decimal("0.05"), cash_delta=Decimal("-50.10"),
                position_delta=Decimal("0.5"), ts_event=7)
    store = SqliteStore.open(tmp_path / "w.db")
    try:
        store.write_records([fill])
        assert list(rows.select_records(store.connection, Fill)) == [fill]
    finally:
        store.close()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_mapping_covers_struct_and_table(conn: sqlite3.Connection, kind: type[Record]) -> None:
    """Columns = the Struct's fields = the table's columns (bar ``run_id``, outside records)."""
    spec = RECORD_TABLES[kind]
    assert spec.columns == tuple(f.name for f in msgspec.structs.fields(kind))
    assert set(spec.columns) == rows.column_names(conn, spec.table) - {"run_id"}
    assert rows.columns_of(kind) == spec.columns
    assert spec.select_sql == f"SELECT {', '.join(spec.columns)} FROM {spec.table}"


def test_runs_and_heartbeats_columns_are_the_tables(conn: sqlite3.Connection) -> None:
    assert rows.column_names(conn, "runs") == set(RUN_COLUMNS) | set(RUN_IDENTITY_COLUMNS)
    assert rows.column_names(conn, "heartbeats") == set(HEARTBEAT_COLUMNS)


def test_digest_frames_the_mapping_columns(conn: sqlite3.Connection) -> None:
    """An empty database's digest is the hash of the mapping's own table/column headers."""
    expected = hashlib.sha256()
    for spec in DIGEST_TABLES:
        line = json.dumps(["table", spec.table, list(spec.hashed_columns)], separators=(",", ":"))
        expected.update(line.encode() + b"\n")
    assert digest(conn) == expected.hexdigest()


SAMPLES: dict[type[Record], Record] = {
    Signal: Signal(signal_id="s1", symbol="X", side=Side.BUY, ts_event=1, ts_recv=2,
                   price=Decimal("1.5"), cause_id="t1"),
    Veto: Veto(veto_id="v1", signal_id="s1", symbol="X", reason=next(iter(VetoReason)),
               detail="d", ts_event=3),
    Order: Order(order_id="o1", signal_id="s1", mode="PAPER", symbol="X", side=Side.SELL,
                 order_type=OrderType.MARKET,
                 qty=Decimal("2"), price=Decimal("3.25"), ts_event=4),
    OrderEvent: OrderEvent(order_id="o1", seq=0,
                           state=OrderState.SUBMITTED,
                           ts_event=5, reason="", filled_qty=Decimal(0), leaves_qty=Decimal(2)),
    Fill: Fill(fill_id="f1", order_id="o1", symbol="X", side=Side.SELL, qty=Decimal("2"),
               price=Decimal("3.25"), fee=Decimal("0.01"), cash_delta=Decimal("6.49"),
               position_delta=Decimal("-2"), ts_event=6),
}


@pytest.mark.parametrize("spec", DIGEST_TABLES, ids=lambda s: s.table)
def test_digest_reads_every_mapped_column(conn: sqlite3.Connection, spec: Any) -> None:
    """Changing any hashed column of a stored row changes the digest; ``run_id`` does not,
    nor do the stored-only columns (a signal's notional and reason)."""
    rows.insert_records(conn, [SAMPLES[spec.kind]])
    before = digest(conn)
    conn.execute(f"UPDATE {spec.table} SET run_id = 'another run'")
    for column in set(spec.columns) - set(spec.hashed_columns):
        conn.execute(f"UPDATE {spec.table} SET {column} = '7'")
    assert digest(conn) == before
    for column in spec.hashed_columns:
        old = conn.execute(f"SELECT {column} FROM {spec.table}").fetchone()[0]
        flipped = {"BUY": "SELL", "SELL": "BUY"}  # side's CHECK allows only these
        new = old + 1 if isinstance(old, int) else flipped.get(old, f"{old}!")
        conn.execute(f"UPDATE {spec.table} SET {column} = ?", (new,))
        assert digest(conn) != before, f"{spec.table}.{column} is not in the digest"
        conn.execute(f"UPDATE {spec.table} SET {column} = ?", (old,))
    assert digest(conn) == before


def test_readers_treat_a_missing_table_as_empty() -> None:
    c = sqlite3.connect(":memory:")
    try:
        assert list(rows.select_records(c, Fill)) == []
        assert rows.row_count(c, "fills") == 0
        assert rows.count_by(c, "vetoes", "reason") == {}
        assert rows.table_counts(c) == {}
        assert rows.missing_tables(c, DIGEST_TABLES) == [s.table for s in DIGEST_TABLES]
        assert not rows.has_table(c, "fills")
        assert not rows.has_column(c, "fills", "fill_id")
    finally:
        c.close()


def test_a_malformed_value_raises_not_misreads(conn: sqlite3.Connection) -> None:
    """A corrupt decimal is refused by the reader (the report counts it; nothing is guessed)."""
    rows.insert_records(conn, [SAMPLES[Fill]])
    conn.execute("UPDATE fills SET price = 'not-a-number'")
    with pytest.raises(msgspec.ValidationError):
        list(rows.select_records(conn, Fill))
