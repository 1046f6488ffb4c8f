"""``hybrid-engine config [--config F]``: print the effective configuration as JSON."""

from __future__ import annotations

import argparse
import sys

import msgspec

from engine.config import config_to_builtins, load_config


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config", help="print the effective configuration (defaults < file < ENGINE_* env)"
    )
    parser.add_argument("--config", metavar="F", help="TOML configuration file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    text = msgspec.json.format(msgspec.json.encode(config_to_builtins(config)), indent=2)
    sys.stdout.write(text.decode() + "\n")
    return 0
