"""The replay bench for two (or more) git revisions, alternated in one invocation.

"Did this change slow the replay path?" is answered by running the old and the
new code on the same capture, on the same machine, in the same minutes: a
figure from yesterday's run says more about yesterday's load than about the
code. For each revision this makes a detached worktree and a venv holding the
*current* lock (so only the engine's code differs, not its libraries), then
runs, ``--runs`` times in turn, the floor (bench/floor.py) and the engine of
each revision -- each a fresh process into a fresh WAL database, timed from its
own log as in bench/bench_replay.py -- and prints each revision's median ratio
to the floor and the last one's relative to the first (``after_over_before``).

Usage: python bench/bench_revisions.py BEFORE [MIDDLE ...] AFTER [--trades N]
       [--runs K] [--work DIR] [--pin CPU]
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

from bench_replay import run_engine, run_floor

from engine.adapters.market.synthetic import write_synthetic_capture

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements" / "lock.txt"


def checkout(rev: str, work: Path) -> Path:
    """A worktree of ``rev`` with its own venv (the current lock + that tree, editable)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = work / f"tree-{sha}"
    python = tree / ".venv" / "bin" / "python"
    if python.exists():
        return python
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), sha],
        check=True,
        capture_output=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--require-hashes", "-r", str(LOCK)], check=True)
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(tree)], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("revs", nargs="+", metavar="REV", help="two or more, oldest first")
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, help="keep worktrees, venvs and the capture here")
    parser.add_argument("--pin", type=int, metavar="CPU", help="run everything on this CPU")
    args = parser.parse_args()
    if len(args.revs) < 2:
        parser.error("give at least two revisions")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-revs-"))
    work.mkdir(parents=True, exist_ok=True)
    pythons = {rev: checkout(rev, work) for rev in args.revs}
    capture = work / f"synthetic-{args.trades}.capture"
    if not capture.exists():
        write_synthetic_capture(capture, args.trades, seed=42)
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    ratios: dict[str, list[float]] = {rev: [] for rev in pythons}
    rss: dict[str, list[int]] = {rev: [] for rev in pythons}
    started = time.perf_counter()
    for i in range(args.runs):
        floor = run_floor(capture, work / f"floor-{i}.db")
        line = [f"run {i + 1}: floor {floor:,.0f} ticks/s"]
        for rev, python in pythons.items():
            rate, peak = run_engine(capture, work / f"engine-{i}.db", args.trades, python)
            ratios[rev].append(rate / floor)
            rss[rev].append(peak)
            line.append(f"{rev} {rate:,.0f} ({rate / floor:.3f})")
            for db in work.glob(f"*-{i}.db*"):
                db.unlink()
        print("  ".join(line), flush=True)
    medians = {rev: statistics.median(values) for rev, values in ratios.items()}
    summary = {
        "trades": args.trades,
        "runs": args.runs,
        "pinned_cpu": args.pin,
        "seconds": round(time.perf_counter() - started),
        "ratio_to_floor_median": {rev: round(m, 3) for rev, m in medians.items()},
        "ratios": {rev: [round(r, 3) for r in values] for rev, values in ratios.items()},
        "peak_rss_mib": {rev: round(max(values) / 1024, 1) for rev, values in rss.items()},
        "after_over_before": round(medians[args.revs[-1]] / medians[args.revs[0]], 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
