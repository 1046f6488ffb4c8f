"""Schema: versioned migrations and the record -> table mapping."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from sqlite_utils import Database

from engine.core.events import Fill, Order, OrderEvent, Side, Signal, Tick, Veto
from engine.store import schema
from engine.store.schema import DIGEST_TABLES, RECORD_TABLES, migrate

ALL_MIGRATIONS = [
    "0001_trading_records", "0002_runs_heartbeats", "0003_risk_states", "0004_venue_failures",
    "0005_run_identity", "0006_tape", "0007_signal_sizing",
]

EXPECTED_COLUMNS = {
    "ticks": {"event_id": "TEXT", "venue": "TEXT", "symbol": "TEXT", "trade_id": "INTEGER",
              "ts_event": "INTEGER", "ts_recv": "INTEGER", "price": "TEXT", "qty": "TEXT"},
    "signals": {"signal_id": "TEXT", "symbol": "TEXT", "side": "TEXT", "ts_event": "INTEGER",
                "ts_recv": "INTEGER", "price": "TEXT", "cause_id": "TEXT", "notional": "TEXT",
                "reason": "TEXT"},
    "vetoes": {"veto_id": "TEXT", "signal_id": "TEXT", "symbol": "TEXT", "reason": "TEXT",
               "detail": "TEXT", "ts_event": "INTEGER"},
    "orders": {"order_id": "TEXT", "signal_id": "TEXT", "mode": "TEXT", "symbol": "TEXT",
               "side": "TEXT", "order_type": "TEXT", "qty": "TEXT", "price": "TEXT",
               "ts_event": "INTEGER"},
    "order_events": {"order_id": "TEXT", "seq": "INTEGER", "state": "TEXT",
                     "ts_event": "INTEGER", "reason": "TEXT", "filled_qty": "TEXT",
                     "leaves_qty": "TEXT"},
    "fills": {"fill_id": "TEXT", "order_id": "TEXT", "symbol": "TEXT", "side": "TEXT",
              "qty": "TEXT", "price": "TEXT", "fee": "TEXT", "cash_delta": "TEXT",
              "position_delta": "TEXT", "ts_event": "INTEGER"},
    "heartbeats": {"hb_id": "INTEGER", "run_id": "TEXT", "ts_wall_ns": "INTEGER",
                   "interval_s": "REAL", "final": "INTEGER", "mode": "TEXT",
                   "trading_state": "TEXT", "counters": "TEXT"},
    "runs": {"run_id": "TEXT", "pid": "INTEGER", "command": "TEXT", "mode": "TEXT",
             "started_wall_ns": "INTEGER", "ended_wall_ns": "INTEGER", "exit_code": "INTEGER",
             "clean_shutdown": "INTEGER", "code_version": "TEXT", "config_json": "TEXT"},
}

EXPECTED_PKS = {
    "ticks": ["event_id"], "signals": ["signal_id"], "vetoes": ["veto_id"],
    "orders": ["order_id"], "order_events": ["order_id", "seq"], "fills": ["fill_id"],
    "heartbeats": ["hb_id"], "runs": ["run_id"],
}


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    yield c
    c.close()


def _columns(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    return {row[1]: row[2] for row in conn.execute(f"PRAGMA table_info({table})")}


def _pk(conn: sqlite3.Connection, table: str) -> list[str]:
    rows = sorted((row[5], row[1]) for row in conn.execute(f"PRAGMA table_info({table})"))
    return [name for order, name in rows if order > 0]


def test_migrate_fresh_database_applies_all_in_order(conn: sqlite3.Connection) -> None:
    assert migrate(conn) == ALL_MIGRATIONS
    applied = [r[0] for r in conn.execute(
        "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY id",
        [schema.MIGRATION_SET])]
    assert applied == ALL_MIGRATIONS


def test_migrate_rerun_is_noop(conn: sqlite3.Connection) -> None:
    migrate(conn)
    before = conn.execute("SELECT * FROM _sqlite_migrations").fetchall()
    assert migrate(conn) == []
    assert migrate(Database(conn)) == []
    assert conn.execute("SELECT * FROM _sqlite_migrations").fetchall() == before


def test_migrate_failing_migration_rolls_back_with_bookkeeping(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(conn)

    def broken(db: Database) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    monkeypatch.setattr(schema.migrations, "_migrations", list(schema.migrations._migrations))
    schema.migrations(name="9999_broken")(broken)
    with pytest.raises(RuntimeError, match="boom"):
        migrate(conn)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables
    names = {r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")}
    assert "9999_broken" not in names
    assert not conn.in_transaction


def test_schema_tables_have_contract_columns_types_and_keys(conn: sqlite3.Connection) -> None:
    migrate(conn)
    for table, expected in EXPECTED_COLUMNS.items():
        columns = _columns(conn, table)
        for name, sql_type in expected.items():
            assert columns.get(name) == sql_type, (table, name)
        assert _pk(conn, table) == EXPECTED_PKS[table], table


def test_schema_ticks_indexed_on_ts_event_and_symbol_ts_event(conn: sqlite3.Connection) -> None:
    migrate(conn)
    indexed = set()
    for index in conn.execute("PRAGMA index_list(ticks)").fetchall():
        cols = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({index[1]})"))
        indexed.add(cols)
    assert ("ts_event",) in indexed
    assert ("symbol", "ts_event") in indexed


def test_heartbeats_hb_id_autoincrements_and_final_defaults_to_zero(
    conn: sqlite3.Connection,
) -> None:
    migrate(conn)
    conn.execute("INSERT INTO heartbeats (run_id, ts_wall_ns, interval_s, counters)"
                 " VALUES ('r', 1, 10.0, '{}')")
    row = conn.execute("SELECT hb_id, final FROM heartbeats").fetchone()
    assert row == (1, 0)
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name='heartbeats'").fetchone()[0]
    assert "AUTOINCREMENT" in sql


def test_record_tables_columns_equal_struct_fields_and_exist_in_schema(
    conn: sqlite3.Connection,
) -> None:
    migrate(conn)
    for record_type, spec in RECORD_TABLES.items():
        assert spec.columns == record_type.__struct_fields__, spec.table
        assert set(spec.columns) <= set(_columns(conn, spec.table)), spec.table
        assert spec.key == tuple(_pk(conn, spec.table)), spec.table


def test_digest_tables_fixed_order() -> None:
    assert [t.table for t in DIGEST_TABLES] == [
        "signals", "vetoes", "orders", "order_events", "fills"]


def test_record_table_row_decimals_exact_strings_enums_plain() -> None:
    tick = Tick(event_id="binance:BTCUSDT:7", venue="binance", symbol="BTCUSDT", trade_id=7,
                ts_event=10, ts_recv=11, price=Decimal("61234.50"), qty=Decimal("1E-8"))
    assert RECORD_TABLES[Tick].row(tick) == (
        "binance:BTCUSDT:7", "binance", "BTCUSDT", 7, 10, 11, "61234.50", "1E-8")
    signal = Signal(signal_id="sig:x", symbol="BTCUSDT", side=Side.SELL, ts_event=1, ts_recv=2,
                    price=Decimal("0.10"), cause_id="x")
    row = RECORD_TABLES[Signal].row(signal)
    assert row == ("sig:x", "BTCUSDT", "SELL", 1, 2, "0.10", "x", None, "")
    assert type(row[2]) is str


def test_record_table_insert_sql_skips_only_duplicate_keys() -> None:
    for record_type in (Tick, Signal, Veto, Order, OrderEvent, Fill):
        sql = RECORD_TABLES[record_type].insert_sql
        assert sql.startswith("INSERT INTO ")
        assert sql.endswith(" ON CONFLICT DO NOTHING")
        assert sql.count("?") == len(RECORD_TABLES[record_type].columns)


def test_row_builder_refuses_float() -> None:
    row = schema.row_builder(("price",))
    with pytest.raises(TypeError, match="float"):
        row(type("R", (), {"price": 1.5})())
