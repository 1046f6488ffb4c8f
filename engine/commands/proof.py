"""``hybrid-engine proof [--config F] [--out F]``: run the checks and write the proof bundle.

Exit 0 when every check passed; 1 when one failed (the bundle is written
anyway, recording FAIL, so the operator can read why). Gate G1 reads the bundle
from ``[engine] proof_path``, which is also where it is written by default.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from engine import logs, proof, proof_checks, proof_risk
from engine.config import load_config
from engine.exits import ExitCode
from engine.proof import CheckResult, CheckStatus


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "proof",
        help="run invariant tests, deterministic replays and the risk-cap replay; "
        "write the proof bundle LIVE requires",
    )
    parser.add_argument("--config", metavar="F", help="TOML configuration file (the live one)")
    parser.add_argument("--out", metavar="F", help="bundle path (default: [engine] proof_path)")
    parser.set_defaults(handler=run)


def run_checks(root: Path, environ: Mapping[str, str]) -> list[CheckResult]:
    """Every check in turn (sequentially: the host has few cores and each is CPU-bound)."""
    return [
        proof_checks.check_invariants(root, environ),
        proof_checks.check_replay(root),
        proof_risk.check_risk_caps(root, environ),
    ]


def code_unchanged(before: str, after: str) -> CheckResult:
    """A source edit while the checks ran would make the bundle prove code that never ran."""
    same = before == after
    return CheckResult(
        name="code_unchanged",
        status=CheckStatus.PASS if same else CheckStatus.FAIL,
        duration_s=0.0,
        figures={"before": before, "after": after},
        detail="" if same else "engine/ source changed while the checks ran",
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out = args.out or config.engine.proof_path
    root = proof_checks.project_root()
    created_at_ns = time.time_ns()
    code_before = proof.code_hash()
    logs.info("proof_started", root=str(root), out=out, code_hash=code_before)
    checks = run_checks(root, os.environ)
    for check in checks:
        logs.info(
            "proof_check",
            name=check.name,
            status=str(check.status),
            duration_s=check.duration_s,
            detail=check.detail,
        )
    checks.append(code_unchanged(code_before, proof.code_hash()))
    bundle = proof.build_bundle(
        checks=checks,
        created_at_ns=created_at_ns,
        engine_version=proof.engine_version(),
        code_hash=code_before,
        config=config,
    )
    path = proof.write_bundle(bundle, out)
    logs.info(
        "proof_written",
        path=str(path),
        passed=bundle.passed,
        checksum=bundle.checksum,
        failed=[c.name for c in checks if c.status is not CheckStatus.PASS],
    )
    verdict = "PASS" if bundle.passed else "FAIL"
    print(f"hybrid-engine proof: {verdict} -> {path}", file=sys.stderr)
    return int(ExitCode.COMPLETE) if bundle.passed else int(ExitCode.CRASH)
