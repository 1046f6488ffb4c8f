"""One database is one account's history: what each run was, and who may continue it.

A run's *identity* (``RunIdentity``) is recorded in its ``runs`` row when it
starts: mode, strategy kind and parameters, the risk-config hash (the one the
LIVE proof is bound to, ``engine.proof.evidence.risk_config_hash``) and the identity of
its market-data source. Every trading record carries the run that first wrote
it (``run_id``, see ``engine.store.sqlite_store``).

``continuation_refusal`` decides, before anything is written, whether a new run
may continue the database (docs/operations.md, "One database, one account"):

* its **mode** must equal the mode of every previous run;
* its **risk-config hash** must equal that of every previous run that recorded
  one -- a run from before migration ``0005_run_identity`` recorded none and is
  compatible with any ("missing is compatible");
* its **strategy** -- kind and parameters (``strategy_params_json``, decimals
  normalised, so ``100`` and ``100.00`` are the same) -- must equal that of every
  previous run that recorded one (missing is compatible, as for the hash): two
  strategies' trades in one account would make its report and digest describe
  neither;
* each **capture** it replays must either be one a previous run replayed (the
  same size and head/tail hash: a restart after a crash continues), or begin at
  or after the last trade the database holds (the next day's capture). A capture
  whose first trade cannot be found in its head is refused when the database
  already holds trades: nothing can tell that it continues the account.

"Previous runs" are the rows of ``runs``: every run that got as far as writing
its row (a refused run never does). Only ``SELECT``s here, plus the row helpers
the store's writer uses. The check reads before the run's row is written, so it
assumes what the engine already requires: one engine per database at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from engine.core.events import NS_PER_MS
from engine.exits import ConfigError
from engine.store.rows import has_column, has_table, row_count
from engine.store.schema import RUN_COLUMNS, RUN_IDENTITY_COLUMNS

SUMMARY_TABLES: Final = ("ticks", "signals", "orders", "fills", "vetoes")
"""The per-run counts a summary states, in this order."""

MAX_LISTED_MODES: Final = 3
"""Modes named in a refusal (a database mixed before this check existed may hold several)."""


MAX_STRATEGY_LABEL_CHARS: Final = 200
"""Longest strategy description a refusal prints (kind and parameters)."""


class CaptureIdentity(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What identifies one capture file cheaply, even a 50M-line one.

    ``head_tail_sha256`` is the sha256 of the file's first and last
    ``engine.runtime.identity.HASH_SPAN_BYTES`` bytes as stored (compressed or not;
    the whole file when it is smaller than both spans): two reads of 1 MiB,
    whatever the file's size. Together with ``size`` it tells the same file
    from a different one; ``name`` is for people only and is not compared.
    ``first_event_ns`` is the event time of its first trade (``None``: no trade
    in its head).
    """

    name: str
    size: int
    head_tail_sha256: str
    first_event_ns: int | None


