"""The proof bundle: hashes, checksum, writing, the checks' plumbing and the ``proof`` command."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from pathlib import Path

import pytest

from engine import proof, proof_checks
from engine.commands import proof as proof_command
from engine.config import Config, ExecutionSection, RiskSection, StrategySection
from engine.proof import CheckResult, CheckStatus

NOW = 1_723_100_000_123_456_789


def result(name: str, status: str = "PASS", **figures: object) -> CheckResult:
    return CheckResult(name=name, status=CheckStatus(status), duration_s=0.25, figures=figures)


def passing() -> list[CheckResult]:
    return [result(n, tests=3) for n in proof.REQUIRED_CHECKS]


def build(checks: list[CheckResult] | None = None, config: Config | None = None) -> proof.Bundle:
    return proof.build_bundle(
        checks=passing() if checks is None else checks,
        created_at_ns=NOW,
        engine_version="0.1.0",
        code_hash="ab" * 32,
        config=Config() if config is None else config,
    )


# ------------------------------------------------------------------ bundle


def test_bundle_roundtrip_verifies_and_keeps_fields() -> None:
    bundle = build()
    again = proof.verify_bundle(proof.encode_bundle(bundle))
    assert again == bundle
    assert again.created_at == "2024-08-08T06:53:20Z"
    assert again.passed
    assert [c.name for c in again.checks] == list(proof.REQUIRED_CHECKS)


def test_bundle_checksum_covers_every_field() -> None:
    raw = json.loads(proof.encode_bundle(build()))
    for key in raw:
        if key == "checksum":
            continue
        tampered = dict(raw)
        tampered[key] = "x" if not isinstance(raw[key], str) else raw[key] + "x"
        with pytest.raises(proof.BundleError):
            proof.verify_bundle(json.dumps(tampered).encode())


def test_bundle_with_failed_check_is_not_passed() -> None:
    bundle = build([*passing()[:2], result("risk_caps", "FAIL")])
    assert not proof.verify_bundle(proof.encode_bundle(bundle)).passed


def test_bundle_nan_in_figures_rejected_at_build() -> None:
    with pytest.raises(ValueError):
        build([result("replay", ratio=float("nan"))])


def test_write_bundle_atomic_creates_dirs_and_no_temp_left(tmp_path: Path) -> None:
    target = tmp_path / "var" / "sub" / "proof.json"
    proof.write_bundle(build(), target)
    proof.write_bundle(build(), target)  # overwrite
    assert proof.verify_bundle(target.read_bytes()).checksum == build().checksum
    assert sorted(p.name for p in target.parent.iterdir()) == ["proof.json"]


def test_read_bundle_bytes_missing_file_is_none(tmp_path: Path) -> None:
    assert proof.read_bundle_bytes(tmp_path / "nope.json") is None


# ------------------------------------------------------------------ hashes


def test_risk_hash_changes_with_risk_and_execution_only() -> None:
    base = proof.risk_config_hash(Config())
    assert proof.risk_config_hash(Config(risk=RiskSection(max_open_orders=2))) != base
    assert (
        proof.risk_config_hash(Config(execution=ExecutionSection(order_notional_usd=Decimal(50))))
        != base
    )
    assert proof.risk_config_hash(Config(strategy=StrategySection(fast=3, slow=9))) == base


def test_risk_config_of_is_plain_json_with_normalised_decimals() -> None:
    data = proof.risk_config_of(Config(risk=RiskSection(max_exposure_usd=Decimal("1000.000"))))
    assert data["risk"]["max_exposure_usd"] == "1000"
    assert data["risk"]["max_drawdown_usd"] is None
    assert data["execution"]["order_type"] == "market"
    json.dumps(data)


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_code_hash_ignores_pycache_compiled_and_hidden(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "x = 1\n", "sub/b.py": "y = 2\n"})
    before = proof.code_hash(tmp_path)
    write_tree(
        tmp_path,
        {"__pycache__/a.cpython-311.pyc": "junk", "sub/c.pyc": "junk", ".a.py.swp": "junk"},
    )
    assert proof.code_hash(tmp_path) == before


@pytest.mark.parametrize(
    "change",
    [{"a.py": "x = 1  # comment\n"}, {"sub/new.py": ""}, {"static/app.js": "1"}],
)
def test_code_hash_changes_on_any_source_edit(tmp_path: Path, change: dict[str, str]) -> None:
    write_tree(tmp_path, {"a.py": "x = 1\n", "sub/b.py": "y = 2\n"})
    before = proof.code_hash(tmp_path)
    write_tree(tmp_path, change)
    assert proof.code_hash(tmp_path) != before


def test_code_hash_distinguishes_renamed_file(tmp_path: Path) -> None:
    write_tree(tmp_path / "one", {"a.py": "x\n"})
    write_tree(tmp_path / "two", {"b.py": "x\n"})
    assert proof.code_hash(tmp_path / "one") != proof.code_hash(tmp_path / "two")


def test_code_hash_of_running_engine_is_stable() -> None:
    assert proof.code_hash() == proof.code_hash()
    assert len(proof.code_hash()) == 64


# ------------------------------------------------------------------ check plumbing


def test_check_env_strips_overrides_arm_and_secrets() -> None:
    env = proof_checks.check_env(
        {
            "PATH": "/bin",
            "ENGINE_RISK_MAX_OPEN_ORDERS": "9",
            "LIVE_ARMED": "true",
            "BINANCE_API_KEY": "k",
            "BINANCE_API_SECRET": "s",
        },
        {"ENGINE_ENGINE_MODE": "paper"},
    )
    assert env == {"PATH": "/bin", "ENGINE_ENGINE_MODE": "paper"}


def test_junit_counts_sums_suites() -> None:
    xml = (
        b'<testsuites><testsuite tests="5" failures="1" errors="0" skipped="2"/>'
        b'<testsuite tests="3" failures="0" errors="1" skipped="0"/></testsuites>'
    )
    assert proof_checks.junit_counts(xml) == {"tests": 8, "failures": 1, "errors": 1, "skipped": 2}


def test_timed_turns_exception_into_fail() -> None:
    def broken() -> tuple[bool, dict[str, object], str]:
        raise RuntimeError("boom")

    check = proof_checks.timed("replay", broken)  # type: ignore[arg-type]
    assert check.status is CheckStatus.FAIL
    assert "boom" in check.detail


def fake_project(tmp_path: Path, tests: dict[str, str]) -> Path:
    write_tree(tmp_path, {f"tests/{name}": body for name, body in tests.items()})
    return tmp_path


def test_invariants_no_files_fails(tmp_path: Path) -> None:
    check = proof_checks.check_invariants(fake_project(tmp_path, {"test_other.py": ""}))
    assert check.status is CheckStatus.FAIL
    assert "no files" in check.detail


def test_invariants_passing_suite_passes_with_counts(tmp_path: Path) -> None:
    root = fake_project(
        tmp_path,
        {
            "test_invariants_a.py": "def test_a():\n    assert True\n\ndef test_b():\n    pass\n",
            "test_strategy_properties.py": "def test_c():\n    pass\n",
            "test_unrelated.py": "def test_x():\n    assert False\n",
        },
    )
    check = proof_checks.check_invariants(root, {"PATH": "/usr/bin:/bin"})
    assert check.status is CheckStatus.PASS, check.detail
    assert check.figures["tests"] == 3
    assert check.figures["passed"] == 3
    assert check.figures["files"] == [
        "tests/test_invariants_a.py",
        "tests/test_strategy_properties.py",
    ]


@pytest.mark.parametrize(
    "body",
    [
        "def test_a():\n    assert 1 == 2\n",
        "import pytest\n\n@pytest.mark.skip\ndef test_a():\n    pass\n",
        "raise ImportError('broken module')\n",
    ],
)
def test_invariants_failing_skipped_or_broken_suite_fails(tmp_path: Path, body: str) -> None:
    root = fake_project(tmp_path, {"test_invariants_x.py": body})
    check = proof_checks.check_invariants(root, {"PATH": "/usr/bin:/bin"})
    assert check.status is CheckStatus.FAIL


def test_replay_without_cases_fails(tmp_path: Path) -> None:
    (tmp_path / "replays").mkdir()
    check = proof_checks.check_replay(tmp_path)
    assert check.status is CheckStatus.FAIL
    assert "cases.toml" in check.detail


def test_replay_empty_case_list_fails(tmp_path: Path) -> None:
    (tmp_path / "replays").mkdir()
    (tmp_path / "replays" / "cases.toml").write_text("case = []\n")
    assert proof_checks.check_replay(tmp_path).status is CheckStatus.FAIL


# ------------------------------------------------------------------ the command


def run_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, checks: list[CheckResult]
) -> tuple[int, Path]:
    monkeypatch.setattr(proof_command, "run_checks", lambda root, environ: list(checks))
    out = tmp_path / "proof.json"
    code = proof_command.run(argparse.Namespace(config=None, out=str(out)))
    return code, out


def test_proof_command_all_pass_exits_zero_and_gate_accepts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out = run_command(monkeypatch, tmp_path, passing())
    assert code == 0
    bundle = proof.verify_bundle(out.read_bytes())
    assert bundle.passed
    assert bundle.code_hash == proof.code_hash()
    assert bundle.risk_config_hash == proof.risk_config_hash(Config())
    assert [c.name for c in bundle.checks] == [*proof.REQUIRED_CHECKS, "code_unchanged"]


def test_proof_command_failed_check_still_writes_bundle_and_exits_nonzero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    checks = [*passing()[:2], result("risk_caps", "FAIL")]
    code, out = run_command(monkeypatch, tmp_path, checks)
    assert code != 0
    bundle = proof.verify_bundle(out.read_bytes())
    assert not bundle.passed
    assert {c.name: c.status for c in bundle.checks}["risk_caps"] is CheckStatus.FAIL


def test_proof_command_bundle_holds_no_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "s3cr3t-DO-NOT-LEAK-9f8e7d"
    monkeypatch.setenv("BINANCE_API_KEY", "key-DO-NOT-LEAK-1234")
    monkeypatch.setenv("BINANCE_API_SECRET", secret)
    _, out = run_command(monkeypatch, tmp_path, passing())
    text = out.read_text()
    assert secret not in text
    assert "key-DO-NOT-LEAK-1234" not in text


def test_code_unchanged_fails_when_source_moved_under_the_checks() -> None:
    assert proof_command.code_unchanged("a" * 64, "a" * 64).status is CheckStatus.PASS
    changed = proof_command.code_unchanged("a" * 64, "b" * 64)
    assert changed.status is CheckStatus.FAIL
    assert "changed" in changed.detail
