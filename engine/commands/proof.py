"""``hybrid-engine proof [--config F] [--out F]``: run the checks and write the proof bundle.

Everything the checks need ships in the installed package (``engine.proof.checks``),
so this runs from a plain ``pip install`` in any working directory. On stderr it
prints one line per check as it finishes -- ``PASS name (figures)`` or
``FAIL name: reason`` -- and one per property of the ``invariants`` check, then
the verdict line ``hybrid-engine proof: PASS -> <path>``.

Exit 0 when every check passed; 1 when one failed (the bundle is written
anyway, recording FAIL, so the operator can read why); 12 with one line naming
``--out`` (or ``[engine] proof_path``) when the bundle cannot be written there,
checked before the checks run. Gate G1 reads the bundle from ``[engine]
proof_path``, which is also where it is written by default.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from engine import logs
from engine.config.load import load_config
from engine.config.schema import Config
from engine.exits import ConfigError, ExitCode
from engine.proof import any_strategy, checks, evidence, risk_caps
from engine.proof.evidence import CheckResult, CheckStatus


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "proof",
        help="run the invariant properties, deterministic replays and the risk-cap replay; "
        "write the proof bundle LIVE requires",
    )
    parser.add_argument("--config", metavar="F", help="TOML configuration file (the live one)")
    parser.add_argument("--out", metavar="F", help="bundle path (default: [engine] proof_path)")
    parser.set_defaults(handler=run)


def run_checks(environ: Mapping[str, str], config: Config) -> list[CheckResult]:
    """Every check in turn (sequentially: the host has few cores and each is CPU-bound).

    The last proves the configured strategy (``engine.proof.any_strategy``), whose
    identity the bundle records.
    """
    return [
        report(checks.check_invariants(environ)),
        report(checks.check_replay(environ=environ)),
        report(risk_caps.check_risk_caps(environ=environ)),
        report(any_strategy.check_configured(config.strategy)),
    ]


def check_line(check: CheckResult) -> str:
    """``PASS name (summary)`` or ``FAIL name: reason`` -- one line."""
    if check.status is CheckStatus.PASS:
        return f"PASS {check.name}" + (f" ({check.summary})" if check.summary else "")
    return f"FAIL {check.name}: {check.detail}"


def property_lines(check: CheckResult) -> list[str]:
    """One line per property a check ran (the ``invariants`` check's ``properties``)."""
    lines = []
    for item in check.figures.get("properties", ()):
        head = f"{item['status']} {check.name}/{item['name']}"
        if item["status"] == CheckStatus.PASS:
            steps = f" of up to {item['steps']} steps" if item["steps"] else ""
            lines.append(f"  {head} ({item['ran']} examples{steps}, {item['seconds']:.1f} s)")
        else:
            lines.append(f"  {head}: {item['detail']}")
    return lines


def report(check: CheckResult) -> CheckResult:
    """Log a finished check and print its lines on stderr; return it unchanged."""
    logs.info(
        "proof_check",
        name=check.name,
        status=str(check.status),
        duration_s=check.duration_s,
        summary=check.summary,
        detail=check.detail,
    )
    print(check_line(check), file=sys.stderr)
    for line in property_lines(check):
        print(line, file=sys.stderr)
    sys.stderr.flush()
    return check


def code_unchanged(before: str, after: str) -> CheckResult:
    """A source edit while the checks ran would make the bundle prove code that never ran."""
    same = before == after
    return CheckResult(
        name="code_unchanged",
        status=CheckStatus.PASS if same else CheckStatus.FAIL,
        duration_s=0.0,
        summary=f"code {before[:12]}..." if same else "",
        figures={"before": before, "after": after},
        detail="" if same else "engine/ source changed while the checks ran",
    )


def usable_out(out: str, flag: str) -> Path:
    """The bundle path, once shown writable; else ``ConfigError`` naming ``flag`` (exit 12).

    Any string is admitted or refused here, never raised on later: a directory, a
    path under a file, a name too long or holding a NUL byte, a place that cannot
    be written. *Resource handling:* creates missing parent directories, as
    writing would; the probe file it creates (the bundle's own name when there
    is no bundle yet) is removed at once.
    """
    path = Path(out)
    shown = out if out.isprintable() else repr(out)  # one line, whatever it holds
    try:
        out.encode("utf-8")  # argv can hold undecodable bytes (surrogates): logs cannot
        if path.is_dir():
            raise ConfigError(f"{flag} {shown}: is a directory; name the bundle file, e.g. "
                              f"{path / 'proof.json'}")  # fmt: skip
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise ConfigError(f"{flag} {shown}: cannot write there ({blocking} is not a directory)")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():  # the last bundle: it is replaced by a rename, as writing will
            fd, probe = tempfile.mkstemp(prefix=".proof-probe-", dir=path.parent)
            os.close(fd)
            os.unlink(probe)
        else:  # the very name, so that its length and bytes are proven too
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(path)
    except OSError as exc:
        raise ConfigError(f"{flag} {shown}: cannot write there ({exc.strerror or exc})") from None
    except ValueError as exc:  # an embedded NUL byte, a surrogate
        raise ConfigError(f"{flag} {shown}: not a usable path ({exc})") from None
    return path


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    flag = "--out" if args.out else "[engine] proof_path ="
    out = usable_out(args.out or config.engine.proof_path, flag)
    created_at_ns = time.time_ns()
    code_before = evidence.code_hash()
    logs.info("proof_started", out=str(out), code_hash=code_before, lock_hash=evidence.lock_hash())
    checks = run_checks(os.environ, config)
    checks.append(report(code_unchanged(code_before, evidence.code_hash())))
    bundle = evidence.build_bundle(
        checks=checks,
        created_at_ns=created_at_ns,
        engine_version=evidence.engine_version(),
        code_hash=code_before,
        config=config,
        libraries=evidence.installed_libraries(),
        lock_file_hash=evidence.lock_file_hash(),
    )
    try:
        path = evidence.write_bundle(bundle, out)
    except OSError as exc:
        why = exc.strerror or exc
        raise ConfigError(f"{flag} {out}: cannot write the bundle ({why})") from None
    logs.info(
        "proof_written",
        path=str(path),
        passed=bundle.passed,
        checksum=bundle.checksum,
        lock_hash=bundle.lock_hash,
        failed=[c.name for c in checks if c.status is not CheckStatus.PASS],
    )
    verdict = "PASS" if bundle.passed else "FAIL"
    print(f"hybrid-engine proof: {verdict} -> {path}", file=sys.stderr)
    return int(ExitCode.COMPLETE) if bundle.passed else int(ExitCode.CRASH)
