"""``hybrid-engine config [--config F | --example]``: print the effective configuration as JSON,
or the commented example configuration the operator's install starts from."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from typing import Final

import msgspec

from engine.config.load import config_to_builtins, load_config

EXAMPLE_FILE: Final = "example.toml"
"""Package data of ``engine``; the repository's ``systemd/engine.toml`` links to it."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config", help="print the effective configuration (defaults < file < ENGINE_* env)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="F", help="TOML configuration file")
    source.add_argument("--example", action="store_true",
                        help="print the commented example configuration (every key, its default"
                        " and range; WebSocket source, SHADOW) instead, as TOML")
    parser.set_defaults(handler=run)


def example_text() -> str:
    """The example configuration shipped with the package (``systemd/engine.toml``)."""
    return resources.files("engine.config").joinpath(EXAMPLE_FILE).read_text(encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    if args.example:
        sys.stdout.write(example_text())
        return 0
    config = load_config(args.config)
    text = msgspec.json.format(msgspec.json.encode(config_to_builtins(config)), indent=2)
    sys.stdout.write(text.decode() + "\n")
    return 0
