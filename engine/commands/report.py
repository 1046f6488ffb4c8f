"""``hybrid-engine report --db F [--run N] [--json] [--trades] [--html FILE]``.

The figures a trader reads for one run (the latest by default; docs/report.md
defines each), then the database's audit: positions, PnL, counts, conservation.

Exit status: 0 when every check holds, ``EXIT_AUDIT_FAILED`` when conservation
(I4) or the fills-vs-orders check fails anywhere in the database.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Final

from engine.exits import ConfigError
from engine.store.connection import open_readonly
from engine.store.pictures import write_html
from engine.store.report import build_report
from engine.store.rows import missing_tables
from engine.store.schema import DIGEST_TABLES

EXIT_AUDIT_FAILED: Final = 3
"""The database's records do not balance (a tampered or corrupted fills table)."""

MAX_RUN_ARGUMENT: Final = 200
"""``--run`` is a run id (``run-<ns>-<pid>``) or a number: longer is not one."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="one run's figures (PnL, round trips, drawdown, Sharpe) and the database's audit;"
        " exits non-zero if conservation fails",
    )
    parser.add_argument("--db", metavar="F", required=True, help="SQLite database to report on")
    parser.add_argument(
        "--run", metavar="N", help="run id, or number (1 the first, -1 the latest; default)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trades", action="store_true", help="list every round trip")
    parser.add_argument(
        "--html", metavar="FILE", help="also write a self-contained HTML page with the charts"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.run is not None and not 0 < len(args.run) <= MAX_RUN_ARGUMENT:
        raise ConfigError(f"--run: not a run id or number ({len(args.run)} characters)")
    if not Path(args.db).is_file():
        raise ConfigError(f"--db: no database at {args.db}")
    if args.html is not None and not Path(args.html).resolve().parent.is_dir():
        raise ConfigError(f"--html: no directory for {args.html}")
    try:
        conn = open_readonly(args.db)
    except sqlite3.DatabaseError as exc:  # not SQLite, or fails quick_check
        raise ConfigError(f"--db: {args.db} is not a readable engine database ({exc})") from None
    try:
        missing = missing_tables(conn, DIGEST_TABLES)  # lacks them all: not an engine file
        if missing:
            raise ConfigError(
                f"--db: {args.db} is not an engine database (no {', '.join(missing)} table)"
            )
        report = build_report(conn, run=args.run)
    except sqlite3.DatabaseError as exc:  # not SQLite, or corrupt
        raise ConfigError(f"--db: {args.db} is not a readable engine database ({exc})") from None
    finally:
        conn.close()
    if args.html is not None:
        if report.run is None:
            raise ConfigError(f"--html: {args.db} holds no run to draw")
        try:
            write_html(report.run, Path(args.html))
        except OSError as exc:
            raise ConfigError(f"--html: cannot write {args.html} ({exc.strerror})") from None
    if args.json:
        print(json.dumps(report.to_builtins(), sort_keys=True))
    else:
        print(report.to_text(trades=args.trades))
    return 0 if report.ok else EXIT_AUDIT_FAILED