class RunIdentity(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a run is, recorded in its ``runs`` row (``engine.runtime.identity.identify_run``)."""

    mode: str
    strategy_kind: str
    strategy_params: dict[str, Any]
    risk_config_hash: str
    source_kind: str
    source: dict[str, Any]
    """JSON-able: websocket ``{"venue", "symbols", "url"}``; synthetic ``{"seed",
    "symbols", ...}``; replay ``{}`` -- its ``captures`` are stored in
    ``source_json`` as ``{"captures": [...]}``."""
    captures: tuple[CaptureIdentity, ...] = ()


def identity_columns(identity: RunIdentity) -> dict[str, object]:
    """The ``runs`` columns (migration ``0005_run_identity``) of ``identity``."""
    source = dict(identity.source)
    if identity.captures:
        source["captures"] = msgspec.to_builtins(identity.captures)
    return {
        "strategy_kind": identity.strategy_kind,
        "strategy_params_json": _json(identity.strategy_params),
        "risk_config_hash": identity.risk_config_hash,
        "source_kind": identity.source_kind,
        "source_json": _json(source),
        "first_event_ns": min(
            (c.first_event_ns for c in identity.captures if c.first_event_ns is not None),
            default=None,
        ),
    }


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def iso_ns(ts_ns: int) -> str:
    """An event time for a person: UTC, milliseconds (the raw ns if out of datetime's range)."""
    try:
        moment = dt.datetime.fromtimestamp(ts_ns // NS_PER_MS / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ts_ns} ns"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -------------------------------------------------------------- the refusal


def previous_modes(conn: sqlite3.Connection) -> list[str]:
    if not has_table(conn, "runs"):
        return []
    rows = conn.execute("SELECT DISTINCT mode FROM runs WHERE mode IS NOT NULL ORDER BY mode")
    return [str(r[0]) for r in rows]


def previous_risk_hashes(conn: sqlite3.Connection) -> list[str]:
    if not (has_table(conn, "runs") and has_column(conn, "runs", "risk_config_hash")):
        return []
    rows = conn.execute(
        "SELECT DISTINCT risk_config_hash FROM runs WHERE risk_config_hash IS NOT NULL"
        " ORDER BY risk_config_hash"
    )
    return [str(r[0]) for r in rows]


def previous_strategies(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """``(strategy_kind, strategy_params_json)`` of the previous runs that recorded one."""
    if not (has_table(conn, "runs") and has_column(conn, "runs", "strategy_kind")):
        return []
    rows = conn.execute(
        "SELECT DISTINCT strategy_kind, strategy_params_json FROM runs"
        " WHERE strategy_kind IS NOT NULL ORDER BY strategy_kind, strategy_params_json"
    )
    return sorted({(str(kind), _canonical_json(params)) for kind, params in rows})


def _canonical_json(text: object) -> str:
    """A stored JSON value re-encoded as ``_json`` writes it (as stored if unreadable)."""
    if not isinstance(text, str):
        return "{}"
    try:
        return _json(json.loads(text))
    except ValueError:
        return text


def strategy_label(kind: str, params_json: str) -> str:
    """A strategy as a refusal names it: ``sma_cross {"fast":5,...}`` (at most
    ``MAX_STRATEGY_LABEL_CHARS``; a user kind's path and its parameters can be long)."""
    label = f"{kind} {params_json}"
    if len(label) > MAX_STRATEGY_LABEL_CHARS:
        label = label[: MAX_STRATEGY_LABEL_CHARS - 3] + "..."
    return label


def known_captures(conn: sqlite3.Connection) -> set[tuple[int, str]]:
    """``(size, head_tail_sha256)`` of every capture a previous run replayed."""
    if not (has_table(conn, "runs") and has_column(conn, "runs", "source_json")):
        return set()
    known: set[tuple[int, str]] = set()
    for (text,) in conn.execute("SELECT source_json FROM runs WHERE source_kind = 'replay'"):
        known.update(_capture_keys(text))
    return known


def _capture_keys(text: object) -> Iterable[tuple[int, str]]:
    """The capture keys in a stored ``source_json`` (leniently: a bad row yields none)."""
    try:
        source = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return
    captures = source.get("captures") if isinstance(source, dict) else None
    for entry in captures if isinstance(captures, list) else ():
        if isinstance(entry, dict):
            size, sha = entry.get("size"), entry.get("head_tail_sha256")
            if isinstance(size, int) and isinstance(sha, str):
                yield size, sha


def last_trade_ns(conn: sqlite3.Connection) -> int | None:
    """Event time of the latest trade the database holds (an index seek on ``ts_event``),
    in ``ticks`` or, for runs that did not store their ticks, in ``tape``."""
    latest: int | None = None
    for table in ("ticks", "tape"):
        if not has_table(conn, table):
            continue
        row = conn.execute(f"SELECT MAX(ts_event) FROM {table}").fetchone()
        if row is not None and row[0] is not None:
            latest = int(row[0]) if latest is None else max(latest, int(row[0]))
    return latest


def continuation_refusal(
    conn: sqlite3.Connection, identity: RunIdentity, db_label: str
) -> str | None:
    """Why a run with ``identity`` may not continue the database at ``conn``; ``None`` if it may.

    The reason is one line that says what to do (see the module docstring for the rules).
    """
    advice = "use a new --db (one database is one account's history)"
    modes = previous_modes(conn)
    others = [m for m in modes if m != identity.mode]
    if others:
        held = ", ".join(modes[:MAX_LISTED_MODES])
        return (
            f"database {db_label} holds {held} runs; this run is {identity.mode}: {advice}"
        )
    hashes = [h for h in previous_risk_hashes(conn) if h != identity.risk_config_hash]
    if hashes:
        return (
            f"database {db_label} was written with risk config {hashes[0][:12]}; this run's"
            f" [risk]/[execution] settings hash to {identity.risk_config_hash[:12]}: restore"
            f" the settings those runs used, or {advice}"
        )
    mine = (identity.strategy_kind, _json(identity.strategy_params))
    strategies = [s for s in previous_strategies(conn) if s != mine]
    if strategies:
        return (
            f"database {db_label} was written by strategy {strategy_label(*strategies[0])};"
            f" this run's strategy is {strategy_label(*mine)}: restore the [strategy]"
            f" settings those runs used, or {advice}"
        )
    if identity.captures:
        return _capture_refusal(conn, identity.captures, db_label, advice)
    return None


def _capture_refusal(
    conn: sqlite3.Connection,
    captures: Sequence[CaptureIdentity],
    db_label: str,
    advice: str,
) -> str | None:
    last = last_trade_ns(conn)
    if last is None:  # an empty account: any capture starts it
        return None
    known = known_captures(conn)
    for capture in captures:
        if (capture.size, capture.head_tail_sha256) in known:
            continue  # the same input again: a restart continues it idempotently (I3)
        if capture.first_event_ns is None:
            return (
                f"capture {capture.name}: no trade found in its head, so nothing shows that it"
                f" continues database {db_label} (last trade {iso_ns(last)}): {advice}"
            )
        if capture.first_event_ns < last:
            return (
                f"capture {capture.name} starts at {iso_ns(capture.first_event_ns)}, before the"
                f" last trade database {db_label} holds ({iso_ns(last)}); replaying it would"
                f" rewrite the account's past: {advice}"
            )
    return None


# -------------------------------------------------------------- per-run counts


def counted_run_counts(
    conn: sqlite3.Connection, run_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Rows each run first wrote, counted from the records' ``run_id`` (one scan per table)."""
    wanted = set(run_ids)
    out: dict[str, dict[str, int]] = {r: dict.fromkeys(SUMMARY_TABLES, 0) for r in wanted}
    if not wanted:
        return out
    for table in SUMMARY_TABLES:
        if not (has_table(conn, table) and has_column(conn, table, "run_id")):
            continue
        for run_id, n in conn.execute(
            f"SELECT run_id, COUNT(*) FROM {table} WHERE run_id IS NOT NULL GROUP BY run_id"
        ):
            if run_id in wanted:
                out[run_id][table] = int(n)
    return out


def stored_counts(text: object) -> dict[str, int] | None:
    """A ``runs.counts_json`` value as counts, or ``None`` (not recorded, or unreadable)."""
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {t: int(data[t]) if isinstance(data.get(t), int) else 0 for t in SUMMARY_TABLES}


def counts_json(inserted: Mapping[str, int]) -> str:
    """The ``runs.counts_json`` a run's end records: rows it wrote per summary table."""
    return _json({t: int(inserted.get(t, 0)) for t in SUMMARY_TABLES})


# -------------------------------------------------------------- reading runs back


class AccountMismatch(ConfigError):
    """Raised at start-up when a run would not continue the database's account (exit 12)."""


def check_continuation(conn: sqlite3.Connection, identity: RunIdentity, db_label: str) -> None:
    """Raise ``AccountMismatch`` with ``continuation_refusal``'s one line, if there is one."""
    reason = continuation_refusal(conn, identity, db_label)
    if reason is not None:
        raise AccountMismatch(reason)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One ``runs`` row as a report shows it; counts are the rows the run first wrote."""

    run_id: str
    command: str | None
    mode: str | None
    started_wall_ns: int | None
    ended_wall_ns: int | None
    exit_code: int | None
    clean_shutdown: bool
    counts: dict[str, int]
    counts_recorded: bool
    """``True``: from ``counts_json`` (the run ended); ``False``: counted from ``run_id``."""
    strategy_kind: str | None = None
    risk_config_hash: str | None = None
    source_kind: str | None = None
    first_event_ns: int | None = None
    last_event_ns: int | None = None

    def to_builtins(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "command": self.command,
            "mode": self.mode,
            "started_wall_ns": self.started_wall_ns,
            "ended_wall_ns": self.ended_wall_ns,
            "exit_code": self.exit_code,
            "clean_shutdown": self.clean_shutdown,
            "counts": dict(self.counts),
            "counts_recorded": self.counts_recorded,
            "strategy_kind": self.strategy_kind,
            "risk_config_hash": self.risk_config_hash,
            "source_kind": self.source_kind,
            "first_event_ns": self.first_event_ns,
            "last_event_ns": self.last_event_ns,
        }


_RUN_RECORD_COLUMNS: Final = tuple(
    c for c in RUN_COLUMNS if c in {f.name for f in dataclasses.fields(RunRecord)}
)
"""The ``runs`` columns a ``RunRecord`` holds as they are (the schema's order)."""


def count_runs(conn: sqlite3.Connection) -> int:
    return row_count(conn, "runs")


def load_runs(
    conn: sqlite3.Connection, limit: int, run_id: str | None = None
) -> list[RunRecord]:
    """The latest ``limit`` runs (or the one ``run_id``), oldest first, with their counts.

    Works on a database from before migration ``0005_run_identity`` (read-only
    readers do not migrate): the missing columns read as ``None``, counts as 0.
    """
    if not has_table(conn, "runs"):
        return []
    identity = has_column(conn, "runs", "counts_json")
    columns = _RUN_RECORD_COLUMNS + (RUN_IDENTITY_COLUMNS if identity else ())
    sql = f"SELECT {', '.join(columns)} FROM runs"
    args: tuple[object, ...] = ()
    if run_id is not None:
        sql += " WHERE run_id = ?"
        args = (run_id,)
    rows = conn.execute(sql + " ORDER BY rowid DESC LIMIT ?", (*args, limit)).fetchall()
    raw = [dict(zip(columns, row, strict=True)) for row in reversed(rows)]
    recorded = {str(r["run_id"]): stored_counts(r.get("counts_json")) for r in raw}
    missing = [rid for rid, counts in recorded.items() if counts is None]
    counted = counted_run_counts(conn, missing) if missing and identity else {}
    out: list[RunRecord] = []
    for r in raw:
        rid = str(r["run_id"])
        stored = recorded[rid]
        counts = stored or counted.get(rid) or dict.fromkeys(SUMMARY_TABLES, 0)
        out.append(
            RunRecord(
                run_id=rid,
                command=r["command"],
                mode=r["mode"],
                started_wall_ns=r["started_wall_ns"],
                ended_wall_ns=r["ended_wall_ns"],
                exit_code=r["exit_code"],
                clean_shutdown=bool(r["clean_shutdown"]),
                counts=counts,
                counts_recorded=stored is not None,
                strategy_kind=r.get("strategy_kind"),
                risk_config_hash=r.get("risk_config_hash"),
                source_kind=r.get("source_kind"),
                first_event_ns=r.get("first_event_ns"),
                last_event_ns=r.get("last_event_ns"),
            )
        )
    return out
