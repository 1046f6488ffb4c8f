"""Gate G1 as a pure decision: one test per condition, plus ``enforce``'s shell behaviour."""

from __future__ import annotations

import hashlib
import json
import time
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from engine import logs
from engine.config.schema import Config, EngineSection, Mode, RiskSection
from engine.exits import ConfigError
from engine.proof import evidence, gate
from engine.proof.gate import Condition, evaluate_gate

HOUR = gate.NS_PER_HOUR
CREATED = 1_723_100_000 * 1_000_000_000
CODE = "c0de" * 16
CONFIG = Config()
ARMED = {"LIVE_ARMED": "true"}
LIBRARIES = ("hypothesis==6.170.17", "msgspec==0.22.0", "trio==0.35.0")


def checks(**status: str) -> list[evidence.CheckResult]:
    names = dict.fromkeys(evidence.REQUIRED_CHECKS, "PASS") | status
    return [
        evidence.CheckResult(
            name=n, status=evidence.CheckStatus(s), duration_s=1.5, figures={"n": 1}
        )
        for n, s in names.items()
    ]


def bundle_bytes(
    *,
    config: Config = CONFIG,
    code: str = CODE,
    results: list[evidence.CheckResult] | None = None,
    libraries: tuple[str, ...] = LIBRARIES,
) -> bytes:
    bundle = evidence.build_bundle(
        checks=checks() if results is None else results,
        created_at_ns=CREATED,
        engine_version="0.1.0",
        code_hash=code,
        config=config,
        libraries=libraries,
    )
    return evidence.encode_bundle(bundle)


def decide(
    *,
    environ: dict[str, str] = ARMED,
    arm_flag: bool = False,
    data: bytes | None = None,
    now: int = CREATED + HOUR,
    code: str = CODE,
    config: Config = CONFIG,
    missing: bool = False,
    libraries: tuple[str, ...] = LIBRARIES,
) -> gate.GateVerdict:
    return evaluate_gate(
        environ=environ,
        arm_flag=arm_flag,
        bundle_bytes=None if missing else (bundle_bytes() if data is None else data),
        now_wall_ns=now,
        code_hash=code,
        risk_config_hash=evidence.risk_config_hash(config),
        libraries=libraries,
        config=config,
    )


def conditions(verdict: gate.GateVerdict) -> list[Condition]:
    return [u.condition for u in verdict.unmet]


def test_gate_all_conditions_hold_allows_live() -> None:
    verdict = decide()
    assert verdict.allowed
    assert verdict.unmet == ()


def test_gate_arm_flag_instead_of_env_allows_live() -> None:
    assert decide(environ={}, arm_flag=True).allowed


def test_gate_not_armed_refuses_with_remedy() -> None:
    verdict = decide(environ={})
    assert not verdict.allowed
    assert conditions(verdict) == [Condition.ARMED]
    assert "LIVE_ARMED=true" in verdict.unmet[0].remedy


@pytest.mark.parametrize("value", ["1", "TRUE", "yes", " true", ""])
def test_gate_arm_value_not_exactly_true_refuses(value: str) -> None:
    assert conditions(decide(environ={"LIVE_ARMED": value})) == [Condition.ARMED]


def test_gate_no_bundle_refuses() -> None:
    verdict = decide(missing=True)
    assert conditions(verdict) == [Condition.BUNDLE_PRESENT]
    assert "hybrid-engine proof" in verdict.unmet[0].remedy


def test_gate_not_armed_and_no_bundle_reports_both() -> None:
    assert conditions(decide(environ={}, missing=True)) == [
        Condition.ARMED,
        Condition.BUNDLE_PRESENT,
    ]


def test_gate_bad_checksum_refuses() -> None:
    raw = json.loads(bundle_bytes())
    raw["checks"][0]["duration_s"] = 99.0  # any edit after checksumming
    verdict = decide(data=json.dumps(raw).encode())
    assert conditions(verdict) == [Condition.CHECKSUM]


def test_gate_flipped_fail_to_pass_breaks_checksum() -> None:
    raw = json.loads(bundle_bytes(results=checks(replay="FAIL")))
    for check in raw["checks"]:
        check["status"] = "PASS"
    assert conditions(decide(data=json.dumps(raw).encode())) == [Condition.CHECKSUM]


