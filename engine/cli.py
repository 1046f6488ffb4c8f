"""``hybrid-engine`` command line: a thin layer over one library call per command.

Every refusal of what the operator gave -- a bad argument as much as a bad
configuration key -- is exit 12 (CONFIG, which systemd does not restart) with
exactly one line on stderr naming the argument or key. argparse's own usage
errors would exit 2 after a usage banner, and ``Restart=on-failure`` would
restart a unit with a typo in its ``ExecStart`` forever.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Final, NoReturn, cast

from engine import logs
from engine.commands import (
    config,
    dashboard,
    digest,
    gate,
    health,
    proof,
    record,
    replay,
    report,
    run,
    strategy,
    sweep,
)
from engine.exits import ConfigError, ExitCode
from engine.runtime.console import one_line

PROG: Final = "hybrid-engine"

COMMANDS: Final[tuple[ModuleType, ...]] = (
    run,
    replay,
    config,
    digest,
    gate,
    proof,
    dashboard,
    health,
    report,
    record,
    strategy,
    sweep,
)
"""Every subcommand, in ``--help`` order: each has ``add_parser`` and ``run``."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are exit 12 with one line (see the module docstring)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()  # "replay" for a subcommand's parser
        refuse(f"{command}: {message}" if command else message)
        sys.exit(int(ExitCode.CONFIG))


def refuse(message: str) -> None:
    """Log a configuration refusal and print it as one line on stderr."""
    line = one_line(message)
    logs.error("config_error", message=line, exit_code=int(ExitCode.CONFIG))
    print(f"{PROG}: configuration error: {line}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Shadow-first trading engine: ingest -> strategy -> execution -> persistence.",
    )
    subparsers = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        refuse(str(exc))
        return int(ExitCode.CONFIG)
    return code


def entrypoint() -> None:
    """The console script. A reader that closes the pipe early (``report | head``) ends
    the output, not in a traceback: stdout is pointed at /dev/null so the interpreter's
    final flush cannot fail again, and the exit is 1 as Python's own on EPIPE."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
