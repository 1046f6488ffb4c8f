"""Connections: PRAGMAs applied and read back (I5, S1), read-only readers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from engine.exits import ConfigError, ExitCode
from engine.store.connection import (
    MIN_BUSY_TIMEOUT_MS,
    REQUIRED_PRAGMAS,
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
