"""``hybrid-engine digest --db F``: sha256 over what two runs of the same input must agree on."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from engine.exits import ConfigError
from engine.store.digest import digest_path


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "digest",
        help="sha256 of the canonical content of signals, vetoes, orders, order_events, fills",
    )
    parser.add_argument("--db", metavar="F", required=True, help="SQLite database to digest")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not Path(args.db).is_file():
        raise ConfigError(f"--db: no database at {args.db}")
    try:
        print(digest_path(args.db))
    except sqlite3.DatabaseError as exc:  # not SQLite, corrupt, or not the engine's schema
        raise ConfigError(f"--db: {args.db} is not a readable engine database ({exc})") from None
    return 0
