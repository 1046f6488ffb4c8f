"""``hybrid-engine report --db F [--json]``: positions, PnL, counts, and the conservation audit.

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
from engine.store.report import build_report
from engine.store.rows import missing_tables
from engine.store.schema import DIGEST_TABLES

EXIT_AUDIT_FAILED: Final = 3
"""The database's records do not balance (a tampered or corrupted fills table)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="positions, cash, fees, PnL, counts; exits non-zero if conservation fails",
    )
    parser.add_argument("--db", metavar="F", required=True, help="SQLite database to report on")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not Path(args.db).is_file():
        raise ConfigError(f"--db: no database at {args.db}")
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
        report = build_report(conn)
    except sqlite3.DatabaseError as exc:  # not SQLite, or corrupt
        raise ConfigError(f"--db: {args.db} is not a readable engine database ({exc})") from None
    finally:
        conn.close()
    if args.json:
        print(json.dumps(report.to_builtins(), sort_keys=True))
    else:
        print(report.to_text())
    return 0 if report.ok else EXIT_AUDIT_FAILED
