"""Connections: PRAGMAs applied and read back (I5, S1), read-only readers."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from engine.exits import ConfigError, ExitCode
from engine.store import connection
from engine.store.connection import (
    MIN_BUSY_TIMEOUT_MS,
    OWNER_ONLY,
    REQUIRED_PRAGMAS,
    DatabaseCorrupt,
    check_pragmas,
    file_pragma_problems,
    open_readonly,
    open_writer,
    pragma_problems,
    read_pragmas,
)


def test_open_writer_pragmas_read_back_as_required(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "e.db")
    try:
        assert read_pragmas(conn) == {"journal_mode": "wal", "synchronous": 1,
                                      "busy_timeout": 5000, "temp_store": 2}
        assert pragma_problems(conn) == []
    finally:
        conn.close()


def test_open_writer_wal_persisted_in_file_seen_by_new_connection(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    writer = open_writer(path)
    try:
        writer.execute("CREATE TABLE t (x INTEGER)")
        writer.execute("INSERT INTO t VALUES (1)")
        assert (tmp_path / "e.db-wal").exists()
        other = sqlite3.connect(path)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert file_pragma_problems(other) == []
        finally:
            other.close()
    finally:
        writer.close()


def test_open_writer_missing_parent_dir_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "e.db"
    open_writer(path).close()
    assert path.exists()


def test_open_writer_autocommit_and_any_thread(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "e.db")
    errors: list[BaseException] = []

    def use() -> None:
        try:
            conn.execute("CREATE TABLE t (x INTEGER)")
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    try:
        assert conn.isolation_level is None
        thread = threading.Thread(target=use)
        thread.start()
        thread.join()
        assert errors == []
        assert not conn.in_transaction
    finally:
        conn.close()


def test_open_writer_pragma_not_holding_raises_config_error_naming_it() -> None:
    # An in-memory database cannot be put in WAL mode: journal_mode reads back "memory".
    with pytest.raises(ConfigError, match="journal_mode") as info:
        open_writer(":memory:")
    assert info.value.exit_code == ExitCode.CONFIG


def test_open_writer_unopenable_path_raises_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot open database"):
        open_writer(blocker / "e.db")


def test_open_writer_not_a_database_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match=r"engine\.db_path: .* is not a usable SQLite database"):
        open_writer(path)


def test_open_writer_custom_busy_timeout_reads_back(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "e.db", busy_timeout_ms=50)
    try:
        assert read_pragmas(conn)["busy_timeout"] == 50
        assert pragma_problems(conn) == [
            f"PRAGMA busy_timeout is 50, required >= {MIN_BUSY_TIMEOUT_MS}"]
    finally:
        conn.close()


def test_check_pragmas_each_violation_named() -> None:
    problems = check_pragmas({"journal_mode": "delete", "synchronous": 2,
                              "busy_timeout": 999, "temp_store": 0})
    assert len(problems) == 4
    for name, problem in zip(REQUIRED_PRAGMAS, problems, strict=True):
        assert f"PRAGMA {name} " in problem


def test_check_pragmas_subset_checks_only_given_names() -> None:
    assert check_pragmas({"journal_mode": "WAL"}) == []
    assert check_pragmas({}) == []


def test_open_readonly_reads_but_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    writer = open_writer(path)
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("INSERT INTO t VALUES (7)")
    reader = open_readonly(path)
    try:
        assert reader.execute("SELECT x FROM t").fetchall() == [(7,)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("INSERT INTO t VALUES (8)")
    finally:
        reader.close()
        writer.close()


def test_open_readonly_missing_file_raises_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(sqlite3.OperationalError):
        open_readonly(path).execute("SELECT 1 FROM sqlite_master")
    assert not path.exists()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_open_writer_db_wal_and_shm_owner_only_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    path = tmp_path / "e.db"
    before = os.umask(umask)
    try:
        conn = open_writer(path)
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    finally:
        os.umask(before)
    try:
        modes = {
            name: stat.S_IMODE(os.stat(f"{path}{name}").st_mode) for name in ("", "-wal", "-shm")
        }
    finally:
        conn.close()
    assert modes == {"": OWNER_ONLY, "-wal": OWNER_ONLY, "-shm": OWNER_ONLY}


def test_open_writer_existing_files_readable_by_others_tightened(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    open_writer(path).close()
    os.chmod(path, 0o644)
    conn = open_writer(path)
    conn.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == OWNER_ONLY


def test_open_writer_path_that_is_not_a_regular_file_refused_naming_the_key(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"engine\.db_path") as info:
        open_writer(tmp_path)  # a directory
    assert info.value.exit_code == ExitCode.CONFIG
    with pytest.raises(ConfigError, match=r"engine\.db_path"):
        open_writer("/dev/null")


def corrupt(path: Path) -> None:
    """A database with enough pages, one in the middle overwritten with garbage."""
    conn = open_writer(path)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(f"row {i:06d} " * 8,) for i in range(5000)])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with path.open("r+b") as f:
        f.seek(page_size * (pages // 2) + 16)
        f.write(b"\xff" * 64)


def test_open_writer_corrupt_page_refused_as_database_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    corrupt(path)
    with pytest.raises(DatabaseCorrupt, match="quick_check") as info:
        open_writer(path)
    assert info.value.exit_code == ExitCode.CONFIG


def test_open_readonly_corrupt_page_refused_unless_told_not_to_verify(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    corrupt(path)
    with pytest.raises(DatabaseCorrupt, match="quick_check") as info:
        open_readonly(path)
    assert isinstance(info.value, sqlite3.DatabaseError)  # readers' handlers catch it
    open_readonly(path, verify=False).close()


def test_open_readonly_remembers_a_verified_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "e.db"
    open_writer(path).close()
    checks: list[float] = []
    real = connection.quick_check

    def counting(conn: sqlite3.Connection, max_s: float) -> str | None:
        checks.append(max_s)
        return real(conn, max_s)

    monkeypatch.setattr(connection, "quick_check", counting)
    for _ in range(3):
        open_readonly(path).close()
    assert checks == [connection.READER_QUICK_CHECK_MAX_S]


def test_quick_check_out_of_time_is_not_a_verdict(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    conn = open_writer(path)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(str(i) * 50,) for i in range(20000)])
    try:
        assert connection.quick_check(conn, 0.0) is None  # interrupted at once
        assert connection.quick_check(conn, 60.0) == "ok"  # and the handler was cleared
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (20000,)
    finally:
        conn.close()


def test_open_readonly_check_out_of_time_lets_the_file_through_and_is_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "e.db"
    open_writer(path).close()
    checks: list[float] = []

    def out_of_time(conn: sqlite3.Connection, max_s: float) -> str | None:
        checks.append(max_s)
        return None

    monkeypatch.setattr(connection, "quick_check", out_of_time)
    for _ in range(3):
        open_readonly(path).close()
    assert len(checks) == 1  # a file too big to check costs one bound per READER_RECHECK_S
