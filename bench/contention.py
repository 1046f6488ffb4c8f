"""Health under CPU contention (docs/contract.md I7, S15): engine + dashboard beside busy loops.

What runs, each in its own process at normal priority (no nice, no cgroup
weights -- the worst case; the systemd units add CPUWeight on top):

* the engine, ``hybrid-engine run`` with the synthetic source at ``--rate``
  ticks/s and a ``--heartbeat`` interval;
* the dashboard, ``hybrid-engine dashboard`` on 127.0.0.1 (port chosen by the OS);
* ``--hogs`` busy loops (default: 2 per core), started once the engine is up;
* this process, probing ``/healthz`` about once a second and, at the end while
  the hogs still run, the command-line healthcheck.

What it reports (JSON on stdout), read from the engine's own database:

* ``heartbeat_max_gap_s``: the largest wall-clock gap between consecutive
  heartbeats of the run (the interval is ``heartbeat_interval_s``; the health
  limit is 3 intervals);
* ``ticks``, ``ticks_expected``, ``trade_ids_contiguous``, ``bp_drops_tick``:
  every tick generated at the configured rate reached the database, none dropped;
* ``tick_recv_max_gap_ms``: the largest gap between consecutive receive stamps
  (how long ingest was ever kept off the CPU);
* ``healthz``: probes, non-200 answers, failures, max/median latency;
* ``healthcheck``: the CLI's verdict line and how long it took.

``check(report)`` states the contract's bounds; ``main`` exits 1 when one fails.

Usage: python bench/contention.py [--duration 30] [--rate 100] [--heartbeat 1] [--hogs N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
HEALTHZ_TIMEOUT_S: Final = 5.0
"""A /healthz probe that takes longer counts as a failure (the healthcheck's own step timeout)."""
HEALTHCHECK_BUDGET_S: Final = 30.0
FRESH_INTERVALS: Final = 3
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 60.0
HOG_CODE: Final = "while True:\n    pass\n"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "LIVE_ARMED"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class LogReader:
    """Collects a child's JSON log lines in a thread; ``wait_for`` blocks on a condition."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.lines: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for raw in stream:
            text = raw.strip()
            if text.startswith("{"):
                try:
                    self._queue.put(json.loads(text))
                except ValueError:
                    continue
        self._queue.put(None)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"no matching log line within {timeout} s")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError("process exited before the expected log line")
            self.lines.append(line)
            if predicate(line):
                return line

    def drain(self) -> None:
        self._thread.join(timeout=STOP_TIMEOUT_S)
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], LogReader]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", *args], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
    )
    assert proc.stdout is not None
    return proc, LogReader(proc.stdout)


def _start_dashboard_and_hogs(
    db: Path, hogs: int, procs: list[subprocess.Popen[Any]]
) -> tuple[subprocess.Popen[str], str]:
    """Start the dashboard on ``db`` and ``hogs`` busy loops (all added to ``procs``);
    return the dashboard process and its URL once it listens."""
    dashboard, dash_log = _start(["dashboard", "--db", str(db), "--port", "0"], _env())
    procs.append(dashboard)
    url: str = dash_log.wait_for(
        lambda line: line.get("event") == "dashboard_listening", START_TIMEOUT_S
    )["urls"][0]
    for _ in range(hogs):
        procs.append(subprocess.Popen([sys.executable, "-c", HOG_CODE]))
    return dashboard, url


def _probe(url: str) -> tuple[int | None, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=HEALTHZ_TIMEOUT_S) as response:
            response.read()
            status: int | None = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError):
        status = None
    return status, time.monotonic() - started


def _analyse(db: Path, run_id: str, rate: float) -> dict[str, Any]:
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        beats = conn.execute(
            "SELECT ts_wall_ns, interval_s, final, counters FROM heartbeats WHERE run_id = ?"
            " ORDER BY hb_id", (run_id,),
        ).fetchall()
        started, ended = conn.execute(
            "SELECT started_wall_ns, ended_wall_ns FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        n, lo, hi = conn.execute(
            "SELECT COUNT(*), MIN(trade_id), MAX(trade_id) FROM ticks"
        ).fetchone()
        recv = [r[0] for r in conn.execute("SELECT ts_recv FROM ticks ORDER BY ts_recv")]
    periodic = [b for b in beats if not b[2]]
    gaps = [(b[0] - a[0]) / 1e9 for a, b in itertools.pairwise(periodic)]
    final = json.loads(beats[-1][3]) if beats else {}
    recv_gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(recv)]
    span_s = (recv[-1] - recv[0]) / 1e9 if len(recv) > 1 else 0.0
    return {
        "heartbeats": len(beats),
        "heartbeat_interval_s": beats[0][1] if beats else None,
        "heartbeat_max_gap_s": round(max(gaps), 3) if gaps else None,
        "heartbeat_median_gap_s": round(statistics.median(gaps), 3) if gaps else None,
        "run_s": round(((ended or started) - started) / 1e9, 3),
        "ticks": n,
        "ticks_expected": round(span_s * rate) + 1,
        "trade_ids_contiguous": n > 0 and hi - lo + 1 == n,
        "bp_drops_tick": final.get("bp_drops_tick"),
        "ingest_processed": final.get("ingest_processed"),
        "tick_recv_max_gap_ms": round(max(recv_gaps), 1) if recv_gaps else None,
    }


def run_contention(
    workdir: Path, *, duration_s: float, rate: float, heartbeat_s: float, hogs: int,
) -> dict[str, Any]:
    """Run the scenario in ``workdir`` and return the report (see module docstring).

    *Resource handling:* every process started here is stopped (hogs killed,
    engine and dashboard sent SIGINT, then killed if they overrun) before returning.
    """
    db = workdir / "engine.db"
    engine_env = _env(
        ENGINE_ENGINE_HEARTBEAT_INTERVAL_S=str(heartbeat_s),
        ENGINE_INGEST_SOURCE="synthetic",
        ENGINE_INGEST_SYNTHETIC_RATE_PER_S=str(rate),
    )
    procs: list[subprocess.Popen[Any]] = []
    report: dict[str, Any] = {"duration_s": duration_s, "rate_per_s": rate,
                              "heartbeat_s": heartbeat_s, "hogs": hogs, "cores": os.cpu_count()}
    try:
        engine, engine_log = _start(["run", "--db", str(db)], engine_env)
        procs.append(engine)
        first = engine_log.wait_for(lambda line: line.get("event") == "heartbeat", START_TIMEOUT_S)
        run_id = first["run_id"]
        dashboard, url = _start_dashboard_and_hogs(db, hogs, procs)

        statuses: list[int | None] = []
        latencies: list[float] = []
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            status, latency = _probe(url + "/healthz")
            statuses.append(status)
            latencies.append(latency)
            time.sleep(max(0.0, min(1.0 - latency, end - time.monotonic())))
        started = time.monotonic()
        check = subprocess.run(
            [sys.executable, "-m", "engine", "health", "--db", str(db), "--url", url, "--unit", ""],
            capture_output=True, text=True, env=_env(), cwd=REPO, timeout=60, check=False,
        )
        report["healthcheck"] = {"output": check.stdout.strip(), "exit_code": check.returncode,
                                 "seconds": round(time.monotonic() - started, 3)}
        report["healthz"] = {
            "probes": len(statuses),
            "non_200": sum(1 for s in statuses if s is not None and s != 200),
            "failed": statuses.count(None),
            "max_latency_s": round(max(latencies), 3),
            "median_latency_s": round(statistics.median(latencies), 3),
        }
        for hog in procs[2:]:
            hog.kill()
        engine.send_signal(signal.SIGINT)
        report["engine_exit_code"] = engine.wait(timeout=STOP_TIMEOUT_S)
        engine_log.drain()
        dashboard.send_signal(signal.SIGINT)
        report["dashboard_exit_code"] = dashboard.wait(timeout=STOP_TIMEOUT_S)
        report.update(_analyse(db, run_id, rate))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return report


REPLAY_PROBES: Final = ("/healthz", "/api/status", "/api/prices?symbol=BTCUSDT", "/metrics")
"""What the replay-load scenario requests back to back while the engine writes."""


def run_replay_load(workdir: Path, *, trades: int, hogs: int = 0) -> dict[str, Any]:
    """The dashboard answering while a replay writes at full speed (the issue's "stays
    responsive"): probes ``REPLAY_PROBES`` back to back for as long as the replay runs.

    Probing starts once the replay logged ``pipeline_started``. Statuses are
    counted per code: every answer is 200 except /healthz answering 503 after
    the replay's run has ended (a finished run is not a healthy engine).
    """
    from engine.adapters.market.synthetic import write_synthetic_capture

    capture = workdir / "capture.txt"
    write_synthetic_capture(capture, trades, seed=7)
    db = workdir / "replay.db"
    procs: list[subprocess.Popen[Any]] = []
    latencies: dict[str, list[float]] = {path: [] for path in REPLAY_PROBES}
    codes: dict[str, dict[str, int]] = {path: {} for path in REPLAY_PROBES}
    try:
        dashboard, url = _start_dashboard_and_hogs(db, hogs, procs)
        started = time.monotonic()
        replay, replay_log = _start(["replay", str(capture), "--db", str(db)],
                                    _env(ENGINE_ENGINE_HEARTBEAT_INTERVAL_S="1"))
        procs.append(replay)
        replay_log.wait_for(lambda line: line.get("event") == "pipeline_started", START_TIMEOUT_S)
        while replay.poll() is None:
            for path in REPLAY_PROBES:
                status, latency = _probe(url + path)
                latencies[path].append(latency)
                key = str(status)
                codes[path][key] = codes[path].get(key, 0) + 1
        replay_s = time.monotonic() - started
        replay_log.drain()
        done = [line for line in replay_log.lines if line.get("event") == "clean_shutdown"]
        for proc in procs[1:]:
            if proc.poll() is None:
                proc.kill()
        dashboard.send_signal(signal.SIGINT)
        dashboard.wait(timeout=STOP_TIMEOUT_S)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    all_latencies = [x for values in latencies.values() for x in values]
    return {
        "trades": trades,
        "hogs": hogs,
        "replay_exit_code": replay.returncode,
        "replay_wall_s": round(replay_s, 3),
        "ticks_persisted": done[0]["tick_count"] if done else None,
        "requests": len(all_latencies),
        "status_codes": codes,
        "max_latency_s": {p: round(max(v), 3) for p, v in latencies.items() if v},
        "median_latency_s": round(statistics.median(all_latencies), 4) if all_latencies else None,
    }


def check(report: dict[str, Any]) -> list[str]:
    """The contract's bounds (I7): one message per bound the run broke."""
    problems = []
    limit = FRESH_INTERVALS * report["heartbeat_s"]
    gap = report.get("heartbeat_max_gap_s")
    if gap is None or gap >= limit:
        problems.append(f"heartbeat gap {gap} s not below {limit} s")
    if not report["trade_ids_contiguous"] or report["bp_drops_tick"] != 0:
        problems.append(f"ticks lost: contiguous={report['trade_ids_contiguous']}"
                        f" drops={report['bp_drops_tick']}")
    if report["ticks"] < 0.9 * report["ticks_expected"]:
        problems.append(f"ticks {report['ticks']} below 90% of {report['ticks_expected']}")
    hz = report["healthz"]
    if hz["non_200"] or hz["failed"]:
        problems.append(f"/healthz: {hz['non_200']} non-200, {hz['failed']} failed probes")
    hc = report["healthcheck"]
    if hc["output"] != "PASS" or hc["seconds"] >= HEALTHCHECK_BUDGET_S:
        problems.append(f"healthcheck {hc['output']!r} in {hc['seconds']} s")
    if report["engine_exit_code"] != 0:
        problems.append(f"engine exited {report['engine_exit_code']}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of contention")
    parser.add_argument("--rate", type=float, default=100.0, help="synthetic ticks per second")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="heartbeat interval (s)")
    parser.add_argument("--hogs", type=int, default=2 * (os.cpu_count() or 1),
                        help="busy-loop processes (default: 2 per core)")
    parser.add_argument("--replay-trades", type=int, default=0, metavar="N",
                        help="also replay N synthetic trades at full speed while probing the"
                        " dashboard back to back (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contention-") as tmp:
        report = run_contention(Path(tmp), duration_s=args.duration, rate=args.rate,
                                heartbeat_s=args.heartbeat, hogs=args.hogs)
    problems = check(report)
    report["problems"] = problems
    if args.replay_trades:
        with tempfile.TemporaryDirectory(prefix="replay-load-") as tmp:
            report["replay_load"] = run_replay_load(Path(tmp), trades=args.replay_trades)
    print(json.dumps(report, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