def test_gate_reindented_bundle_still_verifies() -> None:
    raw = json.loads(bundle_bytes())
    assert decide(data=json.dumps(raw, indent=7).encode()).allowed


@pytest.mark.parametrize("data", [b"", b"not json", b"[1,2]", b'{"format": 2}', b'{"format": 1}'])
def test_gate_garbage_bundle_refuses_as_format(data: bytes) -> None:
    assert conditions(decide(data=data)) == [Condition.BUNDLE_FORMAT]


def test_gate_format_1_bundle_without_lock_hash_refuses_as_format() -> None:
    raw = json.loads(bundle_bytes())
    for key in ("lock_hash", "libraries", "lock_file_hash"):
        del raw[key]
    raw["format"] = 1
    raw["checksum"] = hashlib.sha256(
        evidence.canonical_json({k: v for k, v in raw.items() if k != "checksum"})
    ).hexdigest()
    verdict = decide(data=json.dumps(raw).encode())
    assert conditions(verdict) == [Condition.BUNDLE_FORMAT]
    assert f"expected {evidence.BUNDLE_FORMAT}" in verdict.unmet[0].detail


def test_gate_failed_check_refuses_naming_it() -> None:
    verdict = decide(data=bundle_bytes(results=checks(risk_caps="FAIL")))
    assert conditions(verdict) == [Condition.CHECKS_PASS]
    assert "risk_caps" in verdict.unmet[0].detail


def test_gate_missing_required_check_refuses() -> None:
    results = [c for c in checks() if c.name != "replay"]
    verdict = decide(data=bundle_bytes(results=results))
    assert conditions(verdict) == [Condition.CHECKS_PRESENT]
    assert "replay" in verdict.unmet[0].detail


def test_gate_empty_checks_refuses() -> None:
    assert conditions(decide(data=bundle_bytes(results=[]))) == [Condition.CHECKS_PRESENT]


def test_gate_too_old_refuses() -> None:
    max_age = int(CONFIG.engine.max_proof_age_h * HOUR)
    assert decide(now=CREATED + max_age).allowed
    assert conditions(decide(now=CREATED + max_age + 1)) == [Condition.FRESH]


def test_gate_max_age_follows_config() -> None:
    config = Config(engine=EngineSection(max_proof_age_h=1.0))
    data = bundle_bytes(config=config)
    assert conditions(decide(config=config, data=data, now=CREATED + 2 * HOUR)) == [Condition.FRESH]


def test_gate_bundle_from_future_refuses() -> None:
    assert decide(now=CREATED - gate.MAX_CLOCK_SKEW_NS).allowed
    assert conditions(decide(now=CREATED - gate.MAX_CLOCK_SKEW_NS - 1)) == [Condition.FRESH]


def test_gate_code_hash_mismatch_refuses() -> None:
    assert conditions(decide(code="f" * 64)) == [Condition.CODE_HASH]


def test_gate_risk_hash_mismatch_refuses() -> None:
    running = Config(risk=RiskSection(max_exposure_usd=Decimal("2000")))
    verdict = decide(config=running, data=bundle_bytes(config=CONFIG))
    assert conditions(verdict) == [Condition.RISK_HASH]


def test_gate_upgraded_library_refuses_naming_it() -> None:
    running = ("hypothesis==6.170.17", "msgspec==0.23.0", "trio==0.35.0")
    verdict = decide(libraries=running)
    assert conditions(verdict) == [Condition.LOCK_HASH]
    assert verdict.unmet[0].detail == (
        "installed libraries differ from the proof's (msgspec 0.22.0 -> 0.23.0)"
    )
    assert verdict.unmet[0].remedy.startswith("rebuild the proof")


def test_gate_added_and_removed_library_both_named() -> None:
    running = ("hypothesis==6.170.17", "msgspec==0.22.0", "zzz==1.0")
    detail = decide(libraries=running).unmet[0].detail
    assert "+zzz 1.0" in detail
    assert "-trio 0.35.0" in detail


