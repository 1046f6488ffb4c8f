"""``hybrid-engine health [--config F] [--db F] [--url URL]``: print PASS or FAIL: <reasons>.

Exit 0 on PASS, 1 on FAIL; answers within ``HEALTHCHECK_BUDGET_S`` (each step
has its own timeout). See ``engine.dashboard.health`` for what is checked.
"""

from __future__ import annotations

import argparse
import time

from engine.config.load import load_config
from engine.dashboard.health import (
    DEFAULT_DASHBOARD_URL,
    DEFAULT_UNIT,
    format_result,
    run_healthcheck,
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "health",
        help="healthcheck: PASS or FAIL: <reasons> (exit 0/1)",
        description="Check that the systemd unit is active (where systemd runs), the engine's"
        " last heartbeat is fresh, the database PRAGMAs hold and the dashboard's /healthz"
        " answers 200. Prints PASS or FAIL: <reasons>.",
    )
    parser.add_argument("--config", metavar="F",
                        help="TOML configuration file (for engine.db_path)")
    parser.add_argument("--db", metavar="F", help="database file (default: engine.db_path)")
    parser.add_argument("--url", default=DEFAULT_DASHBOARD_URL,
                        help="dashboard base URL; '' skips the check (default %(default)s)")
    parser.add_argument("--unit", default=DEFAULT_UNIT,
                        help="systemd unit to check where systemd runs; '' skips"
                        " (default %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    db_path = args.db or load_config(args.config).engine.db_path
    problems = run_healthcheck(db_path, args.url or None, args.unit or None, time.time_ns)
    print(format_result(problems), flush=True)
    return 0 if not problems else 1

