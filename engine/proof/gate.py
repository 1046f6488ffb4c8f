"""Gate G1: LIVE starts only on purpose, never by accident (docs/contract.md: gate G1, S14, L1).

``evaluate_gate`` is the decision, a pure function of what it is given (the
environment mapping, the arm flag, the bundle's bytes, the wall clock, the two
running hashes, the installed libraries, the configuration). It returns every
unmet condition at once, each with what to do about it, so an operator fixes
them in one pass.

``enforce`` is the thin shell the runtime calls at start-up, *before* anything
connects: it gathers those inputs, logs one ``live_gate_refused`` line per
unmet condition and raises ``ConfigError`` (exit 12, which systemd does not
restart). Outside ``mode = "live"`` it returns at once.

Conditions, all required (fail closed):

=================  ==========================================================
``armed``          ``LIVE_ARMED=true`` in the environment or ``--arm-live``
``bundle_present`` a file at ``[engine] proof_path``
``bundle_format``  it parses as a bundle of the current format
``checksum``       its checksum matches its content (if not, nothing else in
                   it is trusted, so the content conditions are not evaluated)
``checks_present`` it has the invariants, replay and risk_caps checks
``checks_pass``    every check in it says PASS
``fresh``          younger than ``[engine] max_proof_age_h`` (and not from
                   the future by more than ``MAX_CLOCK_SKEW_NS``)
``code_hash``      produced by byte-identical ``engine/`` source
``risk_hash``      produced with the same effective ``[risk]``+``[execution]``
``lock_hash``      produced with the same installed libraries (names and
                   versions, ``engine.proof.evidence.lock_hash``) as the running process
``strategy``       produced for the same strategy: kind, parameters and the
                   hash of its source file(s) (``engine.proof.evidence.strategy_identity``)
=================  ==========================================================
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from engine import logs
from engine.config.schema import Config, Mode
from engine.core.events import NS_PER_S
from engine.exits import ConfigError
from engine.proof import evidence

ARM_ENV: Final = "LIVE_ARMED"
ARM_VALUE: Final = "true"
"""Only this exact value arms; ``1``, ``yes`` or ``TRUE`` do not (an arm is deliberate)."""

NS_PER_HOUR: Final = 3_600 * NS_PER_S
MAX_CLOCK_SKEW_NS: Final = 5 * 60 * NS_PER_S
"""A bundle dated further in the future than this is refused (a wrong clock or a forged date)."""


class Condition(enum.StrEnum):
    ARMED = "armed"
    BUNDLE_PRESENT = "bundle_present"
    BUNDLE_FORMAT = "bundle_format"
    CHECKSUM = "checksum"
    CHECKS_PRESENT = "checks_present"
    CHECKS_PASS = "checks_pass"
    FRESH = "fresh"
    CODE_HASH = "code_hash"
    RISK_HASH = "risk_hash"
    LOCK_HASH = "lock_hash"
    STRATEGY = "strategy"


class Unmet(msgspec.Struct, frozen=True, kw_only=True):
    """One condition that does not hold: which, what was found, and what to do."""

    condition: Condition
    detail: str
    remedy: str


class GateVerdict(msgspec.Struct, frozen=True, kw_only=True):
    unmet: tuple[Unmet, ...]
    bundle_created_at: str | None = None

    @property
    def allowed(self) -> bool:
        return not self.unmet


_RERUN: Final = "run `hybrid-engine proof --config <the live config>` and start again"


def evaluate_gate(
    *,
    environ: Mapping[str, str],
    arm_flag: bool,
    bundle_bytes: bytes | None,
    now_wall_ns: int,
    code_hash: str,
    risk_config_hash: str,
    libraries: Sequence[str],
    config: Config,
    strategy: Mapping[str, Any] | None = None,
) -> GateVerdict:
    """Decide whether LIVE may start. Pure; see the module docstring for the conditions.

    ``strategy`` is the running strategy's identity; left out, the configured
    one's (``evidence.strategy_identity``, which reads its source files).
    """
    unmet: list[Unmet] = []
    path = config.engine.proof_path
    if not arm_flag and environ.get(ARM_ENV) != ARM_VALUE:
        found = environ.get(ARM_ENV)
        unmet.append(
            Unmet(
                condition=Condition.ARMED,
                detail="LIVE_ARMED is not set" if found is None else f"LIVE_ARMED={found!r}",
                remedy="set LIVE_ARMED=true in the environment (or pass --arm-live) "
                "to confirm that real orders are intended",
            )
        )
    if bundle_bytes is None:
        unmet.append(
            Unmet(
                condition=Condition.BUNDLE_PRESENT,
                detail=f"no proof bundle at {path}",
                remedy=f"run `hybrid-engine proof --out {path}` with this configuration",
            )
        )
        return GateVerdict(unmet=tuple(unmet))
    try:
        bundle = evidence.verify_bundle(bundle_bytes)
    except evidence.ChecksumMismatch as exc:
        unmet.append(
            Unmet(
                condition=Condition.CHECKSUM,
                detail=f"{path}: {exc} (edited or corrupted; its content is not trusted)",
                remedy=_RERUN,
            )
        )
        return GateVerdict(unmet=tuple(unmet))
    except evidence.BundleError as exc:
        unmet.append(
            Unmet(
                condition=Condition.BUNDLE_FORMAT,
                detail=f"{path}: not a proof bundle: {exc}",
                remedy=_RERUN,
            )
        )
        return GateVerdict(unmet=tuple(unmet))

    names = {c.name for c in bundle.checks}
    missing = [n for n in evidence.REQUIRED_CHECKS if n not in names]
    if missing:
        unmet.append(
            Unmet(
                condition=Condition.CHECKS_PRESENT,
                detail=f"bundle lacks required checks: {', '.join(missing)}",
                remedy=_RERUN,
            )
        )
    failed = [c.name for c in bundle.checks if c.status is not evidence.CheckStatus.PASS]
    if failed:
        unmet.append(
            Unmet(
                condition=Condition.CHECKS_PASS,
                detail=f"checks did not pass: {', '.join(failed)}",
                remedy="fix what those checks report (see the bundle's details), then " + _RERUN,
            )
        )
    age_ns = now_wall_ns - bundle.created_at_ns
    max_age_ns = int(config.engine.max_proof_age_h * NS_PER_HOUR)
    if age_ns > max_age_ns:
        unmet.append(
            Unmet(
                condition=Condition.FRESH,
                detail=f"bundle is {age_ns / NS_PER_HOUR:.1f} h old "
                f"(max_proof_age_h = {config.engine.max_proof_age_h:g})",
                remedy=_RERUN,
            )
        )
    elif age_ns < -MAX_CLOCK_SKEW_NS:
        unmet.append(
            Unmet(
                condition=Condition.FRESH,
                detail=f"bundle is dated {-age_ns / NS_PER_HOUR:.2f} h in the future",
                remedy="check the host clock, then " + _RERUN,
            )
        )
    if bundle.code_hash != code_hash:
        unmet.append(
            Unmet(
                condition=Condition.CODE_HASH,
                detail=f"bundle proves code {bundle.code_hash[:12]}..., "
                f"running code is {code_hash[:12]}...",
                remedy="the engine/ source changed since the proof: " + _RERUN,
            )
        )
    if bundle.risk_config_hash != risk_config_hash:
        unmet.append(
            Unmet(
                condition=Condition.RISK_HASH,
                detail=f"bundle proves risk config {bundle.risk_config_hash[:12]}..., "
                f"running config is {risk_config_hash[:12]}...",
                remedy="[risk]/[execution] differ from the proven ones "
                "(check ENGINE_RISK_*/ENGINE_EXECUTION_* overrides too): " + _RERUN,
            )
        )
    if bundle.lock_hash != evidence.hash_libraries(libraries):
        unmet.append(
            Unmet(
                condition=Condition.LOCK_HASH,
                detail="installed libraries differ from the proof's "
                f"({evidence.library_changes(bundle.libraries, libraries)})",
                remedy="rebuild the proof in this environment: " + _RERUN,
            )
        )
    running = evidence.strategy_identity(config) if strategy is None else strategy
    proven = bundle.strategy
    if any(proven.get(k) != running.get(k) for k in ("kind", "params", "source_sha256")):
        unmet.append(
            Unmet(
                condition=Condition.STRATEGY,
                detail="the strategy changed since the proof: "
                + evidence.strategy_changes(proven, running),
                remedy="prove the strategy that will trade "
                f"(`hybrid-engine strategy check {running.get('kind')}`), then " + _RERUN,
            )
        )
    return GateVerdict(unmet=tuple(unmet), bundle_created_at=bundle.created_at)


def current_verdict(config: Config, *, environ: Mapping[str, str], arm_flag: bool) -> GateVerdict:
    """Gather the real inputs (bundle file, wall clock, running hashes, libraries); evaluate."""
    try:
        bundle_bytes = evidence.read_bundle_bytes(config.engine.proof_path)
    except OSError as exc:
        logs.warning("proof_unreadable", path=config.engine.proof_path, error=exc.strerror)
        bundle_bytes = None
    except ValueError as exc:  # a NUL byte in the path: no file can be there
        logs.warning("proof_unreadable", path=repr(config.engine.proof_path), error=str(exc))
        bundle_bytes = None
    return evaluate_gate(
        environ=environ,
        arm_flag=arm_flag,
        bundle_bytes=bundle_bytes,
        now_wall_ns=time.time_ns(),
        code_hash=evidence.code_hash(),
        risk_config_hash=evidence.risk_config_hash(config),
        libraries=evidence.installed_libraries(),
        config=config,
    )


def log_verdict(verdict: GateVerdict) -> None:
    for item in verdict.unmet:
        logs.error(
            "live_gate_refused",
            condition=str(item.condition),
            detail=item.detail,
            remedy=item.remedy,
        )


def enforce(
    config: Config, environ: Mapping[str, str] = os.environ, arm_flag: bool = False
) -> None:
    """Refuse to start LIVE unless G1 holds; a no-op in any other mode.

    *Error handling:* raises ``ConfigError`` (exit 12) after logging one
    ``live_gate_refused`` line per unmet condition. Must run before anything
    connects, so a refusal leaves no trace outside the log.
    """
    if config.engine.mode is not Mode.LIVE:
        return
    verdict = current_verdict(config, environ=environ, arm_flag=arm_flag)
    if verdict.allowed:
        logs.info(
            "live_gate_passed",
            proof_path=config.engine.proof_path,
            proof_created_at=verdict.bundle_created_at,
        )
        return
    log_verdict(verdict)
    names = ", ".join(str(u.condition) for u in verdict.unmet)
    raise ConfigError(
        f"LIVE gate G1 refused ({len(verdict.unmet)} unmet: {names}); see live_gate_refused logs"
    )