def test_gate_library_order_and_duplicates_do_not_matter() -> None:
    assert decide(libraries=(*reversed(LIBRARIES), LIBRARIES[0])).allowed


def test_gate_risk_hash_ignores_decimal_spelling() -> None:
    same = Config(risk=RiskSection(max_exposure_usd=Decimal("1000.00")))
    assert decide(config=same, data=bundle_bytes(config=CONFIG)).allowed


def test_gate_every_unmet_condition_reported_at_once() -> None:
    verdict = decide(
        environ={},
        data=bundle_bytes(results=checks(invariants="FAIL")),
        now=CREATED + 100 * HOUR,
        code="0" * 64,
        config=Config(risk=RiskSection(max_open_orders=1)),
        libraries=("msgspec==0.23.0",),
    )
    assert conditions(verdict) == [
        Condition.ARMED,
        Condition.CHECKS_PASS,
        Condition.FRESH,
        Condition.CODE_HASH,
        Condition.RISK_HASH,
        Condition.LOCK_HASH,
    ]
    assert all(u.remedy for u in verdict.unmet)


# ------------------------------------------------------------------ enforce (shell)


def test_enforce_non_live_mode_returns_without_looking(tmp_path: Path) -> None:
    config = Config(engine=EngineSection(mode=Mode.SHADOW, proof_path="/nonexistent/proof.json"))
    gate.enforce(config, environ={}, arm_flag=False)


def test_enforce_live_without_gate_raises_config_error_and_logs(tmp_path: Path) -> None:
    config = Config(engine=EngineSection(mode=Mode.LIVE, proof_path=f"{tmp_path}/proof.json"))
    with logs.capture() as out, pytest.raises(ConfigError, match="G1"):
        gate.enforce(config, environ={}, arm_flag=False)
    refused = out.events("live_gate_refused")
    assert [r["condition"] for r in refused] == ["armed", "bundle_present"]
    assert all(r["remedy"] for r in refused)


def live_config_with_bundle(tmp_path: Path, libraries: list[str] | None = None) -> Config:
    """A LIVE config whose proof_path holds a fresh passing bundle of the running code."""
    config = Config(engine=EngineSection(mode=Mode.LIVE, proof_path=f"{tmp_path}/proof.json"))
    bundle = evidence.build_bundle(
        checks=checks(),
        created_at_ns=time.time_ns(),
        engine_version="0.1.0",
        code_hash=evidence.code_hash(),
        config=config,
        libraries=libraries,
    )
    evidence.write_bundle(bundle, config.engine.proof_path)
    return config


def enforce_logged(config: Config) -> str:
    """``enforce`` while capturing the log; its lines, then re-raise what it raised."""
    with logs.capture() as out:
        try:
            gate.enforce(config, environ=ARMED, arm_flag=False)
        except ConfigError as exc:
            exc.add_note(out.text())
            raise
    return out.text()


def test_enforce_live_with_valid_bundle_passes(tmp_path: Path) -> None:
    assert '"live_gate_passed"' in enforce_logged(live_config_with_bundle(tmp_path))


def test_enforce_live_with_bundle_of_other_libraries_refuses(tmp_path: Path) -> None:
    running = evidence.installed_libraries()
    assert "msgspec==0.0.1" not in running
    other = [*(x for x in running if not x.startswith("msgspec==")), "msgspec==0.0.1"]
    with pytest.raises(ConfigError, match="lock_hash") as raised:
        enforce_logged(live_config_with_bundle(tmp_path, other))
    logged = [msgspec.json.decode(line) for line in raised.value.__notes__[0].splitlines()]
    [line] = [r for r in logged if r["event"] == "live_gate_refused"]
    assert line["condition"] == "lock_hash"
    assert "msgspec 0.0.1 -> " in line["detail"]


def test_current_verdict_nul_in_proof_path_is_bundle_missing_not_a_crash() -> None:
    config = Config(engine=EngineSection(mode=Mode.LIVE, proof_path="var/pro\x00of.json"))
    with logs.capture() as out:
        verdict = gate.current_verdict(config, environ=ARMED, arm_flag=False)
    assert conditions(verdict) == [Condition.BUNDLE_PRESENT]
    assert '"proof_unreadable"' in out.text()
