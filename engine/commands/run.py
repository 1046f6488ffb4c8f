"""``hybrid-engine run``: the service's main job, source taken from the configuration."""

from __future__ import annotations

import argparse

from engine.app import run_with
from engine.config.load import load_config


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run", help="run the engine (source from config; default synthetic)"
    )
    parser.add_argument("--config", metavar="F", help="TOML configuration file")
    parser.add_argument("--db", metavar="F", help="SQLite database (overrides engine.db_path)")
    parser.add_argument(
        "--arm-live", action="store_true", help="arm LIVE mode (same as LIVE_ARMED=true)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return run_with(config, command="run", db_path=args.db, arm_live=args.arm_live)
