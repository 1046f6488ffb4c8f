"""The checks a proof bundle records, each run in fresh subprocesses from the installed package.

Nothing here reads a checkout: the properties are modules of the package and the
replay cases are its data (``engine/cases/``), so ``pip install .`` of the
package, from any working directory, can build a proof.

* ``invariants`` -- every property of ``engine.proof.properties.PROPERTIES``
  (I1-I4 execution invariants, strategy determinism and chunking) in one fresh
  ``python -m engine.proof.properties`` process, one JSON result per property;
  PASS only if every registered property reported PASS.
* ``replay`` -- every case of the packaged ``cases.toml`` replayed in two fresh
  processes into fresh databases, each digest equal to the committed one
  (``engine.proof.replay``); PASS only if there is at least one case.
* ``risk_caps`` -- ``engine.proof.risk_caps``: the first case's real capture replayed
  in PAPER mode with deliberately tight caps; PASS only if RISK_CAP vetoes
  happened, something was still traded, and no cap is exceeded anywhere in the
  persisted record.

Subprocesses get the caller's environment minus every ``ENGINE_*`` override,
``LIVE_ARMED``, exchange credentials and ``PYTHONOPTIMIZE`` (which would strip
the properties' assertions); they run in a temporary directory, so a stray
``engine/`` in the caller's working directory cannot stand in for the package.

*Error handling:* a check never raises for a failure of what it checks, nor for
being unable to run; it returns FAIL with the reason on one line in ``detail``.
A subprocess that outlives its ``*_TIMEOUT_S`` is killed and its check FAILs (a
hang is not a pass).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from engine.proof import replay
from engine.proof.evidence import DETAIL_CHARS, CheckResult, CheckStatus, PropertyResult, one_line

INVARIANTS_TIMEOUT_S: Final = 1_800.0
"""Upper bound on the property run; beyond it the run is killed and the check FAILs."""

SECRET_ENV_MARKERS: Final[tuple[str, ...]] = ("SECRET", "API_KEY", "PASSWORD", "TOKEN")
"""Variables whose names contain one of these never reach a check's subprocess."""

DROPPED_ENV: Final[frozenset[str]] = frozenset({"LIVE_ARMED", "PYTHONOPTIMIZE"})

CheckBody = Callable[[], tuple[bool, dict[str, Any], str, str]]
"""A check's work: ``-> (ok, figures, summary, detail)``."""


