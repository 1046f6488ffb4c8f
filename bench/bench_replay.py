"""Replay throughput of the whole engine against the plain decode+insert floor.

Generates a seeded capture of N Binance trades (default 1,000,000), then runs,
alternating, the floor (bench/floor.py) and ``hybrid-engine replay`` -- each in a
fresh process into a fresh WAL database -- ``--runs`` times, and prints the
medians, their ratio and the engine's peak RSS. The engine's time is taken from
its own log (``pipeline_started`` to ``clean_shutdown``), so interpreter start-up
and imports are excluded on both sides.

``--pin CPU`` runs both on that one CPU only (the children inherit this
process's affinity): no thread of the engine can then overlap another, so the
ratio measures the CPU spent per tick -- steadier than the two-core figure when
other work shares the machine (see docs/performance.md).

Usage: python bench/bench_replay.py [--trades N] [--runs K] [--keep DIR] [--pin CPU]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.adapters.market.synthetic import write_synthetic_capture

HERE = Path(__file__).resolve().parent


def run_floor(capture: Path, db: Path) -> float:
    out = subprocess.run(
        [sys.executable, str(HERE / "floor.py"), str(capture), str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    return float(result["ticks"]) / float(result["seconds"])


def run_engine(
    capture: Path, db: Path, trades: int, python: Path | None = None
) -> tuple[float, int]:
    """One replay; ``python`` of another checkout's venv runs that checkout's engine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env["ENGINE_ENGINE_HEARTBEAT_INTERVAL_S"] = "60"
    log = db.with_suffix(".log")
    argv = [str(python or sys.executable), "-m", "engine", "replay", str(capture), "--db", str(db)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv,
            # "-m engine" imports from the working directory first: run in the venv's tree
            cwd=None if python is None else python.parent.parent.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"engine replay failed ({proc.returncode}): {stdout[-2000:]}")
    started = ended = None
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("event") == "pipeline_started":
            started = record["ts"]
        elif record.get("event") == "clean_shutdown":
            ended = record["ts"]
            if record.get("ingest_processed") != trades:
                raise SystemExit(f"engine accepted {record.get('ingest_processed')} of {trades}")
    if started is None or ended is None:
        raise SystemExit("engine log lacks pipeline_started/clean_shutdown")
    return trades / (ended - started), usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--pin", type=int, metavar="CPU", help="run everything on this CPU")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    capture = work / f"synthetic-{args.trades}.capture"
    t0 = time.perf_counter()
    if not capture.exists():
        write_synthetic_capture(capture, args.trades, seed=42)
    print(f"capture: {capture} ({args.trades} trades, written in {time.perf_counter() - t0:.1f}s)")
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    floors, engines, rss = [], [], []
    for i in range(args.runs):
        floors.append(run_floor(capture, work / f"floor-{i}.db"))
        rate, peak = run_engine(capture, work / f"engine-{i}.db", args.trades)
        engines.append(rate)
        rss.append(peak)
        print(
            f"run {i + 1}: floor {floors[-1]:,.0f} ticks/s  engine {engines[-1]:,.0f} ticks/s"
            f"  ratio {engines[-1] / floors[-1]:.2f}"
        )
        for db in work.glob(f"*-{i}.db*"):
            db.unlink()
    floor, engine = statistics.median(floors), statistics.median(engines)
    summary = {
        "trades": args.trades,
        "runs": args.runs,
        "pinned_cpu": args.pin,
        "floor_ticks_per_s_median": round(floor),
        "engine_ticks_per_s_median": round(engine),
        "ratio_median": round(engine / floor, 3),
        "ratios": [round(e / f, 3) for e, f in zip(engines, floors, strict=True)],
        "engine_peak_rss_mib": round(max(rss) / 1024, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
