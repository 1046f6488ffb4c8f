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
from dataclasses import dataclass
from typing import Any, Final

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


SMA_KIND: Final = "sma_cross"
"""The one strategy whose indicator lines the price chart draws (its fast and slow SMAs)."""

MAX_KIND_CHARS: Final = 300
"""A recorded kind longer than this is cut for display (a user kind is a path)."""


@dataclass(frozen=True, slots=True)
class ChartStrategy:
    """What the price chart shows for the run's strategy: its bars, and its SMA lines
    only when the strategy is the SMA crossover (``sma``), so no legend names lines
    the strategy never compared."""

    kind: str
    params: dict[str, Any]
    bar_seconds: int
    sma: StrategySection | None

    def to_builtins(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "params": self.params,
                               "bar_seconds": self.bar_seconds,
                               "lines": ["sma_fast", "sma_slow"] if self.sma else []}
        if self.sma is not None:  # the keys /api/status always had for the SMA strategy
            out.update(fast=self.sma.fast, slow=self.sma.slow)
        return out


def chart_strategy(run: dict[str, Any] | None) -> ChartStrategy:
    """The strategy the run recorded (``strategy_kind``/``strategy_params``; before
    migration ``0005_run_identity``, its configuration's ``[strategy]`` table; the
    default SMA crossover when it recorded neither). Leniently read: a value the
    chart cannot use falls back to its default, never an error."""
    run = run or {}
    kind, params = run.get("strategy_kind"), run.get("strategy_params")
    if not isinstance(kind, str):
        config = run.get("config")
        table = config.get("strategy") if isinstance(config, dict) else None
        table = dict(table) if isinstance(table, dict) else {}
        kind, params = table.pop("kind", SMA_KIND), table
    kind = kind[:MAX_KIND_CHARS] if isinstance(kind, str) else SMA_KIND
    params = params if isinstance(params, dict) else {}
    bar_seconds = _int_in(params.get("bar_seconds"), 0, 86_400, 1)
    sma = None
    if kind == SMA_KIND:
        fast = _int_in(params.get("fast"), 1, 9_999, 5)
        slow = _int_in(params.get("slow"), 2, 10_000, 20)
        if slow <= fast:
            fast, slow = 5, 20
        sma = StrategySection(fast=fast, slow=slow, bar_seconds=bar_seconds)
    return ChartStrategy(kind=kind, params=params, bar_seconds=bar_seconds, sma=sma)


def _int_in(value: object, low: int, high: int, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return default
    return value
