"""The checks a proof bundle records, each run in fresh subprocesses.

* ``invariants`` -- the hypothesis property tests (``tests/test_invariants_*.py``
  for I1-I4 and ``tests/test_strategy_properties.py``) in a fresh pytest process;
  PASS only if at least one test ran and none failed, errored or was skipped.
* ``replay`` -- every case of ``replays/cases.toml`` replayed in two fresh
  processes into fresh databases, each digest equal to the committed one
  (``engine.replay_check``); PASS only if there is at least one case.
* ``risk_caps`` -- ``engine.proof_risk``: the first replay case's real capture
  replayed in PAPER mode with deliberately tight caps; PASS only if RISK_CAP
  vetoes happened, something was still traded, and no cap is exceeded anywhere
  in the persisted record.

Subprocesses get the caller's environment minus every ``ENGINE_*`` override,
``LIVE_ARMED`` and exchange credentials: a check proves the code, it must not
pick up an operator's ad-hoc override or ever see a secret.

*Error handling:* a check never raises for a failure of what it checks; it
returns FAIL with the reason in ``detail``. A subprocess that outlives its
``*_TIMEOUT_S`` is killed and its check FAILs (a hang is not a pass).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from engine import replay_check
from engine.proof import CheckResult, CheckStatus, package_root

INVARIANT_PATTERNS: Final[tuple[str, ...]] = ("test_invariants_*.py", "test_strategy_properties.py")
INVARIANTS_TIMEOUT_S: Final = 1_800.0
"""Upper bound on the property-test run; beyond it the run is killed and the check FAILs."""

SECRET_ENV_MARKERS: Final[tuple[str, ...]] = ("SECRET", "API_KEY", "PASSWORD", "TOKEN")
"""Variables whose names contain one of these never reach a check's subprocess."""

DETAIL_CHARS: Final = 600
"""A failing subprocess's output tail kept in the bundle (enough to see why, not a log dump)."""


def project_root() -> Path:
    """The checkout holding ``engine/``, ``tests/`` and ``replays/``."""
    return package_root().parent


def check_env(environ: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a check's subprocess (see module docstring)."""
    env = {
        k: v
        for k, v in environ.items()
        if not k.startswith("ENGINE_")
        and k != "LIVE_ARMED"
        and not any(m in k.upper() for m in SECRET_ENV_MARKERS)
    }
    env.update(extra or {})
    return env


def tail(text: str, limit: int = DETAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def timed(name: str, body: Callable[[], tuple[bool, dict[str, Any], str]]) -> CheckResult:
    """Run ``body`` (-> ok, figures, detail) and wrap it as a ``CheckResult`` with its duration."""
    started = time.monotonic()
    try:
        ok, figures, detail = body()
    except Exception as exc:  # a broken check is a FAIL, recorded, never a crash of `proof`
        ok, figures, detail = False, {}, f"{type(exc).__name__}: {exc}"
    return CheckResult(
        name=name,
        status=CheckStatus.PASS if ok else CheckStatus.FAIL,
        duration_s=round(time.monotonic() - started, 3),
        figures=figures,
        detail=detail,
    )


# ------------------------------------------------------------------ invariants


def invariant_files(root: Path) -> list[Path]:
    tests = root / "tests"
    found = {p for pattern in INVARIANT_PATTERNS for p in tests.glob(pattern)}
    return sorted(found)


def junit_counts(xml_bytes: bytes) -> dict[str, int]:
    """Totals of a pytest ``--junitxml`` report: tests, failures, errors, skipped."""
    root = ET.fromstring(xml_bytes)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    return {k: sum(int(s.get(k, "0")) for s in suites) for k in keys}


def _invariants(root: Path, environ: Mapping[str, str]) -> tuple[bool, dict[str, Any], str]:
    files = invariant_files(root)
    figures: dict[str, Any] = {"files": [p.relative_to(root).as_posix() for p in files]}
    if not files:
        return False, figures, f"no files matching {', '.join(INVARIANT_PATTERNS)} in tests/"
    with tempfile.TemporaryDirectory(prefix="proof-inv-") as tmp:
        report = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--junitxml={report}", *map(str, files)]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, cwd=root, env=check_env(environ), capture_output=True, text=True,
                timeout=INVARIANTS_TIMEOUT_S, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return False, figures, f"pytest did not finish within {INVARIANTS_TIMEOUT_S:g} s"
        counts = junit_counts(report.read_bytes()) if report.exists() else {}
    figures.update(counts)
    figures["passed"] = counts.get("tests", 0) - sum(
        counts.get(k, 0) for k in ("failures", "errors", "skipped")
    )
    figures["returncode"] = proc.returncode
    ok = (
        proc.returncode == 0
        and counts.get("tests", 0) > 0
        and not any(counts.get(k, 0) for k in ("failures", "errors", "skipped"))
    )
    return ok, figures, "" if ok else tail(proc.stdout + proc.stderr)


def check_invariants(root: Path, environ: Mapping[str, str] = os.environ) -> CheckResult:
    return timed("invariants", lambda: _invariants(root, environ))


# ------------------------------------------------------------------ replay


def _replay(root: Path) -> tuple[bool, dict[str, Any], str]:
    replays = root / "replays"
    if not (replays / replay_check.CASES_FILE).exists():
        return False, {"cases": 0}, f"no {replay_check.CASES_FILE} in replays/"
    results = replay_check.check_replays(replays)
    figures: dict[str, Any] = {
        "cases": len(results),
        "passed": sum(r.ok for r in results),
        "results": [
            {"name": r.name, "expected": r.expected, "digests": r.digests, "ticks": r.ticks,
             "seconds": r.seconds, "ok": r.ok}
            for r in results
        ],
    }  # fmt: skip
    failed = [f"{r.name}: {r.error or 'digest mismatch'}" for r in results if not r.ok]
    if not results:
        return False, figures, "replays/cases.toml lists no case"
    return not failed, figures, tail("; ".join(failed))


def check_replay(root: Path) -> CheckResult:
    return timed("replay", lambda: _replay(root))
