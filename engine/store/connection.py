"""Opening the database: one writer connection with verified PRAGMAs, and read-only readers.

The engine opens its writer connection itself (not ``sqlite_utils.Database(path)``,
which insists on ``check_same_thread=True`` and so fails from a Trio worker
thread). The connection is in autocommit mode (``isolation_level=None``): the
store writes ``BEGIN IMMEDIATE`` / ``COMMIT`` itself, so a batch is exactly one
transaction.

PRAGMAs (I5, S1) are applied and then *read back*: a setting the database did
not accept (``journal_mode`` stays ``memory`` or ``delete`` on some file
systems, a read-only file, ...) is a configuration problem and stops the engine
with exit 12 before anything is written. Only ``journal_mode`` is stored in the
database file; the other three are per connection, so another process (a
healthcheck) can verify them only from what the engine recorded -- the store
writes them into ``runs.pragmas_json`` -- and checks the file with
``file_pragma_problems``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from engine.exits import ConfigError

BUSY_TIMEOUT_MS: Final = 5000
"""How long SQLite itself waits for a lock before a write fails with "database is locked".
Overload policy: past this the store rolls back and retries the same batch with
backoff (``engine.store.sqlite_store``); nothing is dropped."""

MIN_BUSY_TIMEOUT_MS: Final = 1000
"""The contract's floor for ``busy_timeout`` (I5); a smaller value is refused (exit 12)."""

SYNCHRONOUS_NORMAL: Final = 1
TEMP_STORE_MEMORY: Final = 2

REQUIRED_PRAGMAS: Final[Mapping[str, str | int]] = {
    "journal_mode": "wal",
    "synchronous": SYNCHRONOUS_NORMAL,
    "busy_timeout": BUSY_TIMEOUT_MS,
    "temp_store": TEMP_STORE_MEMORY,
}
"""The values the writer applies. Read back, each must equal this value, except
``busy_timeout`` which must be at least ``MIN_BUSY_TIMEOUT_MS``."""

FILE_PRAGMAS: Final[tuple[str, ...]] = ("journal_mode",)
"""The PRAGMAs persisted in the database file (visible to any later connection)."""


def read_pragmas(conn: sqlite3.Connection) -> dict[str, object]:
    """The current value of each required PRAGMA on this connection."""
    values: dict[str, object] = {}
    for name in REQUIRED_PRAGMAS:
        row = conn.execute(f"PRAGMA {name}").fetchone()
        values[name] = row[0] if row is not None else None
    return values


def check_pragmas(values: Mapping[str, object]) -> list[str]:
    """One message per required PRAGMA that does not hold in ``values`` (pure).

    Only the names present in ``values`` are checked, so a healthcheck can pass
    the subset it was able to read.
    """
    problems: list[str] = []
    for name, wanted in REQUIRED_PRAGMAS.items():
        if name not in values:
            continue
        got = values[name]
        if name == "busy_timeout":
            ok = isinstance(got, int) and got >= MIN_BUSY_TIMEOUT_MS
            want = f">= {MIN_BUSY_TIMEOUT_MS}"
        elif isinstance(wanted, str):
            ok = isinstance(got, str) and got.lower() == wanted
            want = wanted
        else:
            ok = got == wanted
            want = str(wanted)
        if not ok:
            problems.append(f"PRAGMA {name} is {got!r}, required {want}")
    return problems


def pragma_problems(conn: sqlite3.Connection) -> list[str]:
    """What does not hold on this connection (``[]`` when all is well)."""
    return check_pragmas(read_pragmas(conn))


def file_pragma_problems(conn: sqlite3.Connection) -> list[str]:
    """What does not hold in the database file itself, from any connection (healthchecks)."""
    values = read_pragmas(conn)
    return check_pragmas({name: values[name] for name in FILE_PRAGMAS})


def open_writer(path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """Open the engine's one writer connection, apply the PRAGMAs and verify them.

    ``busy_timeout_ms`` exists for tests that need to meet a lock quickly; the
    engine always uses the default. It must read back exactly as asked; the
    contract's floor is checked by ``pragma_problems`` (healthchecks).

    *Resource handling:* the caller owns the connection and closes it. It may be
    used from any one thread at a time (``check_same_thread=False``); the
    persistence task serialises access with a ``CapacityLimiter(1)``.

    *Error handling:* ``ConfigError`` (exit 12) naming each PRAGMA that does not
    read back as required (the connection is closed first), or when the file
    cannot be opened at all.
    """
    db_path = Path(path)
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            db_path,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open database {str(db_path)!r}: {exc}") from None
    try:
        wanted = {**REQUIRED_PRAGMAS, "busy_timeout": busy_timeout_ms}
        for name, value in wanted.items():
            conn.execute(f"PRAGMA {name} = {value}")
        got = read_pragmas(conn)
        problems = check_pragmas({k: v for k, v in got.items() if k != "busy_timeout"})
        if got["busy_timeout"] != busy_timeout_ms:
            problems.append(
                f"PRAGMA busy_timeout is {got['busy_timeout']!r}, required {busy_timeout_ms}"
            )
    except sqlite3.Error as exc:
        conn.close()
        raise ConfigError(f"cannot configure database {str(db_path)!r}: {exc}") from None
    if problems:
        conn.close()
        raise ConfigError(f"database {str(db_path)!r}: " + "; ".join(problems))
    return conn


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A connection that cannot write (``mode=ro``): dashboard, digest, healthcheck.

    *Error handling:* ``sqlite3.OperationalError`` if the file does not exist
    (read-only mode never creates a database).
    """
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)
