"""SqliteStore under storage faults: error classification, file identity, live retry counts."""

from __future__ import annotations

import os
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.events import Tick
from engine.exits import EngineError, ExitCode
from engine.store.connection import DatabaseCorrupt
from engine.store.sqlite_store import (
    ABANDONED_BUSY_TIMEOUT_MS,
    SqliteStore,
    StorageFailed,
    StorageFull,
    StorageUnusable,
    StoreAbandoned,
    StoreFileReplaced,
    storage_fault,
)


def tick(n: int) -> Tick:
    return Tick(event_id=f"binance:BTCUSDT:{n}", venue="binance", symbol="BTCUSDT", trade_id=n,
                ts_event=1_723_100_000_000_000_000 + n, ts_recv=1_723_100_000_000_500_000 + n,
                price=Decimal("61000.1"), qty=Decimal("0.001"))


def sqlite_error(code: int, name: str) -> sqlite3.Error:
    exc = sqlite3.OperationalError(f"error {name}")
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize(
    ("code", "name", "kind", "exit_code"),
    [
        (13, "SQLITE_FULL", StorageFull, ExitCode.OVERLOAD),
        (10, "SQLITE_IOERR", StorageFailed, ExitCode.OVERLOAD),
        (10 | (4 << 8), "SQLITE_IOERR_FSYNC", StorageFailed, ExitCode.OVERLOAD),
        (8, "SQLITE_READONLY", StorageUnusable, ExitCode.CONFIG),
        (8 | (1 << 8), "SQLITE_READONLY_RECOVERY", StorageUnusable, ExitCode.CONFIG),
        (14, "SQLITE_CANTOPEN", StorageUnusable, ExitCode.CONFIG),
        (3, "SQLITE_PERM", StorageUnusable, ExitCode.CONFIG),
        (11, "SQLITE_CORRUPT", DatabaseCorrupt, ExitCode.CONFIG),
        (26, "SQLITE_NOTADB", DatabaseCorrupt, ExitCode.CONFIG),
    ],
)
def test_storage_fault_maps_each_sqlite_error_to_its_exit_code(
    code: int, name: str, kind: type[Exception], exit_code: ExitCode
) -> None:
    fault = storage_fault(sqlite_error(code, name), "writing")
    assert type(fault) is kind
    assert getattr(fault, "exit_code", None) == exit_code
    assert name in str(fault)


@pytest.mark.parametrize(("code", "name"), [(5, "SQLITE_BUSY"), (6, "SQLITE_LOCKED"),
                                            (19, "SQLITE_CONSTRAINT"), (1, "SQLITE_ERROR")])
def test_storage_fault_leaves_locks_and_constraint_errors_alone(code: int, name: str) -> None:
    assert storage_fault(sqlite_error(code, name), "writing") is None
    assert storage_fault(sqlite3.OperationalError("no code"), "writing") is None


@pytest.mark.parametrize("how", ["deleted", "replaced", "wal deleted"])
def test_write_after_file_removed_or_replaced_raises_once_then_writes_the_open_file(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "engine.db"
    store = SqliteStore.open(db)
    try:
        store.write_records([tick(1)])
        if how == "deleted":
            db.unlink()
        elif how == "wal deleted":
            Path(f"{db}-wal").unlink()
        else:
            other = tmp_path / "other.db"
            SqliteStore.open(other).close()
            os.replace(other, db)
        with pytest.raises(StoreFileReplaced, match=r"engine\.db_path") as info:
            store.write_records([tick(2)])
        assert info.value.exit_code == ExitCode.CONFIG
        # Reported once: the stop's bookkeeping goes on into the file the run wrote.
        store.write_records([tick(3)])
        assert store.connection.execute("SELECT count(*) FROM ticks").fetchone() == (2,)
    finally:
        store.close()


def test_write_with_file_unchanged_passes_the_identity_check(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    store = SqliteStore.open(db)
    try:
        for n in range(3):
            store.write_records([tick(n)])
            store.check_identity()
        other = sqlite3.connect(db)  # another connection opening and closing changes nothing
        other.execute("SELECT count(*) FROM ticks").fetchone()
        other.close()
        store.write_records([tick(9)])
    finally:
        store.close()


def test_every_lock_retry_reported_at_once_while_the_write_is_still_stuck(
    tmp_path: Path,
) -> None:
    db = tmp_path / "engine.db"
    seen_at_sleep: list[int] = []
    reported: list[int] = []
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def sleep(_delay: float) -> None:
        seen_at_sleep.append(len(reported))  # the counter moved before the wait
        if len(seen_at_sleep) == 3:
            locker.execute("COMMIT")

    store = SqliteStore.open(db, busy_timeout_ms=1, sleep=sleep)
    store.on_lock_retry = lambda: reported.append(1)
    locker.execute("BEGIN IMMEDIATE")
    try:
        result = store.write_records([tick(1)])
    finally:
        locker.close()
        store.close()
    assert seen_at_sleep == [1, 2, 3]
    assert result.lock_retries == len(reported) == 3


def test_after_abandon_writes_wait_briefly_and_checkpoint_never_waits(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    store = SqliteStore.open(db, busy_timeout_ms=600_000)  # a wait that would hang the test
    locker = sqlite3.connect(db, isolation_level=None)
    try:
        store.write_records([tick(1)])
        locker.execute("BEGIN IMMEDIATE")
        store.abandon()
        with pytest.raises(StoreAbandoned):
            store.write_heartbeat("run", 0, 1.0, {}, True, "shadow", "ACTIVE")
        assert store.connection.execute("PRAGMA busy_timeout").fetchone() == (
            ABANDONED_BUSY_TIMEOUT_MS,
        )
        busy, _, _ = store.checkpoint()  # PASSIVE: returns although the lock is held
        assert busy in (0, 1)
    finally:
        locker.close()
        store.close()


@given(code=st.integers(min_value=0, max_value=0xFFFF))
def test_storage_fault_any_sqlite_code_is_no_fault_or_an_exit_12_or_13(code: int) -> None:
    fault = storage_fault(sqlite_error(code, "SQLITE_X"), "writing")
    if code & 0xFF in (5, 6):  # locks are retried by the store, never a fault
        assert fault is None
    if fault is not None:
        assert isinstance(fault, EngineError)
        assert fault.exit_code in (ExitCode.CONFIG, ExitCode.OVERLOAD)
        assert (fault.exit_code is ExitCode.OVERLOAD) == (code & 0xFF in (10, 13))
