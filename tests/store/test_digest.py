"""The digest: canonical, order-independent, sensitive to every stored value (S8)."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import tempfile
from decimal import Decimal
from pathlib import Path

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
    Tick,
    Veto,
    VetoReason,
)
from engine.store.digest import digest, digest_path
from engine.store.rows import table_counts
from engine.store.schema import DIGEST_TABLES
from engine.store.sqlite_store import SqliteStore
from tests.fakes.engine_process import run_engine


def chain(n: int, fee: str = "0.0998221616235") -> list[Record]:
    t = Tick(event_id=f"binance:BTCUSDT:{n}", venue="binance", symbol="BTCUSDT", trade_id=n,
             ts_event=n * 1000, ts_recv=n * 1000 + 1, price=Decimal("61234.50"),
             qty=Decimal("0.001"))
    sig = Signal(signal_id=f"sig:{t.event_id}", symbol="BTCUSDT",
                 side=Side.BUY if n % 2 else Side.SELL, ts_event=t.ts_event, ts_recv=t.ts_recv,
                 price=t.price, cause_id=t.event_id)
    order = Order(order_id=f"ord:{sig.signal_id}", signal_id=sig.signal_id, mode="shadow",
                  symbol="BTCUSDT", side=sig.side, order_type=OrderType.MARKET,
                  qty=Decimal("0.00163"), price=Decimal("61240.62345"), ts_event=t.ts_event)
    events = [OrderEvent(order_id=order.order_id, seq=s, state=state, ts_event=t.ts_event,
                         reason="", filled_qty=Decimal(f), leaves_qty=Decimal(lv))
              for s, state, f, lv in ((0, OrderState.SUBMITTED, "0", "0.00163"),
                                      (1, OrderState.FILLED, "0.00163", "0"))]
    fill = Fill(fill_id=f"fill:{order.order_id}:0", order_id=order.order_id, symbol="BTCUSDT",
                side=sig.side, qty=Decimal("0.00163"), price=Decimal("61240.62345"),
                fee=Decimal(fee), cash_delta=Decimal("-99.92"), position_delta=Decimal("0.00163"),
                ts_event=t.ts_event)
    veto = Veto(veto_id=f"veto:sig:{n}", signal_id=f"sig:{n}", symbol="BTCUSDT",
                reason=VetoReason.RISK_CAP, detail="exposure 1000 > 500", ts_event=t.ts_event)
    return [t, sig, order, *events, fill, veto]


def fill_db(path: Path, batches: list[list[Record]]) -> SqliteStore:
    store = SqliteStore.open(path)
    for batch in batches:
        store.write_records(batch)
    return store


def test_digest_different_insertion_order_and_batching_equal(tmp_path: Path) -> None:
    records = [r for n in range(1, 30) for r in chain(n)]
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    a = fill_db(tmp_path / "a.db", [records])
    b = fill_db(tmp_path / "b.db", [shuffled[i:i + 5] for i in range(0, len(shuffled), 5)])
    assert digest(a.connection) == digest(b.connection)
    assert table_counts(a.connection) == table_counts(b.connection)
    a.close()
    b.close()


def test_digest_one_value_changed_differs(tmp_path: Path) -> None:
    a = fill_db(tmp_path / "a.db", [chain(1), chain(2)])
    b = fill_db(tmp_path / "b.db", [chain(1), chain(2, fee="0.0998221616236")])
    assert digest(a.connection) != digest(b.connection)
    a.close()
    b.close()


def test_digest_same_number_other_text_differs(tmp_path: Path) -> None:
    # "0.10" and "0.1" are equal numbers but different stored facts.
    a = fill_db(tmp_path / "a.db", [chain(1, fee="0.1")])
    b = fill_db(tmp_path / "b.db", [chain(1, fee="0.10")])
    assert digest(a.connection) != digest(b.connection)
    a.close()
    b.close()


def test_digest_ignores_ticks_heartbeats_runs(tmp_path: Path) -> None:
    a = fill_db(tmp_path / "a.db", [chain(1)])
    before = digest(a.connection)
    tick = chain(99)[0]
    a.write_records([tick])
    a.start_run("r", 1, "run", "shadow", 123, "v", "{}")
    a.write_heartbeat("r", 456, 10.0, {"tick_count": 1}, True, "shadow", "RUNNING")
    assert digest(a.connection) == before
    a.close()


def test_digest_empty_database_is_header_lines_only(tmp_path: Path) -> None:
    store = fill_db(tmp_path / "a.db", [])
    expected = hashlib.sha256()
    for spec in DIGEST_TABLES:
        cols = ",".join(f'"{c}"' for c in spec.hashed_columns)
        expected.update(f'["table","{spec.table}",[{cols}]]\n'.encode())
    assert digest(store.connection) == expected.hexdigest()
    store.close()


def test_digest_row_framing_is_json_arrays(tmp_path: Path) -> None:
    store = fill_db(tmp_path / "a.db", [chain(1)[1:2]])  # one signal only
    expected = hashlib.sha256()
    for spec in DIGEST_TABLES:
        cols = ",".join(f'"{c}"' for c in spec.hashed_columns)
        expected.update(f'["table","{spec.table}",[{cols}]]\n'.encode())
        if spec.table == "signals":
            expected.update(b'["sig:binance:BTCUSDT:1","BTCUSDT","BUY",1000,1001,"61234.50",'
                            b'"binance:BTCUSDT:1"]\n')
    assert digest(store.connection) == expected.hexdigest()
    store.close()


def test_digest_path_equals_digest_of_connection(tmp_path: Path) -> None:
    store = fill_db(tmp_path / "a.db", [chain(1), chain(2)])
    assert digest_path(tmp_path / "a.db") == digest(store.connection)
    store.close()
    assert digest_path(tmp_path / "a.db") == digest_path(tmp_path / "a.db")


def test_table_counts_every_table(tmp_path: Path) -> None:
    store = fill_db(tmp_path / "a.db", [chain(1), chain(2)])
    counts = table_counts(store.connection)
    for table, n in {"ticks": 2, "signals": 2, "vetoes": 2, "orders": 2, "order_events": 4,
                     "fills": 2, "heartbeats": 0, "runs": 0}.items():
        assert counts[table] == n, table
    store.close()


@settings(max_examples=15, deadline=None)
@given(st.permutations(list(range(12))), st.integers(min_value=1, max_value=12))
def test_digest_independent_of_order_property(order: list[int], chunk: int) -> None:
    records = [r for n in range(1, 4) for r in chain(n)]  # 24 records
    ordered = [records[i] for i in order] + records[12:]
    with tempfile.TemporaryDirectory() as d:
        a = fill_db(Path(d) / "a.db", [records])
        b = fill_db(Path(d) / "b.db", [ordered[i:i + chunk] for i in range(0, len(ordered), chunk)])
        try:
            assert digest(a.connection) == digest(b.connection)
        finally:
            a.close()
            b.close()


@pytest.mark.parametrize("content", ["not_sqlite", "no_tables"])
def test_digest_cli_not_an_engine_database_config_exit_12_no_traceback(
    tmp_path: Path, content: str
) -> None:
    db = tmp_path / "other.db"
    if content == "not_sqlite":
        db.write_bytes(b"this is a text file, not SQLite\n" * 64)
    else:
        conn = sqlite3.connect(db)
        with conn:
            conn.execute("CREATE TABLE unrelated (x)")
        conn.close()
    done = run_engine(["digest", "--db", str(db)])
    assert done.returncode == 12, done.stderr[-500:]
    assert "Traceback" not in done.stderr
    assert f"--db: {db} is not a readable engine database" in done.stderr


def test_a_signals_notional_and_reason_are_stored_but_not_hashed(tmp_path: Path) -> None:
    """Stored so nothing accepted is lost; outside the digest (every committed digest holds)."""
    [signal] = [r for r in chain(1) if isinstance(r, Signal)]
    sized = msgspec.structs.replace(signal, notional=Decimal("50"), reason="momentum")
    plain_db = fill_db(tmp_path / "plain.db", [[signal]])
    sized_db = fill_db(tmp_path / "sized.db", [[sized]])
    assert digest(plain_db.connection) == digest(sized_db.connection)
    row = sized_db.connection.execute("SELECT notional, reason FROM signals").fetchone()
    assert tuple(row) == ("50", "momentum")
    plain_db.close()
    sized_db.close()
