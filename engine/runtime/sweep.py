"""Parameter sweeps: every combination of a grid of config keys, each its own engine process.

``plan`` turns ``--grid section.key=v1,v2`` arguments into ``Job``s (the
cartesian product, in the order given: the first key varies slowest). Each job
is a ``hybrid-engine replay`` of the same captures into its own database under
the output folder, with the combination passed as ``ENGINE_<SECTION>_<KEY>``
environment overrides -- the one way in the configuration loader already admits
(bounds, exit 12 naming the key). A combination the loader refuses is a row
with its error; so is one whose process exits non-zero.

The **executor is one seam**: anything with ``async run(jobs) -> list[Outcome]``.
``LocalExecutor`` runs at most ``jobs`` processes at once on this machine
(``trio.run_process``; on cancellation -- Ctrl-C, SIGTERM -- each child gets
SIGTERM, which the engine drains on, and is waited for). ``run_job`` is the same
job as one blocking call, for an executor that ships jobs to other machines
(docs/report.md, "Sweeps on a cluster").

``rank`` orders the rows by one figure of ``report`` (ties and missing values:
by combination order), so the same grid gives the same table.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Protocol

import trio

from engine.config.load import ENV_PREFIX, env_overrides, load_config
from engine.config.strategies import BUILTINS
from engine.exits import ConfigError
from engine.store.connection import open_readonly
from engine.store.figures import finite_decimal
from engine.store.report import build_report

MAX_KEYS: Final = 8
MAX_VALUES: Final = 64
MAX_COMBINATIONS: Final = 1_000
MAX_VALUE_CHARS: Final = 64
ERROR_TAIL_BYTES: Final = 4_096
"""A failed job's error is the last line of at most this much of its log."""
MAX_ERROR_CHARS: Final = 300
STOP_GRACE_S: Final = 30.0
"""A stopped child gets SIGTERM, then SIGKILL if it has not exited this long after
(the engine's own drain is bounded by ``engine.drain_timeout_s``, 20 s by default)."""

RANK_KEYS: Final[dict[str, bool]] = {
    "net_pnl": True,
    "net_pnl_pct": True,
    "final_equity": True,
    "sharpe_per_minute": True,
    "sortino_per_minute": True,
    "profit_factor": True,
    "expectancy": True,
    "win_rate_pct": True,
    "round_trips": True,
    "max_drawdown": False,
    "fees": False,
}
"""What ``--rank`` may order by, and whether higher is better."""

COLUMNS: Final = (
    "net_pnl", "fees", "round_trips", "win_rate_pct", "profit_factor", "max_drawdown",
    "sharpe_per_minute", "exposure_pct",
)
"""The report's key figures each row shows (``docs/report.md`` defines them)."""


@dataclass(frozen=True, slots=True)
class Job:
    index: int
    params: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]
    env: dict[str, str]
    db: Path
    log: Path
    refused: str | None = None
    """The configuration loader's refusal of this combination (then it is never run)."""

    @property
    def name(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params)


@dataclass(frozen=True, slots=True)
class Outcome:
    job: Job
    exit_code: int | None
    error: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_builtins(self) -> dict[str, Any]:
        return {
            "combination": self.job.index,
            "params": dict(self.job.params),
            "db": str(self.job.db),
            "exit_code": self.exit_code,
            "error": self.error,
            **{k: self.figures.get(k) for k in COLUMNS},
            "figures": self.figures,
        }


class Executor(Protocol):
    async def run(self, jobs: Sequence[Job]) -> list[Outcome]: ...


