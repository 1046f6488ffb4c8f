"""The dashboard's only way into the database: read-only connections with a query deadline.

Why a new connection per request: it is cheap (well under a millisecond), each
request then reads one consistent WAL snapshot, a database that appears later
(the engine starts after the dashboard) or is replaced is simply picked up, and
no connection is ever shared between worker threads.

Why it cannot write: the file is opened with ``mode=ro`` (SQLite refuses every
write with "attempt to write a readonly database") and ``PRAGMA query_only``
is switched on as a second lock (both by ``engine.store.connection.open_readonly``).
A reader never blocks the engine's writer in WAL mode.

Why a deadline: every query is bounded by parameters, but a wide time window
over a big tick table can still take long; a progress handler aborts any
statement running past ``QUERY_DEADLINE_S`` so one request cannot hold a worker
thread (and a CPU) hostage. The request then gets 503 with a message.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from engine.store.connection import open_readonly

QUERY_DEADLINE_S: Final = 5.0
"""Longest a single request may spend in SQLite. Overload policy: the statement is
interrupted and the request answered 503 "query took too long; narrow the window"."""

READ_BUSY_TIMEOUT_MS: Final = 2000
"""A reader meets a lock only while the WAL index is being rebuilt (a checkpoint
after a crash); wait this long, then fail the request with 503."""

PROGRESS_OPCODES: Final = 10_000
"""The deadline is checked every this many SQLite VM instructions (~ms granularity)."""


class DatabaseUnavailable(Exception):
    """Raised by ``ReadOnlyDatabase.connect`` when the file is missing or cannot be opened."""


class QueryTooSlow(Exception):
    """Raised when a request's queries ran past ``QUERY_DEADLINE_S`` and were interrupted."""


class ReadOnlyDatabase:
    """A path, and the rules for reading it. Thread-safe: it holds no connection."""

    def __init__(self, path: str | Path, *, deadline_s: float = QUERY_DEADLINE_S) -> None:
        self.path = Path(path)
        self.deadline_s = deadline_s

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh read-only connection, closed on exit.

        *Error handling:* ``DatabaseUnavailable`` when the file is missing or
        unreadable; ``QueryTooSlow`` when a statement was interrupted by the
        deadline; ``DatabaseUnavailable`` too for any other ``sqlite3.DatabaseError``
        a query meets (a locked file, a file that is not a database, corruption).
        """
        if not self.path.is_file():
            raise DatabaseUnavailable(f"database {str(self.path)!r} does not exist (yet)")
        try:
            conn = open_readonly(self.path, busy_timeout_ms=READ_BUSY_TIMEOUT_MS)
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(f"cannot open database {str(self.path)!r}: {exc}") from None
        deadline = time.monotonic() + self.deadline_s
        expired = False

        def check() -> int:
            nonlocal expired
            if time.monotonic() > deadline:
                expired = True
                return 1  # non-zero interrupts the running statement
            return 0

        conn.set_progress_handler(check, PROGRESS_OPCODES)
        try:
            yield conn
        except sqlite3.DatabaseError as exc:  # OperationalError, "file is not a database", ...
            if expired:
                raise QueryTooSlow(
                    f"query took longer than {self.deadline_s:g} s; narrow the window"
                ) from None
            raise DatabaseUnavailable(f"database error: {exc}") from None
        finally:
            conn.close()
