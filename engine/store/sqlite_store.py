"""The SQLite adapter of the ``Persistence`` port: batched, idempotent, lock-tolerant writes.

Every method blocks (disk I/O, lock waits, retry sleeps) and is meant to run in
the persistence task's worker thread (``trio.to_thread.run_sync`` with a shared
``CapacityLimiter(1)``), never on the Trio thread (I6). One store owns one
writer connection; calls must not overlap.

*Lock handling (S12):* ``busy_timeout`` makes SQLite wait for a lock itself;
if the write still fails with "database is locked"/"busy", the transaction is
rolled back and the *same* batch retried after a capped exponential backoff,
forever: a batch is never dropped, and the runtime's drain deadline bounds the
wait: when a drain is forced (deadline passed, second signal) the runtime calls
``abandon()`` and the retry loop raises ``StoreAbandoned`` instead of waiting on
(a worker thread cannot be cancelled from outside; this is how it is told to stop).
Each retry is logged, reported at once to ``on_lock_retry`` (the heartbeat's
``persist_retries``, live even while the write is still stuck) and counted in the
returned ``WriteResult``. Once abandoned, a write (the final bookkeeping of a forced
stop) makes one attempt with a short lock wait (``ABANDONED_BUSY_TIMEOUT_MS``), so a
stop is never held up by another ``busy_timeout``.

*Storage faults* are translated here, at the edge, into exceptions that carry the
exit code (docs/operations.md, "Storage faults"): disk full -> ``StorageFull`` (13,
retried by the persistence task while the engine drains), an I/O error ->
``StorageFailed`` (13), a file that became read-only or unopenable ->
``StorageUnusable`` (12), a corrupt page -> ``DatabaseCorrupt`` (12). Before every
transaction the path is compared with the file the connection opened (device and
inode): a database deleted or replaced under the running engine raises
``StoreFileReplaced`` (12) instead of writing on into a file nobody will ever read.
A constraint broken by a bad record is not a storage fault: it propagates as is.

*Why multi-row INSERTs, not ``executemany``:* the writer thread shares the GIL
with the Trio thread. ``executemany`` releases the GIL around every row's
``sqlite3_step`` and must win it back before the next row; while the Trio
thread is busy decoding, each re-acquisition can wait out the interpreter's
switch interval (5 ms), so the writer crawls (measured: 13k rows/s against a
busy thread, 400k alone). One ``INSERT ... SELECT * FROM (VALUES (...), ...)``
statement of up to ``INSERT_CHUNK_ROWS`` rows binds its parameters with the GIL,
then does all of its B-tree work in ONE step without it -- so a whole batch
costs a handful of GIL round trips (start, ``BEGIN``, one statement per table,
``COMMIT``), and about half the per-row CPU of ``executemany`` even alone.
Values are bound exactly as ``executemany`` binds them, rows go in in the same
order, and a conflicting id is skipped the same way (also against an earlier
row of the same statement). Statements have a power-of-two number of rows (a
few cached statements per table serve any count): the rest is padded with
NULLs that ``LIMIT`` keeps out.

*Run ids:* every trading row carries ``run_id``, the run that first wrote it
(``start_run`` sets it; docs/operations.md "One database, one account"). It is
bound ONCE per statement (``SELECT *, ? FROM (VALUES ...)``), not once per row,
so it costs the write path one parameter per statement. A duplicate id keeps
the row -- and so the run id -- that was stored first (I3). ``run_id`` is not
one of a ``RecordTable``'s mapped columns, so the digest never sees it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from functools import cache
from itertools import chain
from pathlib import Path
from typing import Any, Final, TypeVar

from engine import logs
from engine.core.events import Record, Tick
from engine.exits import ConfigError, Overload
from engine.ports import WriteResult
from engine.store.connection import (
    BUSY_TIMEOUT_MS,
    DB_SIDE_FILES,
    DatabaseCorrupt,
    FileIdentity,
    StopCheck,
    file_identity,
    open_writer,
    read_pragmas,
)
from engine.store.runs import RunIdentity, counts_json, identity_columns
from engine.store.schema import (
    HEARTBEAT_COLUMNS,
    RECORD_TABLES,
    RecordTable,
    Row,
    SqlValue,
    migrate,
)
from engine.store.tape import TAPE_TABLE, tape_rows

RETRY_BACKOFF_FIRST_S: Final = 0.05
"""Sleep before the first retry of a locked write (after busy_timeout already waited)."""

RETRY_BACKOFF_MAX_S: Final = 2.0
"""Cap of the doubling backoff between retries. Overload policy: retry forever at
this pace; the drain deadline (exit 13) is the only bound."""

INSERT_CHUNK_ROWS: Final = 4096
"""Most rows per INSERT statement (fewer for a wide table, see ``largest_chunk``:
4,095 for the 8 tick columns, so a 16,384-record persistence batch is 4-5
statements; bigger statements measured no faster)."""

MAX_STATEMENT_PARAMS: Final = 32766
"""SQLite's default ``SQLITE_MAX_VARIABLE_NUMBER`` (builds may allow more, never
less since 3.32): a wide table gets fewer rows per statement."""

ABANDONED_BUSY_TIMEOUT_MS: Final = 100
"""Lock wait of a write made after ``abandon()`` (the final bookkeeping of a forced stop)."""

_SQLITE_PERM: Final = 3
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6
_SQLITE_READONLY: Final = 8
_SQLITE_IOERR: Final = 10
_SQLITE_CORRUPT: Final = 11
_SQLITE_FULL: Final = 13
_SQLITE_CANTOPEN: Final = 14
_SQLITE_AUTH: Final = 23
_SQLITE_NOTADB: Final = 26

T = TypeVar("T")


def is_lock_error(exc: sqlite3.Error) -> bool:
    """True for SQLITE_BUSY / SQLITE_LOCKED (incl. extended codes): worth a retry."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def largest_chunk(columns: int) -> int:
    """Most rows one statement inserts into a table of ``columns`` (see ``INSERT_CHUNK_ROWS``)."""
    # Two parameters besides the rows': the run id and the LIMIT.
    return max(1, min(INSERT_CHUNK_ROWS, (MAX_STATEMENT_PARAMS - 2) // columns))


def statement_rows(n: int, largest: int) -> int:
    """Rows of the statement that inserts ``n <= largest`` rows: the next power of two,
    capped at ``largest``. So a table needs at most ``log2(largest) + 2`` statements,
    and the padding (bound as NULLs, never inserted) is less than ``n``."""
    size = 1
    while size < n:
        size <<= 1
    return min(size, largest)


@cache
def padded_insert_sql(table: RecordTable, rows: int) -> str:
    """``table.insert_sql`` plus ``run_id`` for ``rows`` value rows.

    Parameters, in order: the run id (first ``?``, bound once for every row),
    the rows' values, the number of real rows (``LIMIT``). ``INSERT ... SELECT``
    needs a ``WHERE`` before ``ON CONFLICT`` (SQLite's upsert parsing rule);
    ``LIMIT`` drops the padding rows after the real ones.
    """
    marks = "(" + ", ".join("?" * len(table.columns)) + ")"
    return (
        f"INSERT INTO {table.table} ({', '.join(table.columns)}, run_id) SELECT *, ? FROM (VALUES "
        + ", ".join([marks] * rows)
        + ") WHERE true LIMIT ? ON CONFLICT DO NOTHING"
    )


def insert_rows(
    conn: sqlite3.Connection,
    table: RecordTable,
    items: Sequence[Any],
    row: Callable[[Any], Row] | None = None,
    run_id: str | None = None,
) -> int:
    """Insert ``items`` into ``table`` in order, one statement per ``largest_chunk``
    of them, each row tagged with ``run_id``; the number inserted (a row whose key
    exists is skipped and keeps the run id it was stored with).

    ``items`` are rows, or records turned into rows by ``row`` one statement's
    worth at a time: each row tuple is flattened into the parameters and freed at
    once, instead of a batch's worth of tuples living until the write -- those
    kept the cyclic GC busy (~4% of a replay's CPU).
    """
    columns = len(table.columns)
    largest = largest_chunk(columns)
    inserted = 0
    for start in range(0, len(items), largest):
        chunk = items[start : start + largest]
        n = len(chunk)
        size = statement_rows(n, largest)
        rows = chunk if row is None else map(row, chunk)
        params: list[SqlValue] = [run_id]
        params.extend(chain.from_iterable(rows))
        if size > n:
            params.extend([None] * ((size - n) * columns))
        params.append(n)
        inserted += conn.execute(padded_insert_sql(table, size), params).rowcount
    return inserted


_HEARTBEAT_INSERT: Final = (
    f"INSERT INTO heartbeats ({', '.join(HEARTBEAT_COLUMNS[1:])})"
    f" VALUES ({', '.join('?' * len(HEARTBEAT_COLUMNS[1:]))})"
)
"""Every heartbeat column but ``hb_id`` (SQLite assigns it), in ``HEARTBEAT_COLUMNS`` order."""


def backoff_s(attempt: int, first_s: float, max_s: float) -> float:
    """Delay before retry number ``attempt`` (1-based): ``first * 2**(attempt-1)``, capped."""
    return min(max_s, first_s * float(2 ** min(attempt - 1, 30)))


class StoreAbandoned(Overload):
    """Raised by a write retrying on a lock after ``SqliteStore.abandon()`` (a forced stop)."""


class StorageFull(Overload):
    """Raised by a write that met "database or disk is full": a resource safety stop (13).

    The persistence task retries the batch while the engine drains, so what was
    accepted is still written if space frees before the drain deadline."""


class StorageFailed(Overload):
    """Raised by a write that met an I/O error from the disk (13: a restart may help)."""


class StorageUnusable(ConfigError):
    """Raised when the database became read-only, unopenable or refused (12: an operator
    must fix the file, its mount or its permissions)."""


class StoreFileReplaced(ConfigError):
    """Raised when ``db_path`` no longer names the file the engine writes (deleted or
    replaced): 12, because a restart would silently continue in another database."""


def storage_fault(exc: sqlite3.Error, doing: str) -> Exception | None:
    """The engine's exception for a SQLite error that is a storage fault, ``None`` if it
    is not (a lock, a broken constraint: handled or raised elsewhere)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return None
    primary = code & 0xFF
    what = f"{doing}: {exc} ({getattr(exc, 'sqlite_errorname', code)})"
    if primary == _SQLITE_FULL:
        return StorageFull(f"disk full while {what}")
    if primary == _SQLITE_IOERR:
        return StorageFailed(f"I/O error while {what}")
    if primary in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN, _SQLITE_AUTH):
        return StorageUnusable(f"engine.db_path: database not writable while {what}")
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return DatabaseCorrupt(f"engine.db_path: database damaged while {what}")
    return None


class SqliteStore:
    """The database of one engine process (see module docstring for threading and locks)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: str,
        pragmas: dict[str, object],
        retry_first_s: float = RETRY_BACKOFF_FIRST_S,
        retry_max_s: float = RETRY_BACKOFF_MAX_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._conn = conn
        self._path = path
        self._pragmas = pragmas
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self._sleep = sleep
        self._abandoned = threading.Event()
        self._run_id: str | None = None
        self._inserted: dict[str, int] = {}
        self._first_event_ns: int | None = None
        self._last_event_ns: int | None = None
        self._short_waits = False
        self._identity = self._current_identity()
        self._identity_lost = False
        self.store_ticks = True
        """``False`` (``[engine] store_ticks``, replays only): a batch's ticks are not
        written; its ``tape`` rows are (``engine.store.tape``)."""
        self.on_lock_retry: Callable[[], None] | None = None
        """Called in the writer thread at every lock retry (the runtime counts
        ``persist_retries`` with it; nothing else writes that counter)."""

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        retry_first_s: float = RETRY_BACKOFF_FIRST_S,
        retry_max_s: float = RETRY_BACKOFF_MAX_S,
        sleep: Callable[[float], None] = time.sleep,
        stop: StopCheck | None = None,
    ) -> SqliteStore:
        """Open the writer, verify PRAGMAs, run migrations, log ``store_opened`` (S1).

        ``stop``: a stop asked for at start-up interrupts the writer's integrity check
        (``connection.open_writer``) and is checked again before the migrations.

        *Error handling:* ``ConfigError`` (exit 12) when a PRAGMA does not hold;
        a failing migration propagates after its rollback (the file is unchanged).
        """
        conn = open_writer(path, busy_timeout_ms=busy_timeout_ms, stop=stop)
        try:
            if stop is not None:
                stop.check("opening the database")
            applied = migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            fault = storage_fault(exc, f"migrating {str(path)!r}")
            if fault is not None:
                raise fault from None
            raise
        except BaseException:
            conn.close()
            raise
        pragmas = read_pragmas(conn)
        logs.info("store_opened", path=str(path), pragmas=pragmas, migrations_applied=applied)
        return cls(
            conn,
            path=str(path),
            pragmas=pragmas,
            retry_first_s=retry_first_s,
            retry_max_s=retry_max_s,
            sleep=sleep,
        )

    @property
    def pragmas(self) -> dict[str, object]:
        """The PRAGMA values read back when the store was opened."""
        return dict(self._pragmas)

    @property
    def connection(self) -> sqlite3.Connection:
        """The writer connection (for tests and read queries in the same thread)."""
        return self._conn

    # -- writes ---------------------------------------------------------------

    def write_records(self, records: Sequence[Record]) -> WriteResult:
        """Store ``records`` in ONE transaction (all or nothing), idempotently.

        Rows are grouped by record type and inserted with multi-row INSERTs
        (``insert_rows``); a record whose id is already stored changes nothing (``ON CONFLICT DO
        NOTHING``), a row breaking any other constraint fails the batch.
        Retries on lock until it succeeds (see module docstring).

        *Error handling:* any other ``sqlite3.Error`` (a constraint broken by a
        bad record, disk full, corrupt file) rolls back and propagates; the batch
        is then not stored.
        """
        # Group by type (hashing a type is cheap; this loop runs once per record).
        groups: dict[type[Record], list[Record]] = {}
        for record in records:
            kind = type(record)
            same = groups.get(kind)
            if same is None:
                same = groups[kind] = []
            same.append(record)

        run_id = self._run_id
        ticks = groups.get(Tick)
        tape = None
        if ticks and not self.store_ticks:
            del groups[Tick]
            tape = tape_rows(ticks)

        def write() -> list[tuple[str, int]]:
            written = [
                (table.table, insert_rows(self._conn, table, same, table.row, run_id))
                for table, same in ((RECORD_TABLES[kind], same) for kind, same in groups.items())
            ]
            if tape:
                written.append((TAPE_TABLE.table, insert_rows(self._conn, TAPE_TABLE, tape,
                                                              None, run_id)))
            return written

        per_table, retries = self._transaction(write, what="records", size=len(records))
        self._tally(per_table, ticks)
        inserted = sum(n for _, n in per_table)
        return WriteResult(inserted=inserted, records=len(records), lock_retries=retries)

    def _tally(self, per_table: list[tuple[str, int]], ticks: list[Record] | None) -> None:
        """After a commit: what this run wrote, and its first and last trade (arrival order).

        Only committed writes count: a batch rolled back and retried is tallied once."""
        for table, n in per_table:
            self._inserted[table] = self._inserted.get(table, 0) + n
        if ticks:
            if self._first_event_ns is None:
                self._first_event_ns = ticks[0].ts_event
            self._last_event_ns = ticks[-1].ts_event

    # Positional on purpose: trio.to_thread.run_sync passes positional arguments only.
    def start_run(  # noqa: PLR0917
        self,
        run_id: str,
        pid: int,
        command: str,
        mode: str,
        started_wall_ns: int,
        code_version: str,
        config_json: str,
        identity: RunIdentity | None = None,
    ) -> WriteResult:
        """Record that a run started (with the PRAGMAs read back at open, for healthchecks)
        and what it is (``identity``); from now on every record written carries ``run_id``."""
        columns: dict[str, object] = {
            "run_id": run_id,
            "pid": pid,
            "command": command,
            "mode": mode,
            "started_wall_ns": started_wall_ns,
            "code_version": code_version,
            "config_json": config_json,
            "pragmas_json": json.dumps(self._pragmas, sort_keys=True),
        }
        if identity is not None:
            columns.update(identity_columns(identity))
        sql = (
            f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            " ON CONFLICT DO NOTHING"
        )
        self._run_id = run_id  # a new run's tallies start from zero
        self._inserted = {}
        self._first_event_ns = self._last_event_ns = None

        def write() -> int:
            return self._conn.execute(sql, tuple(columns.values())).rowcount

        inserted, retries = self._transaction(write, what="run", size=1)
        return WriteResult(inserted=inserted, records=1, lock_retries=retries)

    def write_heartbeat(  # noqa: PLR0917
        self,
        run_id: str,
        ts_wall_ns: int,
        interval_s: float,
        counters: dict[str, int],
        final: bool,
        mode: str,
        trading_state: str,
    ) -> WriteResult:
        """Store one heartbeat; ``counters`` (a ``Counters.snapshot()``) as a JSON object."""
        counters_json = json.dumps(counters, sort_keys=True, separators=(",", ":"))

        def write() -> int:
            return self._conn.execute(
                _HEARTBEAT_INSERT,
                (run_id, ts_wall_ns, interval_s, int(final), mode, trading_state, counters_json),
            ).rowcount

        inserted, retries = self._transaction(write, what="heartbeat", size=1)
        return WriteResult(inserted=inserted, records=1, lock_retries=retries)

    def end_run(
        self, run_id: str, ended_wall_ns: int, exit_code: int, clean_shutdown: bool
    ) -> WriteResult:
        """Record how a run ended; ``clean_shutdown`` is the clean-shutdown marker (S13).

        Also records what the run wrote (``counts_json``: rows per summary table,
        equal to the rows carrying its ``run_id``) and the event times of its
        first and last trade (``first_event_ns`` keeps a capture's first trade
        when ``start_run`` recorded one).
        """
        counts = counts_json(self._inserted)

        def write() -> int:
            return self._conn.execute(
                "UPDATE runs SET ended_wall_ns = ?, exit_code = ?, clean_shutdown = ?,"
                " counts_json = ?, first_event_ns = COALESCE(first_event_ns, ?),"
                " last_event_ns = ? WHERE run_id = ?",
                (ended_wall_ns, exit_code, int(clean_shutdown), counts,
                 self._first_event_ns, self._last_event_ns, run_id),
            ).rowcount

        updated, retries = self._transaction(write, what="run_end", size=1)
        return WriteResult(inserted=updated, records=1, lock_retries=retries)

    def checkpoint(self) -> tuple[int, int, int]:
        """``PRAGMA wal_checkpoint(TRUNCATE)``: ``(busy, wal_frames, checkpointed_frames)``.

        ``busy == 1`` means a reader kept the checkpoint from completing; the
        data is safe in the WAL either way. After ``abandon()`` the checkpoint is
        ``PASSIVE`` (it never waits on a lock).
        """
        self._shorten_waits_if_abandoned()
        mode = "PASSIVE" if self.abandoned else "TRUNCATE"
        row = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        busy, log, done = row
        return int(busy), int(log), int(done)

    def abandon(self) -> None:
        """Make a write that is retrying on a lock give up (thread-safe; forced stop only)."""
        self._abandoned.set()

    @property
    def abandoned(self) -> bool:
        """Whether ``abandon()`` was called (the stop is forced)."""
        return self._abandoned.is_set()

    # -- file identity ----------------------------------------------------------

    def _current_identity(self) -> tuple[FileIdentity | None, ...]:
        """The database file and its ``-wal`` as the path names them now."""
        return (
            file_identity(self._path),
            *(file_identity(f"{self._path}{suffix}") for suffix in DB_SIDE_FILES[:1]),
        )

    def check_identity(self) -> None:
        """Raise ``StoreFileReplaced`` if ``db_path`` (or its ``-wal``) is no longer the
        file this connection writes. Reported once: later writes (the bookkeeping of the
        stop) go on into the open file, which is kept if it was only moved."""
        if self._identity_lost:
            return
        now = self._current_identity()
        if now == self._identity:
            return
        self._identity_lost = True
        names = (self._path, f"{self._path}-wal")
        changed = [
            f"{name} {'removed' if new is None else 'replaced'}"
            for name, old, new in zip(names, self._identity, now, strict=True)
            if old is not None and new != old
        ]
        if not changed:  # a side file appeared that was not there at open: note it, go on
            self._identity = now
            self._identity_lost = False
            return
        logs.error("store_file_replaced", path=self._path, changed=changed)
        raise StoreFileReplaced(
            f"engine.db_path: the database file was {', '.join(changed)} while the engine"
            " was writing it; stopping rather than writing into a file no one can read"
        )

    def close(self) -> None:
        """Close the writer connection (SQLite checkpoints and removes the WAL if it can)."""
        self._conn.close()

    # -- the retry loop -------------------------------------------------------

    def _shorten_waits_if_abandoned(self) -> None:
        """After ``abandon()``, lock waits are ``ABANDONED_BUSY_TIMEOUT_MS`` (writer thread)."""
        if self.abandoned and not self._short_waits:
            self._short_waits = True
            self._conn.execute(f"PRAGMA busy_timeout = {ABANDONED_BUSY_TIMEOUT_MS}")

    def _transaction(self, body: Callable[[], T], *, what: str, size: int) -> tuple[T, int]:
        """Run ``body`` inside ``BEGIN IMMEDIATE ... COMMIT``, retrying on lock forever.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a lock is met at
        the start (waiting ``busy_timeout``) rather than half-way through.
        Returns the body's result and the number of retries.

        *Error handling:* ``StoreFileReplaced`` before anything is written if the
        file changed under the engine; storage faults as the module docstring says;
        any other error as raised.
        """
        self.check_identity()
        self._shorten_waits_if_abandoned()
        retries = 0
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = body()
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
                return result, retries
            except sqlite3.Error as exc:
                if not (isinstance(exc, sqlite3.OperationalError) and is_lock_error(exc)):
                    fault = storage_fault(exc, f"writing {what} ({size} record(s))")
                    if fault is not None:
                        raise fault from exc
                    raise
                retries += 1
                if self.on_lock_retry is not None:
                    self.on_lock_retry()
                delay = backoff_s(retries, self._retry_first_s, self._retry_max_s)
                logs.warning(
                    "persist_lock_retry",
                    what=what,
                    size=size,
                    attempt=retries,
                    delay_s=delay,
                    error=str(exc),
                )
                if self._abandoned.is_set():
                    raise StoreAbandoned(
                        f"gave up a {what} write of {size} record(s) after {retries} lock"
                        " retries: the stop was forced"
                    ) from exc
                self._sleep(delay)
