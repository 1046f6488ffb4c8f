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

*Storage faults at the door* (docs/operations.md, "Storage faults"): the writer
creates the database owner-only (0600, whatever the umask; SQLite gives ``-wal``
and ``-shm`` the database file's mode), refuses a file it cannot write (read-only
file, immutable, read-only mount: exit 12, before anything is restored) and a file
that fails ``PRAGMA quick_check`` (exit 12). Readers (``open_readonly``: report,
digest, dashboard, healthcheck) refuse a file that fails the same check.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final, NamedTuple, Protocol

from engine import logs
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

OWNER_ONLY: Final = 0o600
"""Mode of the database files (db, ``-wal``, ``-shm``): they hold positions and orders."""

DB_SIDE_FILES: Final[tuple[str, ...]] = ("-wal", "-shm")
"""The files SQLite keeps beside a WAL database (same mode as the database file)."""

QUICK_CHECK_MAX_S: Final = 60.0
"""Longest the writer's start-up ``PRAGMA quick_check`` may run. It reads every page
(measured on this machine: 0.46 s for a 465 MB database with a warm cache, about 1 s
per GB; a cold disk reads at its own speed). Overload policy: past this the check is
interrupted, ``integrity_check_incomplete`` is logged and the engine starts anyway --
an unverified file is refused later by the first write or read that meets the damage
(exit 12), while refusing a big healthy file forever would be worse."""

ANNOUNCED_CHECK_BYTES: Final = 64 << 20
"""The writer logs ``integrity_check_started`` before checking a file (with its WAL) of
at least this size: about 1 s per GB, so a start that will take noticeably long
says what it is doing (and a stop asked for meanwhile is taken at once)."""

READER_QUICK_CHECK_MAX_S: Final = 2.0
"""The same bound for a reader (dashboard request, report, digest, healthcheck)."""

READER_RECHECK_S: Final = 60.0
"""A reader checks one database file (by device and inode) at most this often per
process, so dashboard requests do not each read the whole file."""

QUICK_CHECK_MESSAGES: Final = 3
"""``quick_check(N)`` stops after N problems; the first few name the damage well enough."""

_PROGRESS_OPCODES: Final = 10_000
"""The quick_check deadline is tested every this many SQLite VM instructions."""

_SQLITE_INTERRUPT: Final = 9


class DatabaseCorrupt(ConfigError, sqlite3.DatabaseError):
    """Raised when a database fails ``PRAGMA quick_check`` (or meets a corrupt page).

    Both a ``ConfigError`` (exit 12: no restart can repair the file) and a
    ``sqlite3.DatabaseError``, so every reader's existing handler for an unreadable
    database (``report``/``digest``: exit 12 one line; dashboard: 503) refuses it.
    """


class StopCheck(Protocol):
    """A stop that may be asked for while the database opens
    (``engine.runtime.startup.StartupStop``)."""

    def requested(self) -> bool:
        """Whether a stop was asked for (cheap: asked every ``_PROGRESS_OPCODES``)."""
        ...

    def check(self, step: str) -> None:
        """Raise the stop (``StoppedDuringStartup``) if one was asked for."""
        ...


class FileIdentity(NamedTuple):
    """Which file a path names: ``os.stat`` device and inode."""

    dev: int
    ino: int


