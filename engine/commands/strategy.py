"""``hybrid-engine strategy check KIND [--config F] [--capture F...]``: prove a strategy.

Runs the properties of ``engine.proof.any_strategy`` for the strategy ``KIND``
(a built-in, ``package.module:ClassName`` or ``path/to/file.py:ClassName``) on
the ticks of the captures given (default: the packaged
``btcusdt_20240808.gz``) and prints one ``PASS name (...)`` or ``FAIL name:
reason`` line per property on stdout, then the verdict line.

The parameters are those of ``--config``'s ``[strategy]`` section when its
``kind`` is ``KIND``; otherwise the strategy's defaults (the line says which).

Exit 0 when every property passed, 1 when one failed, 12 with one line naming
the key or argument for a strategy that cannot be loaded, a bad parameter or
a file that is not a capture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.config.load import load_config
from engine.config.strategies import absolute_kind, admit_strategy
from engine.exits import ConfigError, ExitCode
from engine.proof.any_strategy import check_strategy, property_line


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "strategy", help="prove a strategy: `strategy check KIND` runs its properties"
    )
    actions = parser.add_subparsers(dest="strategy_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="same signals in two fresh processes and under any batching; no I/O, clock or "
        "randomness; ticks never mutated",
    )
    check.add_argument("kind", metavar="KIND", help="sma_cross, donchian_breakout, "
                       "package.module:ClassName or path/to/file.py:ClassName")  # fmt: skip
    check.add_argument("--config", metavar="F", help="TOML configuration ([strategy] parameters)")
    check.add_argument("--capture", metavar="F", action="append", default=[],
                       help="capture to run on (repeatable; default: the bundled one)")  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.config is not None and config.strategy.kind == absolute_kind(args.kind):
        choice, source = config.strategy, f"parameters from {args.config}"
    else:
        choice, source = admit_strategy({"kind": args.kind}), "default parameters"
    captures = []
    for raw in args.capture:
        path = Path(raw)
        if not path.is_file():
            raise ConfigError(f"--capture {raw}: no such file")
        captures.append(path)
    report = check_strategy(choice, captures)
    identity = report.identity
    print(
        f"strategy check {identity.kind} ({source}: {identity.params}; source sha256 "
        f"{identity.source_sha256[:16]}... of {', '.join(identity.sources)}) on "
        f"{', '.join(report.captures)}: {report.ticks:,} ticks, {report.signals:,} signals"
    )
    for result in report.properties:
        print(property_line(result))
    verdict = "PASS" if report.passed else "FAIL"
    print(f"hybrid-engine strategy check: {verdict} {identity.kind}")
    return int(ExitCode.COMPLETE) if report.passed else int(ExitCode.CRASH)
