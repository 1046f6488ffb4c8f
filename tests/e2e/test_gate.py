"""Gate G1 end to end: every refusal in a real subprocess, real exit code 12, nothing connected.

``hybrid-engine gate`` prints the verdict and exits 0/12; ``hybrid-engine run``
with ``mode = "live"`` refuses with 12 and one ``live_gate_refused`` line per
unmet condition, before opening the database or any connection -- checked with
listening sockets the engine is pointed at, which must see no connection.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.proof import evidence
from tests.fakes.engine_process import parse_logs, run_engine
from tests.fakes.live_gate import ARMED, HOUR_NS, Live
from tests.fakes.live_gate import live as live  # noqa: PLC0414 -- the fixture


def gate(
    live: Live, env: dict[str, str] | None = None, *extra: str
) -> tuple[int, dict[str, object]]:
    proc = run_engine(["gate", "--config", str(live.config_path), *extra], env=env, timeout=60)
    verdicts = [
        line for line in parse_logs(proc.stdout) if line.get("event") == "live_gate_verdict"
    ]
    assert len(verdicts) == 1, proc.stdout + proc.stderr
    return proc.returncode, verdicts[0]


def unmet(verdict: dict[str, object]) -> list[str]:
    return [u["condition"] for u in verdict["unmet"]]  # type: ignore[attr-defined,index]


def test_gate_cli_all_conditions_hold_exits_zero(live: Live) -> None:
    live.write_bundle()
    code, verdict = gate(live, ARMED)
    assert (code, verdict["allowed"], unmet(verdict)) == (0, True, [])
    code, verdict = gate(live, None, "--arm-live")
    assert code == 0


@pytest.mark.parametrize(
    ("setup", "env", "expected"),
    [
        ("none", {}, ["armed"]),
        ("none", {"LIVE_ARMED": "1"}, ["armed"]),
        ("missing", ARMED, ["bundle_present"]),
        ("tampered", ARMED, ["checksum"]),
        ("garbage", ARMED, ["bundle_format"]),
        ("failed", ARMED, ["checks_pass"]),
        ("old", ARMED, ["fresh"]),
        ("code", ARMED, ["code_hash"]),
        ("risk", ARMED, ["risk_hash"]),
        ("libraries", ARMED, ["lock_hash"]),
    ],
)
def test_gate_cli_each_refusal_exits_12(
    live: Live, tmp_path: Path, setup: str, env: dict[str, str], expected: list[str]
) -> None:
    if setup == "none":
        live.write_bundle()
    elif setup == "tampered":
        live.write_bundle(statuses={"replay": "FAIL"})
        raw = json.loads(live.proof_path.read_text())
        raw["checks"] = [{**c, "status": "PASS"} for c in raw["checks"]]
        live.proof_path.write_text(json.dumps(raw))
    elif setup == "garbage":
        live.proof_path.write_text("{not json")
    elif setup == "failed":
        live.write_bundle(statuses={"invariants": "FAIL"})
    elif setup == "old":
        live.write_bundle(age_ns=25 * HOUR_NS)
    elif setup == "code":
        live.write_bundle(code_hash="0" * 64)
    elif setup == "risk":
        other = tmp_path / "other.toml"
        other.write_text(live.config_path.read_text().replace("max_exposure_usd = 200", ""))
        live.write_bundle(risk_config=str(other))
    elif setup == "libraries":
        live.write_bundle(libraries=[*evidence.installed_libraries(), "not-installed-lib==1.0"])
    code, verdict = gate(live, env)
    assert code == 12
    assert verdict["allowed"] is False
    assert unmet(verdict) == expected


def test_gate_cli_env_override_of_a_cap_breaks_risk_hash(live: Live) -> None:
    live.write_bundle()
    code, verdict = gate(live, {**ARMED, "ENGINE_RISK_MAX_OPEN_ORDERS": "9"})
    assert code == 12
    assert unmet(verdict) == ["risk_hash"]


def test_run_live_without_gate_exits_12_logs_why_connects_nothing(live: Live) -> None:
    proc = run_engine(["run", "--config", str(live.config_path)], timeout=60)
    assert proc.returncode == 12, proc.stdout + proc.stderr
    refused = [line for line in parse_logs(proc.stdout) if line["event"] == "live_gate_refused"]
    assert [r["condition"] for r in refused] == ["armed", "bundle_present"]
    assert all(r["remedy"] for r in refused)
    assert "G1" in proc.stderr
    assert live.nothing_connected()


@pytest.mark.parametrize(
    ("setup", "condition"),
    [("failed", "checks_pass"), ("old", "fresh"), ("code", "code_hash")],
)
def test_run_live_armed_with_bad_bundle_exits_12(live: Live, setup: str, condition: str) -> None:
    if setup == "failed":
        live.write_bundle(statuses={"risk_caps": "FAIL"})
    elif setup == "old":
        live.write_bundle(age_ns=48 * HOUR_NS)
    else:
        live.write_bundle(code_hash="f" * 64)
    proc = run_engine(["run", "--config", str(live.config_path), "--arm-live"], timeout=60)
    assert proc.returncode == 12
    refused = [line for line in parse_logs(proc.stdout) if line["event"] == "live_gate_refused"]
    assert [r["condition"] for r in refused] == [condition]
    assert live.nothing_connected()