def file_identity(path: str | Path) -> FileIdentity | None:
    """The identity of the file at ``path`` now, ``None`` if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return FileIdentity(st.st_dev, st.st_ino)


def make_owner_only(path: Path, *, create: bool) -> None:
    """Give ``path`` and its existing side files the mode ``OWNER_ONLY``; ``create`` it
    first if missing.

    The mode is set with ``chmod`` after creation, so the umask cannot widen or
    narrow it; an existing file readable by group or others is tightened.
    ``create`` opens a missing file, so it must only be used before SQLite opens it:
    closing *any* descriptor of a file drops every POSIX lock this process holds on
    it, SQLite's included -- another process would then think the engine gone, and
    delete the WAL under it.

    *Error handling:* ``ConfigError`` naming the file if it cannot be created or changed.
    """
    try:
        if create and not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), OWNER_ONLY)
            os.close(fd)
        for name in (path, *(Path(f"{path}{suffix}") for suffix in DB_SIDE_FILES)):
            try:
                mode = stat.S_IMODE(os.stat(name).st_mode)
            except FileNotFoundError:
                continue
            if mode != OWNER_ONLY:
                os.chmod(name, OWNER_ONLY)
    except OSError as exc:
        raise ConfigError(
            f"engine.db_path: cannot write database {str(path)!r}: {exc.strerror or exc}"
        ) from None


def unwritable_reason(path: Path) -> str | None:
    """Why the engine could not write the database at ``path`` (``None``: it can).

    SQLite silently opens an unwritable file read-only, so the engine would only
    fail at its first write; this asks the operating system first, without taking
    any lock (a database locked by another process is waited on later, with signals
    handled) and without opening anything (see ``make_owner_only``): ``access(2)``
    refuses writing to a read-only file or mount and to an immutable file, for root
    too. Checks the file and its existing side files, and the directory for
    creating missing ones.
    """
    for name in (path, *(Path(f"{path}{suffix}") for suffix in DB_SIDE_FILES)):
        if not name.exists():
            if not os.access(path.parent, os.W_OK):
                return f"cannot create {str(name)!r}: directory not writable"
            continue
        if not os.access(name, os.W_OK):
            return f"{str(name)!r} is not writable (permissions, read-only mount or immutable)"
    return None


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


def open_writer(
    path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, stop: StopCheck | None = None
) -> sqlite3.Connection:
    """Open the engine's one writer connection, apply the PRAGMAs and verify them.

    ``busy_timeout_ms`` exists for tests that need to meet a lock quickly; the
    engine always uses the default. It must read back exactly as asked; the
    contract's floor is checked by ``pragma_problems`` (healthchecks).

    *Resource handling:* the caller owns the connection and closes it. It may be
    used from any one thread at a time (``check_same_thread=False``); the
    persistence task serialises access with a ``CapacityLimiter(1)``.

    The file is created owner-only (``make_owner_only``), must be writable
    (``unwritable_reason``) and must pass a bounded ``PRAGMA quick_check``
    (``QUICK_CHECK_MAX_S``) before anything reads it. A ``stop`` asked for while it
    runs (SIGINT/SIGTERM at start-up) interrupts the check at once and raises
    ``stop``'s own exception, the connection closed: a big file is not read to the
    end for a process that is to stop.

    *Error handling:* ``ConfigError`` (exit 12) naming each PRAGMA that does not
    read back as required (the connection is closed first), when the file
    cannot be opened or written at all; ``DatabaseCorrupt`` (also exit 12) when
    it fails the integrity check.
    """
    db_path = Path(path)
    on_disk = str(path) not in IN_MEMORY
    if on_disk:
        _prepare_file(db_path)
    try:
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
        if _is_corruption(exc):
            raise DatabaseCorrupt(
                f"engine.db_path: {str(db_path)!r} is not a usable SQLite database: {exc}"
            ) from None
        raise ConfigError(f"cannot configure database {str(db_path)!r}: {exc}") from None
    if problems:
        conn.close()
        raise ConfigError(f"database {str(db_path)!r}: " + "; ".join(problems))
    size = _file_bytes(db_path) if on_disk else 0
    if size >= ANNOUNCED_CHECK_BYTES:  # a check that takes a while says so before it starts
        logs.info("integrity_check_started", path=str(db_path), bytes=size)
    try:
        verdict = quick_check(conn, QUICK_CHECK_MAX_S, stop)
    except sqlite3.Error as exc:  # too damaged to be checked at all
        conn.close()
        raise DatabaseCorrupt(_corrupt_message(db_path, str(exc), "engine.db_path")) from None
    except BaseException:  # the stop
        conn.close()
        raise
    if verdict is not None and verdict != "ok":
        conn.close()
        raise DatabaseCorrupt(_corrupt_message(db_path, verdict, "engine.db_path"))
    if on_disk:
        make_owner_only(db_path, create=False)  # -wal, -shm exist now: left wider before?
    return conn


def _file_bytes(path: Path) -> int:
    """The database's size with its WAL (what the check reads), 0 if unknown."""
    total = 0
    for name in (path, Path(f"{path}-wal")):
        try:
            total += name.stat().st_size
        except OSError:
            continue
    return total


IN_MEMORY: Final = (":memory:", "")
"""Names SQLite opens without a file (tests): no file checks apply."""


def _prepare_file(db_path: Path) -> None:
    """Directory made, the path a writable regular file (created owner-only)."""
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot open database {str(db_path)!r}: {exc}") from None
    if db_path.exists() and not db_path.is_file():
        raise ConfigError(f"engine.db_path: {str(db_path)!r} is not a regular file")
    if db_path.exists():
        reason = unwritable_reason(db_path)
        if reason is not None:
            raise ConfigError(f"engine.db_path: database is not writable: {reason}")
    make_owner_only(db_path, create=True)


