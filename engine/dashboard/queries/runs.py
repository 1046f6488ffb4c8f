"""Runs and heartbeats: what the status page and ``/healthz`` show of the engine's life.

"Latest" lookups are index seeks (``ORDER BY ... DESC LIMIT 1``), never scans;
JSON columns (config, PRAGMAs, counters) are parsed leniently -- a row the
dashboard cannot read shows as empty rather than failing the page.

A run names what it was (migration ``0005_run_identity``): ``strategy_kind`` and
``strategy_params``, ``risk_config_hash``, ``source_kind`` and ``source`` (for a
replay, each capture's name, size, head/tail sha256 and first trade), its first
and last trade's event time and ``counts`` (rows it first wrote, recorded when it
ended; ``null`` while it runs or if it was killed). A database from before that
migration lacks the columns; they read as ``null``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from engine.config.schema import StrategySection
from engine.core.events import NS_PER_S
from engine.store.rows import column_names
from engine.store.schema import HEARTBEAT_COLUMNS, RUN_COLUMNS, RUN_IDENTITY_COLUMNS


def _run_columns(conn: sqlite3.Connection) -> tuple[str, ...]:
    present = column_names(conn, "runs")
    return RUN_COLUMNS + tuple(c for c in RUN_IDENTITY_COLUMNS if c in present)


def _no_blobs(row: Sequence[Any]) -> list[Any]:
    """The engine never writes a BLOB into runs or heartbeats: one found there is read as NULL."""
    return [None if isinstance(v, bytes) else v for v in row]


def _run_dict(columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    run = dict.fromkeys(RUN_IDENTITY_COLUMNS)
    run.update(zip(columns, _no_blobs(row), strict=True))
    run["clean_shutdown"] = bool(run["clean_shutdown"])
    for name in ("config", "pragmas", "strategy_params", "source", "counts"):
        run[name] = _json_or_none(run.pop(f"{name}_json"))
    return run


def _heartbeat_dict(row: Sequence[Any]) -> dict[str, Any]:
    hb = dict(zip(HEARTBEAT_COLUMNS, _no_blobs(row), strict=True))
    hb["final"] = bool(hb["final"])
    counters = _json_or_none(hb["counters"])
    hb["counters"] = counters if isinstance(counters, dict) else {}
    return hb


def _json_or_none(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def latest_run(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The run recorded last (insertion order: immune to wall-clock steps between runs)."""
    columns = _run_columns(conn)
    row = conn.execute(
        f"SELECT {', '.join(columns)} FROM runs"
        " ORDER BY rowid DESC LIMIT 1"
    ).fetchone()
    return None if row is None else _run_dict(columns, row)


def runs(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    columns = _run_columns(conn)
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM runs"
        " ORDER BY rowid DESC LIMIT ?",
        (limit,),
    ).fetchall()
    out = [_run_dict(columns, r) for r in rows]
    for run in out:
        run.pop("config", None)
    return out


def latest_heartbeats(
    conn: sqlite3.Connection, run_id: str | None, n: int = 2
) -> list[dict[str, Any]]:
    """The newest ``n`` heartbeats (of ``run_id`` when given), newest first."""
    cols = ", ".join(HEARTBEAT_COLUMNS)
    if run_id is None:
        rows = conn.execute(
            f"SELECT {cols} FROM heartbeats ORDER BY hb_id DESC LIMIT ?", (n,)
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {cols} FROM heartbeats WHERE run_id = ? ORDER BY hb_id DESC LIMIT ?",
            (run_id, n),
        ).fetchall()
    return [_heartbeat_dict(r) for r in rows]


def heartbeats(
    conn: sqlite3.Connection, limit: int, run_id: str | None, since_wall_ns: int | None
) -> list[dict[str, Any]]:
    """Heartbeats newest first, optionally of one run and after a wall-clock time."""
    sql = f"SELECT {', '.join(HEARTBEAT_COLUMNS)} FROM heartbeats WHERE 1 = 1"
    args: list[Any] = []
    if run_id is not None:
        sql += " AND run_id = ?"
        args.append(run_id)
    if since_wall_ns is not None:
        sql += " AND ts_wall_ns >= ?"
        args.append(since_wall_ns)
    sql += " ORDER BY hb_id DESC LIMIT ?"
    args.append(limit)
    return [_heartbeat_dict(r) for r in conn.execute(sql, args).fetchall()]


def counter_rates(newer: dict[str, Any], older: dict[str, Any] | None) -> dict[str, float]:
    """Per-second rate of each counter between two heartbeats of the same run.

    Rates are display figures (floats are fine here: nothing decides on them).
    """
    if older is None or older["run_id"] != newer["run_id"]:
        return {}
    dt_s = (newer["ts_wall_ns"] - older["ts_wall_ns"]) / NS_PER_S
    if dt_s <= 0:
        return {}
    rates: dict[str, float] = {}
    for name, value in newer["counters"].items():
        before = older["counters"].get(name)
        if isinstance(value, int) and isinstance(before, int):
            rates[name] = round((value - before) / dt_s, 3)
    return rates


def strategy_params(run: dict[str, Any] | None) -> StrategySection:
    """The strategy settings the latest run recorded (defaults when it recorded none)."""
    section = (run or {}).get("config") or {}
    raw = section.get("strategy") if isinstance(section, dict) else None
    if not isinstance(raw, dict):
        return StrategySection()
    try:
        return StrategySection(
            fast=int(raw.get("fast", 5)),
            slow=int(raw.get("slow", 20)),
            bar_seconds=int(raw.get("bar_seconds", 1)),
        )
    except (TypeError, ValueError):
        return StrategySection()
