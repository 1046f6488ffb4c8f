"""``hybrid-engine sweep CAPTURE... --grid section.key=v1,v2 ...``: a parameter sweep.

Every combination of the grid replays the captures in its own engine process,
into its own database under ``--out``; the ranked table of the report's key
figures is printed and written as ``sweep.json`` and ``sweep.csv`` beside the
databases (``engine.runtime.sweep``; docs/report.md, "Sweeps").

Exit status: 0 when every combination ran, 1 when one or more failed (each is a
row with its error), 12 for a refused argument, 13 when stopped (Ctrl-C,
SIGTERM: every child is stopped first).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import trio

from engine.config.load import load_config
from engine.exits import ConfigError, ExitCode
from engine.runtime import sweep

MAX_JOBS = 64


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sweep", help="replay captures once per combination of a grid of config keys, ranked"
    )
    parser.add_argument("captures", nargs="+", metavar="CAPTURE")
    parser.add_argument("--config", metavar="F", help="TOML configuration every run starts from")
    parser.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2",
        help="a config key (section.key) and its values; repeat for more keys",
    )
    parser.add_argument(
        "--jobs", type=int, metavar="N", help="processes at once (default: the number of cores)"
    )
    parser.add_argument(
        "--rank", default="net_pnl", choices=sorted(sweep.RANK_KEYS), metavar="FIGURE",
        help=f"figure to rank by (default net_pnl; one of {', '.join(sorted(sweep.RANK_KEYS))})",
    )
    parser.add_argument(
        "--out", metavar="DIR", default="var/sweep",
        help="folder for the databases, logs and tables (must be empty; default var/sweep)",
    )
    parser.set_defaults(handler=run)


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out: {path} exists and is not an empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out: cannot create {path} ({exc.strerror})") from None
    return out


def _started(job: sweep.Job, pid: int) -> None:
    print(f"sweep: started combination {job.index} ({job.name}) pid {pid}", file=sys.stderr,
          flush=True)


async def _main(jobs: list[sweep.Job], parallel: int) -> tuple[list[sweep.Outcome], bool]:
    result: list[sweep.Outcome] = []
    stopped = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def work() -> None:
                result.extend(await sweep.LocalExecutor(parallel, on_start=_started).run(jobs))
                nursery.cancel_scope.cancel()

            nursery.start_soon(work)
            async for _ in signals:
                stopped = True
                print("sweep: stopping every child (SIGTERM)", file=sys.stderr, flush=True)
                nursery.cancel_scope.cancel()
                break
    return result, stopped


def run(args: argparse.Namespace) -> int:
    for capture in args.captures:
        if not Path(capture).is_file():
            raise ConfigError(f"CAPTURE: no file at {capture}")
    parallel = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if not 1 <= parallel <= MAX_JOBS:
        raise ConfigError(f"--jobs: {parallel} is outside 1..{MAX_JOBS}")
    grid = sweep.parse_grid(args.grid)
    captures = [str(Path(c).resolve()) for c in args.captures]
    config = str(Path(args.config).resolve()) if args.config is not None else None
    load_config(config)  # the base configuration itself: exit 12 naming its key, once
    out = _out_dir(args.out)
    jobs = sweep.plan(captures, grid, out, config=config)
    outcomes, stopped = trio.run(_main, jobs, parallel)
    if stopped:
        print(f"sweep: stopped; partial results are in {out}", file=sys.stderr)
        return int(ExitCode.OVERLOAD)
    ranked = sweep.rank(outcomes, args.rank)
    (out / "sweep.json").write_text(sweep.table_json(ranked, args.rank), encoding="utf-8")
    (out / "sweep.csv").write_text(sweep.table_csv(ranked), encoding="utf-8")
    print(sweep.table_text(ranked, args.rank))
    print(f"tables: {out / 'sweep.json'}, {out / 'sweep.csv'}", file=sys.stderr)
    return 0 if all(o.ok for o in outcomes) else int(ExitCode.CRASH)