def parse_grid(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["strategy.fast=3,5"]`` -> ``[("strategy.fast", ["3", "5"])]``, bounded and checked.

    *Error handling:* ``ConfigError`` naming ``--grid``: a malformed spec, a key the
    configuration does not have, a repeated key or value, too many of anything.
    """
    if not specs:
        raise ConfigError("--grid: give at least one section.key=v1,v2,...")
    if len(specs) > MAX_KEYS:
        raise ConfigError(f"--grid: at most {MAX_KEYS} keys ({len(specs)} given)")
    grid: list[tuple[str, list[str]]] = []
    for spec in specs:
        key, sep, raw = spec.partition("=")
        section, dot, name = key.partition(".")
        values = [v.strip() for v in raw.split(",")]
        if not (sep and dot and section and name and all(values)):
            raise ConfigError(f"--grid: {spec[:80]!r} is not section.key=v1,v2,...")
        if len(values) > MAX_VALUES or any(len(v) > MAX_VALUE_CHARS for v in values):
            raise ConfigError(
                f"--grid {key}: at most {MAX_VALUES} values of {MAX_VALUE_CHARS} characters"
            )
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {key}: a value is repeated")
        if any(key == k for k, _ in grid):
            raise ConfigError(f"--grid {key}: the key is given twice")
        try:
            env_overrides({env_name(key): values[0]})
        except ConfigError:
            raise ConfigError(f"--grid {key}: no such configuration key") from None
        grid.append((key, values))
    _check_strategy_keys(grid)
    total = 1
    for _, values in grid:
        total *= len(values)
    if total > MAX_COMBINATIONS:
        raise ConfigError(f"--grid: {total} combinations, at most {MAX_COMBINATIONS}")
    return grid


def _check_strategy_keys(grid: Sequence[tuple[str, Sequence[str]]]) -> None:
    """A ``strategy.*`` key must be a parameter of a built-in strategy, unless the grid
    also names a user ``strategy.kind`` (whose parameters only its own ``Params`` knows;
    each combination is then admitted by the loader, a refusal being that row)."""
    kinds = dict(grid).get("strategy.kind", ())
    if any(kind not in BUILTINS for kind in kinds):
        return
    known = {"kind"} | {
        name for spec in BUILTINS.values() if spec.params_type is not None
        for name in spec.params_type.__struct_fields__
    }
    for key, _ in grid:
        section, _, name = key.partition(".")
        if section == "strategy" and name not in known:
            raise ConfigError(f"--grid {key}: no such configuration key")


def env_name(key: str) -> str:
    """``strategy.fast`` -> ``ENGINE_STRATEGY_FAST`` (the loader's override variable)."""
    section, _, name = key.partition(".")
    return f"{ENV_PREFIX}{section.upper()}_{name.upper()}"


def plan(
    captures: Sequence[str],
    grid: Sequence[tuple[str, Sequence[str]]],
    out: Path,
    *,
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> list[Job]:
    """One job per combination; each is checked by the configuration loader first."""
    base_env = dict(os.environ if environ is None else environ)
    jobs: list[Job] = []
    keys = [k for k, _ in grid]
    for index, combo in enumerate(itertools.product(*(v for _, v in grid)), start=1):
        params = tuple(zip(keys, combo, strict=True))
        env = {**base_env, **{env_name(k): v for k, v in params}}
        db = out / f"c{index:04d}.db"
        argv = [python, "-m", "engine", "replay", *captures, "--db", str(db)]
        if config is not None:
            argv += ["--config", config]
        refused = None
        try:
            load_config(config, environ=env)
        except ConfigError as exc:
            refused = str(exc)
        jobs.append(
            Job(index, params, tuple(argv), env, db, out / f"c{index:04d}.log", refused)
        )
    return jobs


def _error_line(log: Path) -> str:
    """The last ``configuration error`` line of the job's log, else its last line."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - ERROR_TAIL_BYTES))
            tail = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"no log ({exc.strerror})"
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("hybrid-engine:")]
    chosen = errors[-1] if errors else (lines[-1] if lines else "no output")
    return chosen[:MAX_ERROR_CHARS]


def figures_of(db: Path) -> dict[str, Any]:
    """The latest run's ``report --json`` figures of ``db`` (``{}``: no run in it)."""
    conn = open_readonly(str(db))
    try:
        report = build_report(conn)
    finally:
        conn.close()
    return report.run.to_builtins() if report.run is not None else {}


def finish(job: Job, code: int | None) -> Outcome:
    """A ran job's row: its figures, or its error."""
    if code != 0:
        reason = "stopped" if code is None else f"exit {code}"
        return Outcome(job, code, f"{reason}: {_error_line(job.log)}")
    try:
        figures = figures_of(job.db)
    except (sqlite3.Error, OSError, ValueError) as exc:  # a row says so; the sweep goes on
        return Outcome(job, code, f"unreadable database: {exc}"[:MAX_ERROR_CHARS])
    return Outcome(job, code, None, figures)


def run_job(job: Job) -> Outcome:
    """One job, blocking: what a distributed executor runs on a worker."""
    if job.refused is not None:
        return Outcome(job, None, job.refused)
    with job.log.open("wb") as log:
        code = subprocess.run(
            job.argv, env=job.env, stdout=log, stderr=subprocess.STDOUT, check=False
        ).returncode
    return finish(job, code)


class LocalExecutor:
    """At most ``jobs`` engine processes at once on this machine."""

    def __init__(self, jobs: int, on_start: Any = None) -> None:
        self.limiter = trio.CapacityLimiter(jobs)
        self.on_start = on_start

    async def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        codes: dict[int, int | None] = {}
        async with trio.open_nursery() as nursery:
            for job in jobs:
                if job.refused is None:
                    nursery.start_soon(self._one, job, codes)
        outcomes = []
        for job in jobs:
            if job.refused is not None:
                outcomes.append(Outcome(job, None, job.refused))
            else:
                outcomes.append(await trio.to_thread.run_sync(finish, job, codes[job.index]))
        return outcomes

    async def _one(self, job: Job, codes: dict[int, int | None]) -> None:
        async with self.limiter:
            with job.log.open("wb") as log:
                codes[job.index] = None
                try:
                    process = await trio.lowlevel.open_process(
                        list(job.argv), env=job.env, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True,  # Ctrl-C reaches the sweep, which stops each child
                    )
                except OSError as exc:  # a row that says so, not the sweep's end
                    log.write(f"cannot start the engine: {exc}\n".encode())
                    return
                if self.on_start is not None:
                    self.on_start(job, process.pid)
                try:
                    codes[job.index] = await process.wait()
                finally:
                    if process.returncode is None:
                        await _stop(process)


async def _stop(process: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        process.terminate()  # SIGTERM: the engine drains and exits
        with trio.move_on_after(STOP_GRACE_S):
            await process.wait()
            return
        process.kill()
        await process.wait()


def _sort_value(outcome: Outcome, key: str) -> Decimal | None:
    return finite_decimal(outcome.figures.get(key))


def rank(outcomes: Sequence[Outcome], key: str) -> list[Outcome]:
    """Best first by ``key`` (``RANK_KEYS`` says which way); failures and nulls last."""
    higher = RANK_KEYS[key]

    def order(o: Outcome) -> tuple[int, Decimal, int]:
        value = _sort_value(o, key) if o.ok else None
        if value is None:
            return (1, Decimal(0), o.job.index)
        return (0, -value if higher else value, o.job.index)

    return sorted(outcomes, key=order)


def table_text(ranked: Sequence[Outcome], key: str) -> str:
    """The ranked table for a person (fixed-width columns; no wall-clock values)."""
    header = ["rank", "params", *COLUMNS, "db / error"]
    rows = [header]
    for n, o in enumerate(ranked, start=1):
        cells = [str(o.figures.get(c) if o.figures.get(c) is not None else "-") for c in COLUMNS]
        tail = o.job.db.name if o.ok else f"FAILED {o.error}"
        rows.append([str(n), o.job.name, *cells, tail])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]).rstrip()
        for r in rows
    ]
    return f"ranked by {key}\n" + "\n".join(lines)


def table_csv(ranked: Sequence[Outcome]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    keys = list(dict.fromkeys(k for o in ranked for k, _ in o.job.params))
    writer.writerow(["rank", *keys, *COLUMNS, "exit_code", "error", "db"])
    for n, o in enumerate(ranked, start=1):
        params = dict(o.job.params)
        writer.writerow(
            [n, *(params.get(k, "") for k in keys), *(o.figures.get(c, "") for c in COLUMNS),
             "" if o.exit_code is None else o.exit_code, o.error or "", o.job.db.name]
        )
    return buffer.getvalue()


def table_json(ranked: Sequence[Outcome], key: str) -> str:
    rows = [dict(o.to_builtins(), rank=n) for n, o in enumerate(ranked, start=1)]
    for row in rows:  # wall-clock values would make two sweeps' files differ; the trade
        # lists would make the file grow with the runs (each database keeps them)
        row["figures"] = {k: v for k, v in row["figures"].items() if k not in {"run_id", "trades"}}
        row["db"] = Path(row["db"]).name
    return json.dumps({"rank_by": key, "rows": rows}, sort_keys=True, indent=1) + "\n"
