"""``hybrid-engine digest --db F``: sha256 over what two runs of the same input must agree on.

stdout is the digest alone (scripts compare it); stderr names the mode(s) and the
number of runs the database holds, so a digest is never read without its account.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from engine.exits import ConfigError
from engine.store.connection import open_readonly
from engine.store.digest import digest
from engine.store.runs import count_runs, previous_modes


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
        with closing(open_readonly(args.db)) as conn:
            fingerprint = digest(conn)
            modes = previous_modes(conn)
            runs = count_runs(conn)
    except sqlite3.DatabaseError as exc:  # not SQLite, corrupt, or not the engine's schema
        raise ConfigError(f"--db: {args.db} is not a readable engine database ({exc})") from None
    print(fingerprint)
    plural = "run" if runs == 1 else "runs"
    print(f"mode {', '.join(modes) or 'none recorded'} ({runs} {plural})", file=sys.stderr)
    return 0
