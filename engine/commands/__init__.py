"""CLI subcommands, one module each: ``add_parser(subparsers)`` and ``run(args) -> int``.

To add a command, write ``engine/commands/<name>.py`` with those two functions and
list the module in ``COMMANDS`` below (the only line to touch here).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Final, Protocol


class Command(Protocol):
    def add_parser(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        ...

    def run(self, args: argparse.Namespace) -> int:
        ...


COMMANDS: Final[tuple[str, ...]] = (
    "run",
    "replay",
    "config",
    "digest",
    "gate",
    "proof",
    "dashboard",
    "health",
    "report",
    "record",
)


def load_commands() -> list[Command]:
    modules: list[Command] = []
    for name in COMMANDS:
        module: Command = importlib.import_module(f"engine.commands.{name}")
        modules.append(module)
    return modules
