"""``hybrid-engine gate [--config F] [--arm-live]``: print G1's verdict, start nothing.

Exit 0 when LIVE could start with this configuration and environment, 12 when
it could not (whatever ``[engine] mode`` says: this answers "may LIVE start?").
"""

from __future__ import annotations

import argparse
import os
import sys

import msgspec

from engine.config.load import load_config
from engine.exits import ExitCode
from engine.proof import gate


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "gate", help="print whether gate G1 would let LIVE start (exit 0) or not (exit 12)"
    )
    parser.add_argument("--config", metavar="F", help="TOML configuration file")
    parser.add_argument(
        "--arm-live", action="store_true", help="count as armed, like LIVE_ARMED=true"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    verdict = gate.current_verdict(config, environ=os.environ, arm_flag=args.arm_live)
    gate.log_verdict(verdict)
    summary = {
        "event": "live_gate_verdict",
        "allowed": verdict.allowed,
        "mode": str(config.engine.mode),
        "proof_path": config.engine.proof_path,
        "proof_created_at": verdict.bundle_created_at,
        "unmet": [msgspec.to_builtins(u) for u in verdict.unmet],
    }
    sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    return int(ExitCode.COMPLETE) if verdict.allowed else int(ExitCode.CONFIG)
