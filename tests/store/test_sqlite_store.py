"""SqliteStore: idempotent all-or-nothing batches, exact decimals, lock retries (S12)."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import logs
from engine.core.events import (
    Fill,
    Order,
    OrderEvent,
    OrderState,
    OrderType,
    Record,
    Side,
    Signal,
    Tick,
    Veto,
    VetoReason,
)
from engine.ports import WriteResult
from engine.store.digest import digest
from engine.store.rows import table_counts
from engine.store.schema import RECORD_TABLES
from engine.store.sqlite_store import SqliteStore, StoreAbandoned, backoff_s, is_lock_error


def tick(n: int, price: str = "61000.10", qty: str = "0.00100000") -> Tick:
    return Tick(event_id=f"binance:BTCUSDT:{n}", venue="binance", symbol="BTCUSDT", trade_id=n,
                ts_event=1_723_100_000_000_000_000 + n, ts_recv=1_723_100_000_000_500_000 + n,
                price=Decimal(price), qty=Decimal(qty))


def one_of_each(n: int = 1) -> list[Record]:
    """A tick and a full decision chain, with awkward exact decimals."""
    t = tick(n, price="61234.5000", qty="1E-8")
    sig = Signal(signal_id=f"sig:{t.event_id}", symbol="BTCUSDT", side=Side.BUY,
                 ts_event=t.ts_event, ts_recv=t.ts_recv, price=Decimal("61234.5000"),
                 cause_id=t.event_id)
    order = Order(order_id=f"ord:{sig.signal_id}", signal_id=sig.signal_id, mode="shadow",
                  symbol="BTCUSDT", side=Side.BUY, order_type=OrderType.MARKET,
                  qty=Decimal("0.00163"), price=Decimal("61240.623450"), ts_event=t.ts_event)
    events = [
        OrderEvent(order_id=order.order_id, seq=0, state=OrderState.SUBMITTED,
                   ts_event=t.ts_event, reason="", filled_qty=Decimal("0"),
                   leaves_qty=Decimal("0.00163")),
        OrderEvent(order_id=order.order_id, seq=1, state=OrderState.FILLED,
                   ts_event=t.ts_event, reason="shadow fill", filled_qty=Decimal("0.00163"),
                   leaves_qty=Decimal("0E-5")),
    ]
    fill = Fill(fill_id=f"fill:{order.order_id}:0", order_id=order.order_id, symbol="BTCUSDT",
                side=Side.BUY, qty=Decimal("0.00163"), price=Decimal("61240.623450"),
                fee=Decimal("0.0998221616235"), cash_delta=Decimal("-99.9220383851235"),
                position_delta=Decimal("0.00163"), ts_event=t.ts_event)
    veto = Veto(veto_id=f"veto:sig:x{n}", signal_id=f"sig:x{n}", symbol="BTCUSDT",
                reason=VetoReason.NO_POSITION, detail="position 0", ts_event=t.ts_event)
    return [t, sig, order, *events, fill, veto]


def read_back(conn: sqlite3.Connection, record_type: type[Record]) -> list[Record]:
    """Rebuild Structs from stored rows, decimals from their exact text."""
    spec = RECORD_TABLES[record_type]
    decimal_fields = {name for name, kind in zip(
        record_type.__struct_fields__, record_type.__annotations__.values(), strict=False)
        if "Decimal" in str(kind)}
    out: list[Record] = []
    order = ", ".join(spec.key)
    for row in conn.execute(f"SELECT {', '.join(spec.columns)} FROM {spec.table} ORDER BY {order}"):
        values = {c: Decimal(v) if c in decimal_fields and v is not None else v
                  for c, v in zip(spec.columns, row, strict=True)}
        out.append(record_type(**values))
    return out


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore.open(tmp_path / "engine.db")
    yield s
    s.close()


def test_write_records_every_table_round_trips_exact_decimals(store: SqliteStore) -> None:
    records = one_of_each()
    result = store.write_records(records)
    assert result == WriteResult(inserted=len(records), records=len(records), lock_retries=0)
    for record in records:
        stored = read_back(store.connection, type(record))
        assert record in stored
        # Exact text, not merely numerically equal: "61234.5000" stays "61234.5000".
        match = stored[stored.index(record)]
        for name in record.__struct_fields__:
            assert str(getattr(match, name)) == str(getattr(record, name)), name


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(st.lists(st.decimals(allow_nan=False, allow_infinity=False), min_size=2, max_size=2))
def test_write_records_any_decimal_stored_as_exact_string(
    store: SqliteStore, values: list[Decimal]
) -> None:
    n = next(_ids)
    record = Tick(event_id=f"hyp:{n}", venue="v", symbol="S", trade_id=n, ts_event=n, ts_recv=n,
                  price=values[0], qty=values[1])
    store.write_records([record])
    row = store.connection.execute(
        "SELECT price, qty FROM ticks WHERE event_id = ?", [record.event_id]).fetchone()
    assert row == (str(values[0]), str(values[1]))
    assert Decimal(row[0]) == values[0]


_ids = itertools.count()


def test_write_records_same_records_twice_changes_nothing(store: SqliteStore) -> None:
    records = one_of_each(1) + one_of_each(2)
    store.write_records(records)
    before = (digest(store.connection), table_counts(store.connection))
    again = store.write_records(records)
    assert again == WriteResult(inserted=0, records=len(records), lock_retries=0)
    assert (digest(store.connection), table_counts(store.connection)) == before


def test_write_records_existing_id_with_other_values_keeps_original(store: SqliteStore) -> None:
    store.write_records([tick(1, price="100.0")])
    assert store.write_records([tick(1, price="999.9")]).inserted == 0
    assert store.connection.execute("SELECT price FROM ticks").fetchall() == [("100.0",)]


def test_write_records_failing_record_rolls_back_whole_batch(store: SqliteStore) -> None:
    bad = Signal(signal_id="sig:bad", symbol="BTCUSDT", side="HOLD",  # type: ignore[arg-type]
                 ts_event=1, ts_recv=1, price=Decimal(1), cause_id="x")
    with pytest.raises(sqlite3.IntegrityError):
        store.write_records([tick(1), tick(2), bad])
    assert not store.connection.in_transaction
    assert table_counts(store.connection)["ticks"] == 0
    assert store.write_records([tick(1)]).inserted == 1


def test_write_records_empty_batch_is_noop(store: SqliteStore) -> None:
    assert store.write_records([]) == WriteResult(0, 0, 0)


def test_write_records_locked_by_other_connection_waits_and_lands_complete(
    tmp_path: Path,
) -> None:
    path = tmp_path / "engine.db"
    delays: list[float] = []
    locked, release, released = threading.Event(), threading.Event(), threading.Event()

    def sleep(delay: float) -> None:
        # Called by the store between retries: after two failed attempts
        # (each one having waited busy_timeout) let the other connection go.
        delays.append(delay)
        if len(delays) == 2:
            release.set()
            assert released.wait(10)

    store = SqliteStore.open(path, busy_timeout_ms=50, retry_first_s=0.01, retry_max_s=0.015,
                             sleep=sleep)

    def hold_lock() -> None:
        other = sqlite3.connect(path, isolation_level=None, timeout=10)
        other.execute("BEGIN EXCLUSIVE")
        other.execute("INSERT INTO runs (run_id) VALUES ('other')")
        locked.set()
        release.wait(10)
        other.execute("COMMIT")
        other.close()
        released.set()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        records = [tick(n) for n in range(1000, 1500)] + one_of_each(9)
        with logs.capture() as log:
            result = store.write_records(records)
    finally:
        release.set()
        holder.join()
    assert result == WriteResult(inserted=len(records), records=len(records), lock_retries=2)
    assert delays == [0.01, 0.015]
    counts = table_counts(store.connection)
    assert counts["ticks"] == 501
    assert counts["fills"] == 1
    assert counts["runs"] == 1  # the other connection's write landed too
    retries = log.lines
    assert [r["event"] for r in retries] == ["persist_lock_retry"] * 2
    assert "locked" in retries[0]["error"]
    store.close()


def test_open_logs_store_opened_with_pragmas_and_migrations(tmp_path: Path) -> None:
    with logs.capture() as log:
        SqliteStore.open(tmp_path / "e.db").close()
        SqliteStore.open(tmp_path / "e.db").close()
    first, second = log.lines
    assert first["event"] == "store_opened"
    assert first["pragmas"] == {"journal_mode": "wal", "synchronous": 1,
                                "busy_timeout": 5000, "temp_store": 2}
    assert first["migrations_applied"] == ["0001_trading_records", "0002_runs_heartbeats",
                                          "0003_risk_states", "0004_venue_failures",
                                          "0005_run_identity", "0006_tape", "0007_signal_sizing"]
    assert second["migrations_applied"] == []


def test_open_pragmas_read_back_from_file_after_open(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    store = SqliteStore.open(path)
    store.write_records([tick(1)])
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert (tmp_path / "e.db-wal").exists()
    finally:
        other.close()
        store.close()


def test_runs_and_heartbeats_round_trip_with_clean_shutdown_marker(store: SqliteStore) -> None:
    store.start_run("run-1", 4242, "replay x.gz", "shadow", 1_000, "abc123", '{"a": 1}')
    counters = {"tick_count": 9757, "persist_errors": 0}
    store.write_heartbeat("run-1", 2_000, 10.0, counters, False, "shadow", "RUNNING")
    store.write_heartbeat("run-1", 3_000, 10.0, counters, True, "shadow", "RUNNING")
    result = store.end_run("run-1", 4_000, 0, True)
    assert result.inserted == 1
    run = store.connection.execute(
        "SELECT run_id, pid, command, mode, started_wall_ns, ended_wall_ns, exit_code,"
        " clean_shutdown, code_version, config_json, pragmas_json FROM runs").fetchone()
    assert run[:10] == ("run-1", 4242, "replay x.gz", "shadow", 1_000, 4_000, 0, 1, "abc123",
                        '{"a": 1}')
    assert json.loads(run[10]) == store.pragmas
    beats = store.connection.execute(
        "SELECT hb_id, run_id, ts_wall_ns, interval_s, final, mode, trading_state, counters"
        " FROM heartbeats ORDER BY hb_id").fetchall()
    assert [b[4] for b in beats] == [0, 1]
    assert beats[1][:4] == (2, "run-1", 3_000, 10.0)
    assert json.loads(beats[1][7]) == counters


def test_start_run_without_end_leaves_no_clean_marker(store: SqliteStore) -> None:
    store.start_run("run-2", 1, "run", "shadow", 1, "v", "{}")
    assert store.connection.execute(
        "SELECT ended_wall_ns, exit_code, clean_shutdown FROM runs").fetchone() == (None, None, 0)


def test_checkpoint_truncates_wal(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    store.write_records([tick(n) for n in range(2000)])
    assert (tmp_path / "e.db-wal").stat().st_size > 0
    busy, _, _ = store.checkpoint()
    assert busy == 0
    assert (tmp_path / "e.db-wal").stat().st_size == 0
    store.close()


def test_is_lock_error_busy_and_locked_only() -> None:
    assert is_lock_error(sqlite3.OperationalError("database is locked"))
    assert not is_lock_error(sqlite3.OperationalError("disk I/O error"))
    err = sqlite3.OperationalError("x")
    err.sqlite_errorcode = 5 | (2 << 8)  # SQLITE_BUSY_SNAPSHOT
    assert is_lock_error(err)


def test_backoff_doubles_then_caps() -> None:
    assert [backoff_s(a, 0.05, 2.0) for a in range(1, 8)] == [
        0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert backoff_s(10_000, 0.05, 2.0) == 2.0


def test_write_records_abandoned_while_locked_raises_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    attempts: list[float] = []
    store: SqliteStore

    def sleep(delay: float) -> None:
        # Between retries the runtime forces the stop (deadline or second signal).
        attempts.append(delay)
        store.abandon()

    store = SqliteStore.open(path, busy_timeout_ms=50, retry_first_s=0.01, sleep=sleep)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreAbandoned, match="stop was forced") as info:
            store.write_records([tick(n) for n in range(10)])
    finally:
        other.execute("COMMIT")
        other.close()
    assert info.value.exit_code == 13
    assert len(attempts) == 1  # one retry, then the abandon was seen
    assert store.connection.execute("SELECT count(*) FROM ticks").fetchone() == (0,)
    store.close()