_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _corrupt_message(path: Path, verdict: str, key: str = "") -> str:
    """``key``: the setting that named the file, for the writer (readers' commands add
    their own ``--db:``)."""
    return (
        f"{key + ': ' if key else ''}database {str(path)!r} fails PRAGMA quick_check"
        f" ({verdict}); move it away and restore a backup"
    )


def quick_check(
    conn: sqlite3.Connection, max_s: float, stop: StopCheck | None = None
) -> str | None:
    """``PRAGMA quick_check``, bounded: ``"ok"``, the problems found, or ``None`` if it ran
    out of time (``max_s``, by a progress handler; the connection's own handler, if
    any, is replaced and cleared afterwards). The same handler interrupts the check
    when ``stop`` is requested, and ``stop.check`` then raises.

    *Error handling:* a file too damaged to check at all raises ``sqlite3.DatabaseError``.
    """
    deadline = time.monotonic() + max_s
    expired = False

    def check() -> int:
        nonlocal expired
        if stop is not None and stop.requested():
            return 1
        expired = time.monotonic() > deadline
        return 1 if expired else 0

    conn.set_progress_handler(check, _PROGRESS_OPCODES)
    try:
        rows = conn.execute(f"PRAGMA quick_check({QUICK_CHECK_MESSAGES})").fetchall()
    except sqlite3.OperationalError as exc:
        if stop is not None:
            stop.check("PRAGMA quick_check")
        if expired or getattr(exc, "sqlite_errorcode", None) == _SQLITE_INTERRUPT:
            return None
        raise
    finally:
        conn.set_progress_handler(None, 0)
    if stop is not None:
        stop.check("PRAGMA quick_check")
    return "; ".join(str(row[0]) for row in rows)


class _CheckedFiles:
    """Which files a reader of this process verified, and when (``READER_RECHECK_S``).

    Keyed by device, inode, size and modification time: a recycled inode or a file
    the engine checkpointed into since is checked again."""

    lock = threading.Lock()
    checked_at: dict[tuple[int, int, int, int], float] = {}


def _version(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def open_readonly(
    path: str | Path, *, verify: bool = True, busy_timeout_ms: int | None = None
) -> sqlite3.Connection:
    """A connection that cannot write (``mode=ro``, ``query_only``): dashboard, digest, report,
    healthcheck. ``busy_timeout_ms`` bounds the wait on a lock (sqlite3's 5 s otherwise).

    With ``verify`` (the default) the file must pass a bounded ``PRAGMA quick_check``
    (``READER_QUICK_CHECK_MAX_S``; one that runs out of time is let through): a reader
    must not report, digest or serve numbers from a damaged file. A file version that
    passed (or ran out of time) is not checked again for ``READER_RECHECK_S``.

    *Error handling:* ``sqlite3.OperationalError`` if the file does not exist
    (read-only mode never creates a database); ``DatabaseCorrupt`` (a
    ``sqlite3.DatabaseError``) if it fails the check; the connection is then closed.
    """
    db_path = Path(path).resolve()
    conn = sqlite3.connect(db_path.as_uri() + "?mode=ro", uri=True, check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")
    if busy_timeout_ms is not None:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if verify:
        try:
            _verify_for_reader(conn, db_path)
        except BaseException:
            conn.close()
            raise
    return conn


def _verify_for_reader(conn: sqlite3.Connection, path: Path) -> None:
    identity = _version(path)
    now = time.monotonic()
    if identity is not None:
        with _CheckedFiles.lock:
            at = _CheckedFiles.checked_at.get(identity)
        if at is not None and now - at < READER_RECHECK_S:
            return
    try:
        verdict = quick_check(conn, READER_QUICK_CHECK_MAX_S)
    except sqlite3.DatabaseError as exc:
        if _is_corruption(exc):
            raise DatabaseCorrupt(_corrupt_message(path, str(exc))) from None
        raise
    if verdict is not None and verdict != "ok":
        raise DatabaseCorrupt(_corrupt_message(path, verdict))
    # "ok", or out of time (a file too big to check in the bound): either way not
    # checked again for READER_RECHECK_S, so requests do not each pay the bound.
    if identity is not None:
        with _CheckedFiles.lock:
            if len(_CheckedFiles.checked_at) > 64:  # bounded: a long-lived dashboard
                _CheckedFiles.checked_at.clear()
            _CheckedFiles.checked_at[identity] = now
