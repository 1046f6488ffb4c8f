"""``hybrid-engine`` command line: a thin layer over one library call per command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine import logs
from engine.commands import load_commands
from engine.exits import ConfigError, ExitCode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybrid-engine",
        description="Shadow-first trading engine: ingest -> strategy -> execution -> persistence.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in load_commands():
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        logs.error("config_error", message=str(exc), exit_code=int(ExitCode.CONFIG))
        print(f"hybrid-engine: configuration error: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    return code


def entrypoint() -> None:
    sys.exit(main())