def check_env(environ: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a check's subprocess (see module docstring)."""
    env = {
        k: v
        for k, v in environ.items()
        if not k.startswith("ENGINE_")
        and k not in DROPPED_ENV
        and not any(m in k.upper() for m in SECRET_ENV_MARKERS)
    }
    env.update(extra or {})
    return env


def tail(text: str, limit: int = DETAIL_CHARS) -> str:
    """The end of ``text`` on one line (newlines become `` | ``), at most ``limit`` characters."""
    flat = one_line(text, limit=1 << 30)
    return flat if len(flat) <= limit else "..." + flat[-limit:]


def timed(name: str, body: CheckBody) -> CheckResult:
    """Run ``body`` and wrap it as a ``CheckResult`` with its duration.

    A FAIL always carries a one-line reason: an exception becomes ``Type: message``,
    an empty reason is named as such (a bug in the check, still a FAIL).
    """
    started = time.monotonic()
    try:
        ok, figures, summary, detail = body()
    except Exception as exc:  # a broken check is a FAIL, recorded, never a crash of `proof`
        ok, figures, summary = False, {}, ""
        detail = f"cannot run: {type(exc).__name__}: {exc}"
    if not ok and not detail.strip():
        detail = "failed without a reason (a bug in the check)"
    return CheckResult(
        name=name,
        status=CheckStatus.PASS if ok else CheckStatus.FAIL,
        duration_s=round(time.monotonic() - started, 3),
        summary=one_line(summary),
        figures=figures,
        detail="" if ok else one_line(detail),
    )


# ------------------------------------------------------------------ invariants

_result_decoder = msgspec.json.Decoder(PropertyResult)


def parse_property_lines(stdout: str) -> tuple[list[PropertyResult], list[str]]:
    """The property results a run printed, and the lines that were not one."""
    results: list[PropertyResult] = []
    other: list[str] = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            results.append(_result_decoder.decode(line))
        except msgspec.DecodeError:
            other.append(line)
    return results, other


def judge_properties(
    results: list[PropertyResult], expected: list[str], returncode: int | None, output: str
) -> tuple[bool, dict[str, Any], str, str]:
    """PASS only when every ``expected`` property reported PASS and the run exited 0."""
    by_name = {r.name: r for r in results}
    figures: dict[str, Any] = {
        "properties": [msgspec.to_builtins(r) for r in results],
        "registered": len(expected),
        "passed": sum(r.status is CheckStatus.PASS for r in results),
        "failed": sum(r.status is not CheckStatus.PASS for r in results),
        "examples": sum(r.ran for r in results),
        "returncode": returncode,
    }
    problems = [f"{r.name}: {r.detail}" for r in results if r.status is not CheckStatus.PASS]
    missing = [n for n in expected if n not in by_name]
    if missing:
        why = "timed out" if returncode is None else f"exited {returncode}"
        which = "any property" if len(missing) == len(expected) else ", ".join(missing)
        problems.append(
            f"property run {why} before {which} reported"
            + (f": {tail(output, 300)}" if output.strip() else "")
        )
    elif returncode != 0 and not problems:
        problems.append(f"property run exited {returncode}: {tail(output, 300)}")
    summary = f"{figures['passed']}/{len(expected)} properties, {figures['examples']} examples"
    return not problems, figures, summary, "; ".join(problems)


def _invariants(environ: Mapping[str, str]) -> tuple[bool, dict[str, Any], str, str]:
    # Imported here: hypothesis loads in the proof only, not in every CLI command.
    from engine.proof.properties import PROPERTIES

    expected = [p.name for p in PROPERTIES]
    cmd = [sys.executable, "-m", "engine.proof.properties"]
    returncode: int | None
    with tempfile.TemporaryDirectory(prefix="proof-inv-") as tmp:
        try:
            proc = subprocess.run(
                cmd, cwd=tmp, env=check_env(environ), capture_output=True, text=True,
                timeout=INVARIANTS_TIMEOUT_S, check=False,
            )  # fmt: skip
            stdout, stderr, returncode = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            stdout = _text(exc.stdout)
            stderr = f"killed after {INVARIANTS_TIMEOUT_S:g} s " + _text(exc.stderr)
            returncode = None
    results, other = parse_property_lines(stdout)
    return judge_properties(results, expected, returncode, "\n".join([*other, stderr]))


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def check_invariants(environ: Mapping[str, str] = os.environ) -> CheckResult:
    return timed("invariants", lambda: _invariants(environ))


# ------------------------------------------------------------------ replay


def _replay(cases_dir: Path, environ: Mapping[str, str]) -> tuple[bool, dict[str, Any], str, str]:
    if not (cases_dir / replay.CASES_FILE).is_file():
        return False, {"cases": 0}, "", f"no {replay.CASES_FILE} in {cases_dir}"
    results = replay.check_replays(cases_dir, env=check_env(environ))
    figures: dict[str, Any] = {
        "cases_dir": str(cases_dir),
        "cases": len(results),
        "passed": sum(r.ok for r in results),
        "results": [
            {"name": r.name, "expected": r.expected, "digests": r.digests, "ticks": r.ticks,
             "seconds": r.seconds, "ok": r.ok}
            for r in results
        ],
    }  # fmt: skip
    if not results:
        return False, figures, "", f"{replay.CASES_FILE} in {cases_dir} lists no case"
    failed = [f"{r.name}: {r.error or 'digest mismatch'}" for r in results if not r.ok]
    runs = sum(len(r.digests) for r in results)
    summary = f"{figures['passed']}/{len(results)} cases, {runs} replays with the committed digests"
    return not failed, figures, summary, "; ".join(failed)


def check_replay(
    cases_dir: Path | None = None, environ: Mapping[str, str] = os.environ
) -> CheckResult:
    """Replay every case of ``cases_dir`` (default: the packaged cases)."""
    where = replay.packaged_cases_dir() if cases_dir is None else cases_dir
    return timed("replay", lambda: _replay(where, environ))
