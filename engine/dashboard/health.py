"""Is the engine healthy? One verdict for ``/healthz``, ``hybrid-engine health`` and the script.

The engine is healthy when, read from its database:

* the file is in WAL mode (``journal_mode`` lives in the file) and the engine's
  own connection recorded the required PRAGMAs at start-up (``runs.pragmas_json``;
  ``synchronous``/``busy_timeout``/``temp_store`` are per connection, so no
  other process can read them back directly);
* its latest run has not ended (a run that recorded its shutdown is not a
  running engine, however clean the shutdown);
* its last heartbeat is younger than ``FRESH_INTERVALS`` times the interval the
  engine recorded with it -- or, before the first heartbeat, the run started
  less than that long ago;
* for a live feed (``[ingest] source = "websocket"``), it makes *progress*: the
  last admitted tick (``last_tick_wall_ns`` in the heartbeat's counters, or the
  run's start before the first tick) is younger than ``max_downtime_s`` plus one
  heartbeat interval (``tick_silence_limit_s``). The feed itself gives up with
  exit 10 after ``max_downtime_s`` without a tick, and the heartbeat reports the
  tick time at most one interval late: past that bound the engine is stalled,
  whatever ``connected`` says.

The command-line healthcheck adds what only the host can tell: the systemd
unit is active (where systemd runs) and the dashboard answers ``/healthz``
with 200. Every check has its own timeout so the whole verdict arrives well
within ``HEALTHCHECK_BUDGET_S``.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from engine.core.events import NS_PER_S
from engine.core.staleness import tick_silence_limit_s
from engine.dashboard.db import DatabaseUnavailable, QueryTooSlow, ReadOnlyDatabase
from engine.dashboard.queries.runs import latest_heartbeats, latest_run
from engine.store.connection import check_pragmas, file_pragma_problems

FRESH_INTERVALS: Final = 3
"""A heartbeat older than this many of its own intervals is stale (the engine is stuck or gone)."""

DEFAULT_HEARTBEAT_INTERVAL_S: Final = 10.0
"""Used only to judge a run that has not written its first heartbeat and recorded no config."""

HEALTHCHECK_BUDGET_S: Final = 30.0
"""The whole command-line healthcheck must answer within this (docs/contract.md I7)."""

STEP_TIMEOUT_S: Final = 5.0
"""Each of the healthcheck's three external steps (systemctl, HTTP, SQLite) gives up after
this; three steps stay well inside ``HEALTHCHECK_BUDGET_S``."""

DEFAULT_UNIT: Final = "hybrid-engine.service"
DEFAULT_DASHBOARD_URL: Final = "http://127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a health evaluation: healthy iff there are no problems."""

    problems: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "fail", "problems": list(self.problems),
                **self.details}


def _config_value(run: dict[str, Any], section: str, key: str) -> Any:
    config = run.get("config")
    if isinstance(config, dict):
        values = config.get(section)
        if isinstance(values, dict):
            return values.get(key)
    return None


