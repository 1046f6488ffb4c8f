"""Multi-row INSERTs (``engine.store.sqlite_store.insert_rows``) store exactly what
row-by-row ``executemany`` with the same conflict handling stores."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.events import Fill, Side, Tick
from engine.store.connection import open_writer
from engine.store.schema import RECORD_TABLES, migrate
from engine.store.sqlite_store import (
    INSERT_CHUNK_ROWS,
    MAX_STATEMENT_PARAMS,
    insert_rows,
    largest_chunk,
    statement_rows,
)

TICKS = RECORD_TABLES[Tick]


@given(st.integers(min_value=1, max_value=5000), st.sampled_from([1, 3, 64, 4095]))
def test_statement_rows_any_count_fits_with_less_padding_than_rows(
    n: int, largest: int
) -> None:
    n = min(n, largest)
    size = statement_rows(n, largest)
    assert n <= size <= largest
    assert size == largest or size & (size - 1) == 0  # few distinct statements
    assert size - n < n


def test_largest_chunk_every_table_within_parameter_limit() -> None:
    for table in RECORD_TABLES.values():
        rows = largest_chunk(len(table.columns))
        assert 1 <= rows <= INSERT_CHUNK_ROWS
        assert rows * len(table.columns) + 1 <= MAX_STATEMENT_PARAMS  # + the LIMIT
    assert largest_chunk(8) == 4095


def tick_row(n: int) -> tuple[object, ...]:
    return (f"binance:BTCUSDT:{n}", "binance", "BTCUSDT", n, 1_723_100_000_000_000_000 + n,
            1_723_100_000_000_500_000 + n, f"61234.{n % 100:02d}", "1E-8")


def fresh(path: Path) -> sqlite3.Connection:
    conn = open_writer(path)
    migrate(conn)
    return conn


@pytest.mark.parametrize("count", [0, 1, 2, 7, 1024, 1025, 4095, 4096, 9001])
def test_insert_rows_any_count_same_table_as_executemany(tmp_path: Path, count: int) -> None:
    # Duplicates inside the batch and against rows already stored are both skipped.
    existing = [tick_row(n) for n in range(0, 40, 3)]
    rows = [tick_row(n % (count // 2 + 1)) for n in range(count)]
    counts = []
    contents = []
    for name, insert in (("multi", "rows"), ("many", "executemany")):
        conn = fresh(tmp_path / f"{name}.db")
        conn.executemany(TICKS.insert_sql, existing)
        if insert == "rows":
            counts.append(insert_rows(conn, TICKS, rows))
        else:
            counts.append(conn.executemany(TICKS.insert_sql, rows).rowcount)
        contents.append(conn.execute("SELECT rowid, * FROM ticks ORDER BY rowid").fetchall())
        conn.close()
    assert counts[0] == counts[1]
    assert contents[0] == contents[1]


def test_insert_rows_check_violation_fails_whole_statement(tmp_path: Path) -> None:
    conn = fresh(tmp_path / "x.db")
    table = RECORD_TABLES[Fill]
    good = table.row(Fill(fill_id="fill:a", order_id="ord:a", symbol="S", side=Side.BUY,
                          qty=Decimal(1), price=Decimal(2), fee=Decimal(0),
                          cash_delta=Decimal(-2), position_delta=Decimal(1), ts_event=1))
    bad = ("fill:b", *good[1:3], "HOLD", *good[4:])
    with pytest.raises(sqlite3.IntegrityError):
        insert_rows(conn, table, [good, bad])
    assert conn.execute("SELECT count(*) FROM fills").fetchone() == (0,)


def test_insert_rows_records_with_row_function_same_as_rows(tmp_path: Path) -> None:
    records = [Tick(event_id=f"t{n % 600}", venue="v", symbol="S", trade_id=n, ts_event=n,
                    ts_recv=n, price=Decimal("1.50"), qty=Decimal("1E-8")) for n in range(5000)]
    contents = []
    for name, args in (("rows", ([TICKS.row(r) for r in records],)),
                       ("records", (records, TICKS.row))):
        conn = fresh(tmp_path / f"{name}.db")
        assert insert_rows(conn, TICKS, *args) == 600
        contents.append(conn.execute("SELECT rowid, * FROM ticks ORDER BY rowid").fetchall())
        conn.close()
    assert contents[0] == contents[1]
    assert contents[0][0] == (1, "t0", "v", "S", 0, 0, 0, "1.50", "1E-8", None)  # no run id
