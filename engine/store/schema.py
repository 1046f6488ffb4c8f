"""The database schema: versioned migrations and the one record -> table mapping.

*Migrations* are sqlite-utils ``Migrations`` functions, applied in registration
order at start-up; sqlite-utils runs each one together with its bookkeeping row
(``_sqlite_migrations``) in one transaction, so a failed migration leaves no
trace and stays pending. A migration, once committed to the repository, is never
edited: change the schema by registering a new one below the others.

*Records* reach the database through ``RECORD_TABLES``, the single place that
says which table, which columns, which row tuple each record type becomes and
how a row becomes the record again (``RecordTable.row`` / ``RecordTable.record``).
To persist a new record type: register a migration creating its table and add
one ``RecordTable`` entry. Every writer (``engine.store.sqlite_store``) and
reader (``engine.store.rows``, the digest, restore, the report, the dashboard's
queries) selects by these columns; the ``runs`` and ``heartbeats`` columns are
listed once here too (``RUN_COLUMNS``, ``HEARTBEAT_COLUMNS``). See
docs/architecture.md "Schema".

Column conventions: money, prices and quantities are TEXT holding
``str(Decimal)`` exactly; times are INTEGER nanoseconds since the epoch, event
time for every trading record, wall-clock time only in ``runs`` and
``heartbeats``.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import msgspec
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from engine.core.events import (
    Fill,
    Order,
    OrderEvent,
    Record,
    RiskState,
    Signal,
    Tick,
    VenueFailure,
    Veto,
)

MIGRATION_SET: Final = "hybrid-engine"
"""Name of this project's migration set in ``_sqlite_migrations``."""

migrations: Final = Migrations(MIGRATION_SET)

SqlValue = int | str | float | None
Row = tuple[SqlValue, ...]