def _positive(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e12:
        return float(value)
    return None


def _interval_from_config(run: dict[str, Any]) -> float:
    value = _positive(_config_value(run, "engine", "heartbeat_interval_s"))
    return DEFAULT_HEARTBEAT_INTERVAL_S if value is None else value


def _recorded_interval_s(heartbeat: dict[str, Any]) -> float:
    """The interval a heartbeat row recorded; ``ValueError`` unless a finite number
    (the engine writes one; NaN would also make the verdict's JSON invalid)."""
    interval = float(heartbeat["interval_s"])
    if not math.isfinite(interval):
        raise ValueError(f"heartbeat interval_s is not finite: {interval!r}")
    return interval




def _progress_problems(
    run: dict[str, Any], heartbeat: dict[str, Any] | None, now_wall_ns: int,
    details: dict[str, Any],
) -> list[str]:
    """A live feed that admitted no tick for too long is stalled (see the module docstring)."""
    if run.get("command", "run") != "run" or _config_value(run, "ingest", "source") != "websocket":
        return []  # a replay reads files: its progress is not the network's
    max_downtime = _positive(_config_value(run, "ingest", "max_downtime_s"))
    if max_downtime is None:
        return ["live feed: no max_downtime_s recorded with the run's configuration"]
    interval = _interval_from_config(run) if heartbeat is None else _recorded_interval_s(heartbeat)
    limit = tick_silence_limit_s(max_downtime, interval)
    counters = heartbeat.get("counters") if heartbeat is not None else None
    last = counters.get("last_tick_wall_ns") if isinstance(counters, dict) else None
    ticked = isinstance(last, int) and not isinstance(last, bool) and last > 0
    since = last if isinstance(last, int) and ticked else int(run.get("started_wall_ns") or 0)
    age = (now_wall_ns - since) / NS_PER_S
    details.update(tick_age_s=round(age, 3), tick_limit_s=limit)
    if age <= limit:
        return []
    what = "last admitted tick" if ticked else "no tick admitted since the run started"
    return [
        f"live feed stalled: {what} {age:.1f} s ago, limit {limit:g} s"
        f" (max_downtime_s {max_downtime:g} + heartbeat interval {interval:g})"
    ]


def judge(
    run: dict[str, Any] | None,
    heartbeat: dict[str, Any] | None,
    file_problems: list[str],
    now_wall_ns: int,
) -> Verdict:
    """The verdict from what the database holds (pure: no I/O, ``now`` passed in)."""
    problems = list(file_problems)
    details: dict[str, Any] = {"now_wall_ns": now_wall_ns}
    if run is None:
        problems.append("no engine run recorded in the database")
        return Verdict(tuple(problems), details)
    details["run_id"] = run["run_id"]
    details["mode"] = run.get("mode")
    pragmas = run.get("pragmas")
    if isinstance(pragmas, dict):
        details["engine_pragmas"] = pragmas
        problems += [f"engine connection: {p}" for p in check_pragmas(pragmas)]
    else:
        problems.append("engine connection: no PRAGMAs recorded for the run")
    if run.get("ended_wall_ns") is not None:
        clean = "cleanly" if run.get("clean_shutdown") else "not cleanly"
        problems.append(
            f"engine stopped: run {run['run_id']} ended {clean}"
            f" with exit code {run.get('exit_code')}"
        )
    if heartbeat is None:
        interval = _interval_from_config(run)
        limit = FRESH_INTERVALS * interval
        since_start = (now_wall_ns - int(run.get("started_wall_ns") or 0)) / NS_PER_S
        details.update(heartbeat_age_s=None, heartbeat_interval_s=interval, limit_s=limit)
        if since_start > limit:
            problems.append(
                f"no heartbeat from run {run['run_id']} in {since_start:.1f} s since it started"
                f" (limit {limit:g} s = {FRESH_INTERVALS} x {interval:g} s)"
            )
        problems += _progress_problems(run, None, now_wall_ns, details)
        return Verdict(tuple(problems), details)
    interval = _recorded_interval_s(heartbeat)
    limit = FRESH_INTERVALS * interval
    age = (now_wall_ns - int(heartbeat["ts_wall_ns"])) / NS_PER_S
    details.update(
        heartbeat_age_s=round(age, 3),
        heartbeat_interval_s=interval,
        limit_s=limit,
        trading_state=heartbeat.get("trading_state"),
        final=heartbeat.get("final"),
    )
    if heartbeat.get("final") and run.get("ended_wall_ns") is None:
        problems.append(f"engine stopped: run {run['run_id']} wrote its final heartbeat")
    if age > limit:
        problems.append(
            f"heartbeat stale: last one {age:.1f} s ago, limit {limit:g} s"
            f" ({FRESH_INTERVALS} x {interval:g} s)"
        )
    if run.get("ended_wall_ns") is None and not heartbeat.get("final"):
        problems += _progress_problems(run, heartbeat, now_wall_ns, details)
    return Verdict(tuple(problems), details)


def read_verdict(conn: sqlite3.Connection, now_wall_ns: int) -> Verdict:
    """Read the latest run, its last heartbeat and the file PRAGMAs, then ``judge``."""
    file_problems = file_pragma_problems(conn)
    run = latest_run(conn)
    beats = latest_heartbeats(conn, run["run_id"] if run else None, 1) if run else []
    return judge(run, beats[0] if beats else None, file_problems, now_wall_ns)


def database_verdict(db: ReadOnlyDatabase, now_wall_ns: int) -> Verdict:
    """``read_verdict`` on a fresh read-only connection; an unreadable database is a problem.

    *Error handling:* never raises for what the file holds. A database that cannot be
    opened or queried in time, or a run/heartbeat row the verdict cannot read (a corrupt
    or hostile value), is a verdict with that problem -- unhealthy, never a traceback
    (``health``) or a 500 (``/healthz``).
    """
    try:
        with db.connect() as conn:
            return read_verdict(conn, now_wall_ns)
    except (DatabaseUnavailable, QueryTooSlow) as exc:
        return Verdict((str(exc),), {"now_wall_ns": now_wall_ns})
    except Exception as exc:  # a row the verdict cannot read
        problem = f"health unreadable: {type(exc).__name__} reading the latest run or heartbeat"
        detail = f"{type(exc).__name__}: {exc}"[:500]
        return Verdict((problem,), {"now_wall_ns": now_wall_ns, "unreadable": detail})


# -- host checks (command-line healthcheck only) -----------------------------------


def systemd_booted() -> bool:
    """sd_booted(3): systemd is PID 1 when ``/run/systemd/system`` exists."""
    return os.path.isdir("/run/systemd/system")


def service_problems(
    unit: str,
    *,
    systemctl: str = "systemctl",
    booted: Callable[[], bool] = systemd_booted,
    timeout_s: float = STEP_TIMEOUT_S,
) -> list[str]:
    """``systemctl is-active UNIT``; no problem where systemd is not running (containers)."""
    if not booted():
        return []
    exe = shutil.which(systemctl)
    if exe is None:
        return []
    try:
        result = subprocess.run(
            [exe, "is-active", unit], capture_output=True, text=True, timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [f"service {unit}: systemctl did not answer within {timeout_s:g} s"]
    except OSError as exc:
        return [f"service {unit}: cannot run systemctl ({exc})"]
    state = result.stdout.strip() or result.stderr.strip() or "unknown"
    if result.returncode != 0 or state != "active":
        return [f"service {unit} is not active ({state})"]
    return []


def dashboard_problems(url: str, *, timeout_s: float = STEP_TIMEOUT_S) -> list[str]:
    """GET ``<url>/healthz``; anything but 200 is a problem, with the body's reasons."""
    target = url.rstrip("/") + "/healthz"
    request = urllib.request.Request(target, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status = response.status
            body = response.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        status = exc.code
        body = exc.read(64 * 1024)
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        # HTTPException: something answered that does not speak HTTP (BadStatusLine, ...).
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        return [f"dashboard {target} not answering ({reason})"]
    if status == 200:
        return []
    reasons = ""
    try:
        payload = json.loads(body)
        if isinstance(payload, dict) and payload.get("problems"):
            reasons = ": " + "; ".join(str(p) for p in payload["problems"])
    except ValueError:
        pass
    return [f"dashboard {target} answered {status}{reasons}"]


def run_healthcheck(
    db_path: str | Path,
    url: str | None,
    unit: str | None,
    now_wall_ns: Callable[[], int],
    *,
    booted: Callable[[], bool] = systemd_booted,
    systemctl: str = "systemctl",
) -> list[str]:
    """Every problem the command-line healthcheck finds (``[]`` means PASS).

    Order: service, database (heartbeat, run, PRAGMAs), dashboard.
    """
    problems: list[str] = []
    if unit:
        problems += service_problems(unit, systemctl=systemctl, booted=booted)
    db = ReadOnlyDatabase(db_path, deadline_s=STEP_TIMEOUT_S)
    problems += database_verdict(db, now_wall_ns()).problems
    if url:
        problems += dashboard_problems(url)
    return problems


def format_result(problems: list[str]) -> str:
    """``PASS`` or ``FAIL: <reason>; <reason>`` -- one line for scripts and humans.

    Line breaks inside a reason (a peer's text quoted in it) become spaces, so
    the verdict stays one line whatever the reasons say.
    """
    return "PASS" if not problems else "FAIL: " + "; ".join(" ".join(p.split()) for p in problems)
