"""``hybrid-engine replay CAPTURE...``: replay recorded captures through the whole pipeline."""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path

from engine import logs
from engine.app import run_with
from engine.config import admit_argument, load_config
from engine.store.connection import open_readonly
from engine.store.digest import digest, table_counts


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
    code = run_with(
        config, command="replay", captures=args.captures, speed=args.speed, db_path=args.db
    )
    if code == 0:
        report_results(args.db or config.engine.db_path)
    return code


def report_results(db_path: str) -> None:
    """Say where the results went: the database, what it holds, and its digest."""
    with closing(open_readonly(db_path)) as conn:
        counts = table_counts(conn)
        fingerprint = digest(conn)
    logs.info("replay_results", db_path=str(Path(db_path).resolve()), digest=fingerprint, **counts)
    print(
        f"replay complete: {counts.get('ticks', 0)} ticks, {counts.get('signals', 0)} signals, "
        f"{counts.get('orders', 0)} orders, {counts.get('fills', 0)} fills, "
        f"{counts.get('vetoes', 0)} vetoes -> {Path(db_path).resolve()}\n"
        f"digest {fingerprint}  (inspect: hybrid-engine report --db {db_path})",
        file=sys.stderr,
    )