@migrations(name="0001_trading_records")
def _m0001_trading_records(db: Database) -> None:
    db.execute(
        """CREATE TABLE ticks (
            event_id TEXT PRIMARY KEY,
            venue TEXT NOT NULL,
            symbol TEXT NOT NULL,
            trade_id INTEGER NOT NULL,
            ts_event INTEGER NOT NULL,
            ts_recv INTEGER NOT NULL,
            price TEXT NOT NULL,
            qty TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX ix_ticks_ts_event ON ticks (ts_event)")
    db.execute("CREATE INDEX ix_ticks_symbol_ts_event ON ticks (symbol, ts_event)")
    db.execute(
        """CREATE TABLE signals (
            signal_id TEXT PRIMARY KEY,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
            ts_event INTEGER NOT NULL,
            ts_recv INTEGER NOT NULL,
            price TEXT NOT NULL,
            cause_id TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX ix_signals_ts_event ON signals (ts_event)")
    db.execute(
        """CREATE TABLE vetoes (
            veto_id TEXT PRIMARY KEY,
            signal_id TEXT NOT NULL,
            symbol TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            ts_event INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX ix_vetoes_ts_event ON vetoes (ts_event)")
    db.execute(
        """CREATE TABLE orders (
            order_id TEXT PRIMARY KEY,
            signal_id TEXT NOT NULL,
            mode TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
            order_type TEXT NOT NULL,
            qty TEXT NOT NULL,
            price TEXT NOT NULL,
            ts_event INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX ix_orders_ts_event ON orders (ts_event)")
    db.execute(
        """CREATE TABLE order_events (
            order_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            state TEXT NOT NULL,
            ts_event INTEGER NOT NULL,
            reason TEXT NOT NULL,
            filled_qty TEXT NOT NULL,
            leaves_qty TEXT NOT NULL,
            PRIMARY KEY (order_id, seq)
        )"""
    )
    db.execute(
        """CREATE TABLE fills (
            fill_id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
            qty TEXT NOT NULL,
            price TEXT NOT NULL,
            fee TEXT NOT NULL,
            cash_delta TEXT NOT NULL,
            position_delta TEXT NOT NULL,
            ts_event INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX ix_fills_order_id ON fills (order_id)")
    db.execute("CREATE INDEX ix_fills_symbol_ts_event ON fills (symbol, ts_event)")


@migrations(name="0002_runs_heartbeats")
def _m0002_runs_heartbeats(db: Database) -> None:
    db.execute(
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            pid INTEGER,
            command TEXT,
            mode TEXT,
            started_wall_ns INTEGER,
            ended_wall_ns INTEGER NULL,
            exit_code INTEGER NULL,
            clean_shutdown INTEGER NOT NULL DEFAULT 0,
            code_version TEXT,
            config_json TEXT,
            pragmas_json TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE heartbeats (
            hb_id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            ts_wall_ns INTEGER NOT NULL,
            interval_s REAL NOT NULL,
            final INTEGER NOT NULL DEFAULT 0,
            mode TEXT,
            trading_state TEXT,
            counters TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX ix_heartbeats_run_id ON heartbeats (run_id, hb_id)")


@migrations(name="0003_risk_states")
def _m0003_risk_states(db: Database) -> None:
    # The drawdown guard's persisted state (engine.core.risk.DrawdownGuard): written
    # only when max_drawdown_usd is set, on a new equity peak or a state change.
    db.execute(
        """CREATE TABLE risk_states (
            state_id TEXT PRIMARY KEY,
            trading_state TEXT NOT NULL CHECK (trading_state IN ('ACTIVE', 'HALTED')),
            ts_event INTEGER NOT NULL,
            equity TEXT NOT NULL,
            peak_equity TEXT NOT NULL,
            max_drawdown_usd TEXT NOT NULL,
            reason TEXT NOT NULL
        )"""
    )


@migrations(name="0004_venue_failures")
def _m0004_venue_failures(db: Database) -> None:
    # Every failed interaction with a LIVE venue (L4: logged *and* persisted):
    # engine.core.events.VenueFailure. ts_event is local wall-clock ns.
    db.execute(
        """CREATE TABLE venue_failures (
            failure_id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            operation TEXT NOT NULL,
            kind TEXT NOT NULL,
            http_status INTEGER NOT NULL,
            code INTEGER NOT NULL,
            message TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            ts_event INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX ix_venue_failures_order_id ON venue_failures (order_id)")


RUN_TAGGED_TABLES: Final = (
    "ticks", "signals", "vetoes", "orders", "order_events", "fills", "risk_states",
    "venue_failures",
)
"""The trading tables whose rows carry ``run_id``: the run that first wrote them."""


@migrations(name="0005_run_identity")
def _m0005_run_identity(db: Database) -> None:
    # One database is one account's history (docs/operations.md "One database, one
    # account"): each run records what it was (mode, strategy, risk-config hash,
    # source identity) and each trading record the run that first wrote it. Added
    # columns are NULL in rows written before this migration ("predates": compatible).
    # run_id is NOT part of any record's mapped columns, so it is outside the digest.
    for column, sql_type in (
        ("strategy_kind", "TEXT"),
        ("strategy_params_json", "TEXT"),
        ("risk_config_hash", "TEXT"),
        ("source_kind", "TEXT"),
        ("source_json", "TEXT"),
        ("first_event_ns", "INTEGER"),
        ("last_event_ns", "INTEGER"),
        ("counts_json", "TEXT"),
    ):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column} {sql_type}")
    for table in RUN_TAGGED_TABLES:
        db.execute(f"ALTER TABLE {table} ADD COLUMN run_id TEXT")


@migrations(name="0006_tape")
def _m0006_tape(db: Database) -> None:
    # What a run processed when it does not store its ticks ([engine] store_ticks =
    # false, engine.store.tape): one row per run of consecutive trade ids per batch.
    db.execute(
        """CREATE TABLE tape (
            venue TEXT NOT NULL,
            symbol TEXT NOT NULL,
            first_trade_id INTEGER NOT NULL,
            last_trade_id INTEGER NOT NULL,
            ts_event INTEGER NOT NULL,
            price TEXT NOT NULL,
            run_id TEXT,
            PRIMARY KEY (venue, symbol, first_trade_id, last_trade_id)
        )"""
    )
    db.execute("CREATE INDEX ix_tape_ts_event ON tape (ts_event)")


RUN_COLUMNS: Final = (
    "run_id", "pid", "command", "mode", "started_wall_ns", "ended_wall_ns", "exit_code",
    "clean_shutdown", "code_version", "config_json", "pragmas_json",
)
"""The ``runs`` columns of migration ``0002_runs_heartbeats``, in table order."""

RUN_IDENTITY_COLUMNS: Final = (
    "strategy_kind", "strategy_params_json", "risk_config_hash", "source_kind", "source_json",
    "first_event_ns", "last_event_ns", "counts_json",
)
"""The ``runs`` columns added by ``0005_run_identity`` (absent from an older database)."""

HEARTBEAT_COLUMNS: Final = (
    "hb_id", "run_id", "ts_wall_ns", "interval_s", "final", "mode", "trading_state", "counters",
)
"""The ``heartbeats`` columns, in table order (``hb_id`` is assigned by SQLite)."""


@migrations(name="0007_signal_sizing")
def _m0007_signal_sizing(db: Database) -> None:
    # A strategy's signal may carry a desired notional and a reason
    # (docs/strategies.md). Stored so nothing accepted is lost, but outside the
    # digest (``digest_columns``): the notional's effect is in the orders, which are
    # in it, and every committed digest stays what it was.
    db.execute("ALTER TABLE signals ADD COLUMN notional TEXT")
    db.execute("ALTER TABLE signals ADD COLUMN reason TEXT NOT NULL DEFAULT ''")


def migrate(db: Database | sqlite3.Connection) -> list[str]:
    """Apply every pending migration; return the names newly applied, in order.

    Re-running is a no-op that returns ``[]``. *Error handling:* a failing
    migration is rolled back with its bookkeeping row and the exception
    propagates (the engine cannot run on a half-known schema).
    """
    database = db if isinstance(db, Database) else Database(db)
    before = {m.name for m in migrations.applied(database)}
    migrations.apply(database)
    return [m.name for m in migrations.applied(database) if m.name not in before]


def _sql_value(value: Any) -> SqlValue:
    """The column value of a record field: Decimal -> exact string, enum -> its value."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None or isinstance(value, int | str):
        return value
    # A float in a record is a bug (money is Decimal): refuse it rather than store it inexactly.
    raise TypeError(f"no SQL form for {type(value).__name__} {value!r}")


def row_builder(columns: tuple[str, ...]) -> Callable[[Any], Row]:
    """A row function reading ``columns`` as attributes, in order (the generic case)."""

    def row(record: Any) -> Row:
        return tuple(_sql_value(getattr(record, name)) for name in columns)

    return row


def record_reader(record_type: type[Record], columns: tuple[str, ...]) -> Callable[
    [Sequence[Any]], Any
]:
    """A row function's inverse: a row of ``columns`` (in order) -> a ``record_type``.

    msgspec converts each stored value to its field's type exactly (a decimal TEXT
    through ``Decimal(str)``, an enum by its value) and checks it: a value of the
    wrong type (a BLOB where text belongs, a non-decimal string) raises
    ``msgspec.ValidationError`` (a ``ValueError``) instead of becoming a field.
    About as fast as a hand-written positional decoder (docs/architecture.md
    "Schema"); ``tests/store/test_rows.py`` round-trips every table.
    """

    def record(row: Sequence[Any]) -> Any:
        return msgspec.convert(dict(zip(columns, row, strict=True)), record_type)

    return record


def _tick_row(t: Tick) -> Row:
    # Hand-written: the hot path (one call per tick), about 3x the generic builder.
    return (t.event_id, t.venue, t.symbol, t.trade_id, t.ts_event, t.ts_recv, str(t.price),
            str(t.qty))


@dataclass(frozen=True, slots=True)
class RecordTable:
    """How one record type is stored.

    ``key`` is the primary key (digest row order); ``in_digest`` says whether the
    table's content is part of what two deterministic runs must agree on --
    adding a table to the digest changes every committed replay digest.
    """

    kind: type[Record]
    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    in_digest: bool
    row: Callable[[Any], Row]
    """record -> row tuple of ``columns`` (what the writer inserts)."""
    record: Callable[[Sequence[Any]], Any]
    """row tuple of ``columns`` -> record (what every reader decodes with)."""

    @property
    def select_sql(self) -> str:
        """``SELECT <columns> FROM <table>``: append a ``WHERE``/``ORDER BY`` tail."""
        return f"SELECT {', '.join(self.columns)} FROM {self.table}"
    digest_columns: tuple[str, ...] = ()
    """The columns the digest covers, when not all of ``columns`` (a prefix of them)."""

    @property
    def hashed_columns(self) -> tuple[str, ...]:
        """What ``engine.store.digest`` hashes of this table: ``digest_columns`` or all."""
        return self.digest_columns or self.columns

    @property
    def insert_sql(self) -> str:
        """Re-inserting an existing id changes nothing (I3).

        ``ON CONFLICT DO NOTHING`` rather than ``INSERT OR IGNORE``: both skip a
        duplicate key, but ``OR IGNORE`` would also silently skip a row breaking a
        CHECK or NOT NULL constraint -- a bug that must fail loudly instead (L4).
        """
        marks = ", ".join("?" * len(self.columns))
        return (
            f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES ({marks})"
            " ON CONFLICT DO NOTHING"
        )


def record_table(
    record_type: type[Record],
    table: str,
    columns: tuple[str, ...],
    key: tuple[str, ...],
    *,
    in_digest: bool,
    row: Callable[[Any], Row] | None = None,
    digest_columns: tuple[str, ...] = (),
) -> RecordTable:
    """A mapping entry; without ``row`` the generic builder reads ``columns`` in order."""
    return RecordTable(
        record_type, table, columns, key, in_digest, row or row_builder(columns),
        record_reader(record_type, columns), digest_columns,
    )


_ENTRIES: Final = (
    record_table(
        Tick,
        "ticks",
        ("event_id", "venue", "symbol", "trade_id", "ts_event", "ts_recv", "price", "qty"),
        ("event_id",),
        in_digest=False,
        row=_tick_row,
    ),
    record_table(
        Signal,
        "signals",
        ("signal_id", "symbol", "side", "ts_event", "ts_recv", "price", "cause_id", "notional",
         "reason"),
        ("signal_id",),
        in_digest=True,
        digest_columns=(
            "signal_id", "symbol", "side", "ts_event", "ts_recv", "price", "cause_id"
        ),
    ),
    record_table(
        Veto,
        "vetoes",
        ("veto_id", "signal_id", "symbol", "reason", "detail", "ts_event"),
        ("veto_id",),
        in_digest=True,
    ),
    record_table(
        Order,
        "orders",
        ("order_id", "signal_id", "mode", "symbol", "side", "order_type", "qty", "price",
         "ts_event"),
        ("order_id",),
        in_digest=True,
    ),
    record_table(
        OrderEvent,
        "order_events",
        ("order_id", "seq", "state", "ts_event", "reason", "filled_qty", "leaves_qty"),
        ("order_id", "seq"),
        in_digest=True,
    ),
    record_table(
        Fill,
        "fills",
        ("fill_id", "order_id", "symbol", "side", "qty", "price", "fee", "cash_delta",
         "position_delta", "ts_event"),
        ("fill_id",),
        in_digest=True,
    ),
    record_table(
        RiskState,
        "risk_states",
        ("state_id", "trading_state", "ts_event", "equity", "peak_equity", "max_drawdown_usd",
         "reason"),
        ("state_id",),
        # Not in the digest: adding it would change every committed replay digest,
        # and a halt's effect on decisions is already there (HALTED vetoes).
        in_digest=False,
    ),
    record_table(
        VenueFailure,
        "venue_failures",
        ("failure_id", "order_id", "operation", "kind", "http_status", "code", "message",
         "attempt", "ts_event"),
        ("failure_id",),
        # Not in the digest: wall-clock times and ids (LIVE only; a replay has none).
        in_digest=False,
    ),
)

RECORD_TABLES: Final[Mapping[type[Record], RecordTable]] = {t.kind: t for t in _ENTRIES}
"""Record type -> storage; the one place to extend when a new record type is persisted.

Column names equal the Struct's field names. The digest covers the ``in_digest``
tables in this mapping's order (signals, vetoes, orders, order_events, fills):
append new entries at the end.
"""

DIGEST_TABLES: Final[tuple[RecordTable, ...]] = tuple(
    t for t in RECORD_TABLES.values() if t.in_digest
)
