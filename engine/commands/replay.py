"""``hybrid-engine replay CAPTURE...``: replay recorded captures through the whole pipeline."""

from __future__ import annotations

import argparse

from engine.app import run_with
from engine.config.load import admit_argument, load_config


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay", help="replay capture files (<ts_recv_ns> <raw JSON> lines, plain or gzip)"
    )
    parser.add_argument("captures", nargs="+", metavar="CAPTURE")
    parser.add_argument("--config", metavar="F", help="TOML configuration file")
    parser.add_argument("--db", metavar="F", help="SQLite database (overrides engine.db_path)")
    parser.add_argument(
        "--speed",
        type=float,
        default=0.0,
        metavar="X",
        help="0 = as fast as possible (default), 1 = recorded pace, 2 = twice as fast",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    admit_argument("--speed", args.speed, "ingest.speed")  # refused like its TOML twin
    config = load_config(args.config)
    # run_with prints the end-of-run summary (engine.store.summary.print_run_summary).
    return run_with(
        config, command="replay", captures=args.captures, speed=args.speed, db_path=args.db
    )
