"""Before/after, alternated in one invocation: the live bench and the replay bench of two
checkouts (each with its own ``.venv``), round after round, then the medians.

Each round runs ``bench/bench_live.py`` of the *after* checkout's harness against each
side's engine (the script is copied into the before checkout first, so both sides are
measured by the same harness; the engine, the fake exchange and the floor are each
side's own), then ``bench/bench_replay.py`` of each side. The order of the two sides
alternates between rounds so that neither always runs first.

Usage: python bench/before_after.py --before DIR --after DIR [--rounds N]
           [--live-args "..."] [--replay-args "..."]
Prints one JSON object on stdout (each run's figures and the medians); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

LIVE_ARGS = "--profile-rate 0"
REPLAY_ARGS = "--trades 1000000 --runs 3"


def run_json(checkout: Path, script: str, args: str) -> dict[str, Any]:
    """Run ``checkout``'s ``script`` with its own interpreter; its last stdout line is JSON
    (the live bench prints an indented object: then the whole stdout is)."""
    cmd = [str(checkout / ".venv" / "bin" / "python"), str(checkout / script), *shlex.split(args)]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, check=True).stdout
    try:
        result: dict[str, Any] = json.loads(out)
    except json.JSONDecodeError:
        result = json.loads(out.strip().splitlines()[-1])
    return result


def live_summary(figures: dict[str, Any]) -> dict[str, Any]:
    keys = ("rate", "sustained", "bp_drops_tick", "engine_latency_ms_p50",
            "engine_latency_ms_p99", "engine_latency_ms_max", "engine_peak_rss_mib",
            "ratio_peak_rss_mib")
    achieved = {s["target_rate"]: s["achieved_rate"] for s in figures["steps"]}
    return {
        "floor_rate": figures["floor_rate"],
        "max_rate_without_drops": figures["max_rate_without_drops"],
        "max_rate_ratio_to_floor": figures["max_rate_ratio_to_floor"],
        "table": [
            {**{k: row[k] for k in keys}, "achieved_rate": achieved[row["rate"]]}
            for row in figures["table"]
        ],
    }


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--live-args", default=LIVE_ARGS)
    parser.add_argument("--replay-args", default=REPLAY_ARGS)
    args = parser.parse_args(argv)
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    harness = sides["after"] / "bench" / "bench_live.py"
    if harness.resolve() != (sides["before"] / "bench" / "bench_live.py").resolve():
        shutil.copy(harness, sides["before"] / "bench" / "bench_live.py")
    live: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    replay: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for n in range(args.rounds):
        order = ("before", "after") if n % 2 == 0 else ("after", "before")
        for side in order:
            live[side].append(
                live_summary(run_json(sides[side], "bench/bench_live.py", args.live_args))
            )
        for side in order:
            replay[side].append(run_json(sides[side], "bench/bench_replay.py", args.replay_args))
    medians = {
        side: {
            "live_floor_rate": median([r["floor_rate"] for r in live[side]]),
            "live_max_rate_without_drops": median(
                [r["max_rate_without_drops"] for r in live[side]]
            ),
            "live_max_rate_ratio_to_floor": median(
                [r["max_rate_ratio_to_floor"] for r in live[side]]
            ),
            "replay_ratio": median([r["ratio_median"] for r in replay[side]]),
        }
        for side in sides
    }
    print(json.dumps({"sides": {k: str(v) for k, v in sides.items()}, "medians": medians,
                      "live": live, "replay": replay}, indent=2))


if __name__ == "__main__":
    main()
