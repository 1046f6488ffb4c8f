"""The proof bundle: hashes, checksum, writing, the checks' plumbing and the ``proof`` command."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import engine.proof.replay
from engine.commands import proof as proof_command
from engine.config.schema import (
    Config,
    ExecutionSection,
    RiskSection,
    StrategyChoice,
    StrategySection,
)
from engine.exits import ConfigError
from engine.proof import checks, evidence, properties, risk_caps
from engine.proof.evidence import CheckResult, CheckStatus, PropertyResult
from engine.proof.properties import Property, given_property, run_property
from tests.fakes.engine_process import REPO, engine_env, run_engine

NOW = 1_723_100_000_123_456_789


LIBRARIES = ("hypothesis==6.170.17", "msgspec==0.22.0")


def result(name: str, status: str = "PASS", **figures: object) -> CheckResult:
    return CheckResult(
        name=name,
        status=CheckStatus(status),
        duration_s=0.25,
        summary=f"{name} figures",
        figures=figures,
        detail="" if status == "PASS" else f"{name} broke",
    )


def passing() -> list[CheckResult]:
    return [result(n, tests=3) for n in evidence.REQUIRED_CHECKS]


def build(checks: list[CheckResult] | None = None, config: Config | None = None) -> evidence.Bundle:
    return evidence.build_bundle(
        checks=passing() if checks is None else checks,
        created_at_ns=NOW,
        engine_version="0.1.0",
        code_hash="ab" * 32,
        config=Config() if config is None else config,
        libraries=LIBRARIES,
    )


# ------------------------------------------------------------------ bundle


def test_bundle_roundtrip_verifies_and_keeps_fields() -> None:
    bundle = build()
    again = evidence.verify_bundle(evidence.encode_bundle(bundle))
    assert again == bundle
    assert again.created_at == "2024-08-08T06:53:20Z"
    assert again.passed
    assert [c.name for c in again.checks] == list(evidence.REQUIRED_CHECKS)
    assert again.format == evidence.BUNDLE_FORMAT == 3
    assert again.libraries == LIBRARIES
    assert again.lock_hash == evidence.hash_libraries(LIBRARIES)
    assert again.lock_file_hash is None


def test_bundle_checksum_covers_every_field() -> None:
    raw = json.loads(evidence.encode_bundle(build()))
    for key in raw:
        if key == "checksum":
            continue
        tampered = dict(raw)
        tampered[key] = "x" if not isinstance(raw[key], str) else raw[key] + "x"
        with pytest.raises(evidence.BundleError):
            evidence.verify_bundle(json.dumps(tampered).encode())


def test_bundle_with_failed_check_is_not_passed() -> None:
    bundle = build([*passing()[:2], result("risk_caps", "FAIL")])
    assert not evidence.verify_bundle(evidence.encode_bundle(bundle)).passed


def test_bundle_nan_in_figures_rejected_at_build() -> None:
    with pytest.raises(ValueError):
        build([result("replay", ratio=float("nan"))])


def test_write_bundle_atomic_creates_dirs_and_no_temp_left(tmp_path: Path) -> None:
    target = tmp_path / "var" / "sub" / "proof.json"
    evidence.write_bundle(build(), target)
    evidence.write_bundle(build(), target)  # overwrite
    assert evidence.verify_bundle(target.read_bytes()).checksum == build().checksum
    assert sorted(p.name for p in target.parent.iterdir()) == ["proof.json"]


def test_read_bundle_bytes_missing_file_is_none(tmp_path: Path) -> None:
    assert evidence.read_bundle_bytes(tmp_path / "nope.json") is None


# ------------------------------------------------------------------ hashes


def test_risk_hash_changes_with_risk_and_execution_only() -> None:
    base = evidence.risk_config_hash(Config())
    assert evidence.risk_config_hash(Config(risk=RiskSection(max_open_orders=2))) != base
    assert (
        evidence.risk_config_hash(Config(execution=ExecutionSection(order_notional_usd=Decimal(50))))
        != base
    )
    other_strategy = StrategyChoice(params=StrategySection(fast=3, slow=9))
    assert evidence.risk_config_hash(Config(strategy=other_strategy)) == base


def test_risk_config_of_is_plain_json_with_normalised_decimals() -> None:
    data = evidence.risk_config_of(Config(risk=RiskSection(max_exposure_usd=Decimal("1000.000"))))
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
    before = evidence.code_hash(tmp_path)
    write_tree(
        tmp_path,
        {"__pycache__/a.cpython-311.pyc": "junk", "sub/c.pyc": "junk", ".a.py.swp": "junk"},
    )
    assert evidence.code_hash(tmp_path) == before


@pytest.mark.parametrize(
    "change",
    [{"a.py": "x = 1  # comment\n"}, {"sub/new.py": ""}, {"static/app.js": "1"}],
)
def test_code_hash_changes_on_any_source_edit(tmp_path: Path, change: dict[str, str]) -> None:
    write_tree(tmp_path, {"a.py": "x = 1\n", "sub/b.py": "y = 2\n"})
    before = evidence.code_hash(tmp_path)
    write_tree(tmp_path, change)
    assert evidence.code_hash(tmp_path) != before


def test_code_hash_distinguishes_renamed_file(tmp_path: Path) -> None:
    write_tree(tmp_path / "one", {"a.py": "x\n"})
    write_tree(tmp_path / "two", {"b.py": "x\n"})
    assert evidence.code_hash(tmp_path / "one") != evidence.code_hash(tmp_path / "two")


def test_code_hash_of_running_engine_is_stable() -> None:
    assert evidence.code_hash() == evidence.code_hash()
    assert len(evidence.code_hash()) == 64


# ------------------------------------------------------------------ check plumbing


def test_check_env_strips_overrides_arm_and_secrets() -> None:
    env = checks.check_env(
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


def test_timed_turns_exception_into_fail() -> None:
    def broken() -> tuple[bool, dict[str, object], str, str]:
        raise RuntimeError("boom")

    check = checks.timed("replay", broken)
    assert check.status is CheckStatus.FAIL
    assert check.detail == "cannot run: RuntimeError: boom"


def test_timed_fail_without_reason_gets_one_and_reason_is_one_line() -> None:
    silent = checks.timed("replay", lambda: (False, {}, "", ""))
    assert silent.status is CheckStatus.FAIL
    assert silent.detail == "failed without a reason (a bug in the check)"
    wordy = checks.timed("replay", lambda: (False, {}, "", "first\n\n  second\n"))
    assert wordy.detail == "first | second"
    passed = checks.timed("replay", lambda: (True, {"n": 1}, "1 case", "ignored"))
    assert (passed.status, passed.summary, passed.detail) == (CheckStatus.PASS, "1 case", "")


@given(st.text(max_size=2_000))
def test_one_line_never_holds_a_newline_and_is_bounded(text: str) -> None:
    flat = evidence.one_line(text)
    assert "\n" not in flat and "\r" not in flat
    assert len(flat) <= evidence.DETAIL_CHARS


def test_check_env_drops_pythonoptimize() -> None:
    assert checks.check_env({"PYTHONOPTIMIZE": "1", "PATH": "/bin"}) == {"PATH": "/bin"}


# ------------------------------------------------------------------ properties


def prop_result(name: str, status: str = "PASS", detail: str = "") -> PropertyResult:
    return PropertyResult(
        name=name, covers="I2", status=CheckStatus(status), examples=10, ran=10, steps=0,
        seed=1, seconds=0.5, detail=detail,
    )  # fmt: skip


def test_judge_properties_all_reported_and_passed_passes() -> None:
    ok, figures, summary, detail = checks.judge_properties(
        [prop_result("a"), prop_result("b")], ["a", "b"], 0, ""
    )
    assert ok and detail == ""
    assert summary == "2/2 properties, 20 examples"
    assert [p["name"] for p in figures["properties"]] == ["a", "b"]
    assert figures["properties"][0]["examples"] == 10


def test_judge_properties_failed_one_names_it_with_reason() -> None:
    ok, _, _, detail = checks.judge_properties(
        [prop_result("a"), prop_result("b", "FAIL", "AssertionError at x.py:3")], ["a", "b"], 1, ""
    )
    assert not ok
    assert detail == "b: AssertionError at x.py:3"


@pytest.mark.parametrize(("returncode", "why"), [(None, "timed out"), (-9, "exited -9")])
def test_judge_properties_run_that_died_names_the_missing(returncode: int | None, why: str) -> None:
    ok, _, _, detail = checks.judge_properties(
        [prop_result("a")], ["a", "b", "c"], returncode, "Traceback\nMemoryError\n"
    )
    assert not ok
    assert detail.startswith(f"property run {why} before b, c reported")
    assert "MemoryError" in detail


def test_invariants_check_whose_process_cannot_import_hypothesis_fails_with_why(
    tmp_path: Path,
) -> None:
    """A real subprocess that cannot run at all: the reason, on one line, not a bare FAIL."""
    (tmp_path / "hypothesis.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'hypothesis' (simulated)\")\n"
    )
    check = checks.check_invariants({**engine_env(), "PYTHONPATH": str(tmp_path)})
    assert check.status is CheckStatus.FAIL
    assert check.detail.startswith("property run exited 1 before any property reported: ")
    assert check.detail.endswith("No module named 'hypothesis' (simulated)")
    assert "\n" not in check.detail


def test_judge_properties_nonzero_exit_with_all_passed_still_fails() -> None:
    ok, _, _, detail = checks.judge_properties([prop_result("a")], ["a"], 3, "boom")
    assert not ok and "exited 3" in detail


def test_parse_property_lines_keeps_results_and_other_lines_apart() -> None:
    good = msgspec.json.encode(prop_result("a")).decode()
    results, other = checks.parse_property_lines(f"{good}\nnoise\n\n{{\"name\": 1}}\n")
    assert [r.name for r in results] == ["a"]
    assert other == ["noise", '{"name": 1}']


def failing(n: int) -> None:
    assert n < 5, f"n = {n} is too big"


def test_run_property_failure_reason_has_place_message_and_example() -> None:
    prop = Property("failing", "test", 50, 7, given_property(failing, {"n": st.integers(0, 9)}))
    result = run_property(prop)
    assert result.status is CheckStatus.FAIL
    assert "AssertionError at test_evidence.py" in result.detail
    assert "n = 5 is too big" in result.detail  # shrunk to the smallest failing example
    assert "n=5" in result.detail  # hypothesis's falsifying example
    assert "\n" not in result.detail
    assert result.ran > 0


def test_run_property_same_seed_same_examples() -> None:
    seen: list[list[int]] = []

    def body(xs: list[int]) -> None:
        seen[-1].append(sum(xs))

    prop = Property("det", "test", 30, 11, given_property(body, {"xs": st.lists(st.integers())}))
    for _ in range(2):
        seen.append([])
        assert run_property(prop).status is CheckStatus.PASS
    assert seen[0] == seen[1]
    assert len(seen[0]) == 30


def test_run_property_that_cannot_be_built_is_a_fail_with_reason() -> None:
    def build(*_: object) -> properties.Runner:
        raise ImportError("no module named foo")

    result = run_property(Property("broken", "test", 10, 1, build))
    assert result.status is CheckStatus.FAIL
    assert result.detail.startswith("ImportError at ")
    assert "no module named foo" in result.detail


def test_registry_names_unique_and_every_property_has_examples() -> None:
    names = [p.name for p in properties.PROPERTIES]
    assert len(names) == len(set(names)) == 9
    assert all(p.examples > 0 for p in properties.PROPERTIES)
    assert len({p.seed for p in properties.PROPERTIES}) == len(names)


def properties_process(*args: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-m", "engine.proof.properties", *args],
        capture_output=True, text=True, env=engine_env(), cwd=REPO, timeout=300, check=False,
    )  # fmt: skip


def test_properties_module_prints_one_result_per_property_and_exit_0() -> None:
    done = properties_process("strategy_on_tick_same_as_on_batch", "i1_shadow_paper_no_socket")
    assert done.returncode == 0, done.stderr
    results, other = checks.parse_property_lines(done.stdout)
    assert other == []
    assert [(r.name, r.status) for r in results] == [
        ("strategy_on_tick_same_as_on_batch", CheckStatus.PASS),
        ("i1_shadow_paper_no_socket", CheckStatus.PASS),
    ]


def test_without_local_constants_reaches_hypothesis_internals_and_restores_them() -> None:
    from hypothesis.internal.conjecture import providers

    before = providers._get_local_constants
    with properties.without_local_constants() as active:
        assert active  # a hypothesis upgrade that moved these internals fails here
        empty = providers._get_local_constants()
        assert not any(empty.set_for_type(t) for t in ("integer", "float", "bytes", "string"))
    assert providers._get_local_constants is before


def test_property_draws_the_same_examples_whatever_local_modules_are_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local module full of literals (hypothesis mines such modules for constants to
    draw) is loaded here and not in the proof's process: the examples must not change."""
    lib = tmp_path / "lib"
    lib.mkdir()
    literals = ", ".join(str(n) for n in range(-300, 3000, 7))
    (lib / "literals_galore.py").write_text(f"VALUES = ({literals})\nWORDS = ('AAA', 'x', '')\n")
    monkeypatch.syspath_prepend(str(lib))
    __import__("literals_galore")
    name = "i2_i4_paper_market"
    here = run_property(next(p for p in properties.PROPERTIES if p.name == name))
    done = properties_process(name)
    [there] = checks.parse_property_lines(done.stdout)[0]
    assert (here.status, here.ran) == (there.status, there.ran)


def test_properties_module_unknown_name_exits_2_naming_the_known() -> None:
    done = properties_process("no_such_property")
    assert done.returncode == 2
    assert "no_such_property" in done.stderr and "i2_i4_shadow" in done.stderr


def test_properties_under_python_O_fail_instead_of_passing_vacuously() -> None:
    done = properties_process("strategy_on_tick_same_as_on_batch", flags=("-O",))
    assert done.returncode == 1
    [result] = checks.parse_property_lines(done.stdout)[0]
    assert result.status is CheckStatus.FAIL
    assert "assertions are disabled" in result.detail


# ------------------------------------------------------------------ checks that cannot run


def test_replay_without_cases_fails_naming_the_folder(tmp_path: Path) -> None:
    check = checks.check_replay(tmp_path)
    assert check.status is CheckStatus.FAIL
    assert check.detail == f"no cases.toml in {tmp_path}"


def test_replay_empty_case_list_fails(tmp_path: Path) -> None:
    (tmp_path / "cases.toml").write_text("case = []\n")
    check = checks.check_replay(tmp_path)
    assert check.status is CheckStatus.FAIL
    assert "lists no case" in check.detail


def test_replay_unreadable_cases_file_fails_with_one_line_reason(tmp_path: Path) -> None:
    (tmp_path / "cases.toml").write_text("[[case]]\nname = 1\nbogus = true\n")
    check = checks.check_replay(tmp_path)
    assert check.status is CheckStatus.FAIL
    assert check.detail.startswith("cannot run: ")
    assert "\n" not in check.detail


def test_replay_case_with_missing_capture_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "cases.toml").write_text(
        '[[case]]\nname = "gone"\ncapture = "gone.gz"\ndigest = "00"\n'
    )
    check = checks.check_replay(tmp_path)
    assert check.status is CheckStatus.FAIL
    assert check.detail.startswith("gone: replay exited 12")


def test_risk_caps_without_cases_fails_with_reason(tmp_path: Path) -> None:
    check = risk_caps.check_risk_caps(tmp_path)
    assert check.status is CheckStatus.FAIL
    assert check.detail.startswith("cannot run: FileNotFoundError")


def test_packaged_cases_hold_the_capture_and_replays_is_the_same_folder() -> None:
    cases = engine.proof.replay.packaged_cases_dir()
    assert cases.parent.name == "engine"
    names = {c.name for c in engine.proof.replay.load_cases(cases)}
    assert names == {"btcusdt_20240808-shadow", "btcusdt_20240808-paper"}
    assert (cases / "btcusdt_20240808.PROVENANCE.md").is_file()
    assert hashlib.sha256((cases / "btcusdt_20240808.gz").read_bytes()).hexdigest() == (
        "5d263f4c5379cfc27379ef0e22779aa33804463d1b69c292e9c0714e31f2e1b4"
    )
    assert (REPO / "replays").resolve() == cases  # one copy, reachable as replays/

# ------------------------------------------------------------------ the command


def run_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, checks: list[CheckResult]
) -> tuple[int, Path]:
    monkeypatch.setattr(proof_command, "run_checks", lambda environ, config: list(checks))
    out = tmp_path / "proof.json"
    code = proof_command.run(argparse.Namespace(config=None, out=str(out)))
    return code, out


def test_proof_command_all_pass_exits_zero_and_gate_accepts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out = run_command(monkeypatch, tmp_path, passing())
    assert code == 0
    bundle = evidence.verify_bundle(out.read_bytes())
    assert bundle.passed
    assert bundle.code_hash == evidence.code_hash()
    assert bundle.risk_config_hash == evidence.risk_config_hash(Config())
    assert [c.name for c in bundle.checks] == [*evidence.REQUIRED_CHECKS, "code_unchanged"]
    assert bundle.lock_hash == evidence.lock_hash()
    assert bundle.libraries == evidence.installed_libraries()
    assert "hypothesis" in {lib.partition("==")[0] for lib in bundle.libraries}


def test_proof_command_failed_check_still_writes_bundle_and_exits_nonzero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    checks = [*passing()[:2], result("risk_caps", "FAIL")]
    code, out = run_command(monkeypatch, tmp_path, checks)
    assert code != 0
    bundle = evidence.verify_bundle(out.read_bytes())
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


def test_proof_command_prints_a_line_per_check_then_the_verdict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    props = [msgspec.to_builtins(prop_result("i2_i4_shadow")),
             msgspec.to_builtins(prop_result("strategy_x", "FAIL", "AssertionError at y.py:1"))]
    invariants = CheckResult(
        name="invariants", status=CheckStatus.FAIL, duration_s=1.0,
        figures={"properties": props}, detail="strategy_x: AssertionError at y.py:1",
    )  # fmt: skip
    monkeypatch.setattr(
        proof_command, "run_checks",
        lambda environ, config: [proof_command.report(c) for c in (invariants, *passing()[1:])],
    )  # fmt: skip
    code = proof_command.run(argparse.Namespace(config=None, out=str(tmp_path / "p.json")))
    assert code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "FAIL invariants: strategy_x: AssertionError at y.py:1",
        "  PASS invariants/i2_i4_shadow (10 examples, 0.5 s)",
        "  FAIL invariants/strategy_x: AssertionError at y.py:1",
        "PASS replay (replay figures)",
        "PASS risk_caps (risk_caps figures)",
        "PASS strategy (strategy figures)",
        f"PASS code_unchanged (code {evidence.code_hash()[:12]}...)",
        f"hybrid-engine proof: FAIL -> {tmp_path / 'p.json'}",
    ]


def test_usable_out_directory_is_refused_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--out .*: is a directory"):
        proof_command.usable_out(str(tmp_path), "--out")


def test_usable_out_under_a_file_is_refused_naming_the_flag(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^--out .*file/sub/proof.json: cannot write there "
                       r"\(.*file is not a directory\)$"):  # fmt: skip
        proof_command.usable_out(str(tmp_path / "file" / "sub" / "proof.json"), "--out")


NAMES = st.text(
    st.characters(blacklist_characters="/", blacklist_categories=()), min_size=1, max_size=300
).filter(lambda s: s not in (".", ".."))
"""Any file name, NUL bytes and lone surrogates (undecodable argv bytes) included."""


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=NAMES)
@example(name="\udcff")  # an undecodable argv byte: valid on disk, not in a log line
@example(name="a\x00b")
@example(name="x" * 300)
def test_usable_out_admits_or_refuses_any_name_never_raises_otherwise(
    tmp_path: Path, name: str
) -> None:
    try:
        target = proof_command.usable_out(str(tmp_path / "out" / name), "--out")
    except ConfigError as exc:
        assert str(exc).startswith("--out ")
        assert "\n" not in str(exc)
    else:  # what is admitted can be written: the write at the end never raises
        assert sorted((tmp_path / "out").iterdir()) == []
        msgspec.json.encode({"path": str(target)})  # as the proof's log lines carry it
        evidence.write_bundle(build(), target)
        assert evidence.verify_bundle(target.read_bytes()) == build()
        target.unlink()


def test_usable_out_creates_parents_and_leaves_no_probe(tmp_path: Path) -> None:
    target = proof_command.usable_out(str(tmp_path / "a" / "b" / "proof.json"), "--out")
    assert target.parent.is_dir()
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("where", ["dir", "under_file"])
def test_proof_cli_unusable_out_exits_12_with_one_line_naming_out(
    tmp_path: Path, where: str
) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path if where == "dir" else tmp_path / "file" / "proof.json"
    done = run_engine(["proof", "--out", str(out)], timeout=60)
    assert done.returncode == 12, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"hybrid-engine: configuration error: --out {out}: ")
    assert "Traceback" not in done.stdout + done.stderr


def test_proof_cli_unusable_proof_path_from_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(f'[engine]\nproof_path = "{tmp_path}"\n')
    done = run_engine(["proof", "--config", str(config)], timeout=60)
    assert done.returncode == 12
    [line] = done.stderr.strip().splitlines()
    assert f"[engine] proof_path = {tmp_path}: is a directory" in line


# ------------------------------------------------------------------ the locked libraries


def test_hash_libraries_ignores_order_and_duplicates_not_versions() -> None:
    base = evidence.hash_libraries(["a==1", "b==2"])
    assert evidence.hash_libraries(["b==2", "a==1", "a==1"]) == base
    assert evidence.hash_libraries(["a==1", "b==3"]) != base


def test_library_changes_names_upgrade_addition_removal() -> None:
    assert evidence.library_changes(["a==1", "b==2"], ["a==2", "c==1"]) == "a 1 -> 2; -b 2; +c 1"
    many = evidence.library_changes([], [f"x{i}==1" for i in range(9)], limit=2)
    assert many == "+x0 1; +x1 1; 7 more"


def test_installed_libraries_are_sorted_normalised_and_include_the_engine() -> None:
    libs = evidence.installed_libraries()
    assert list(libs) == sorted(set(libs))
    assert all(lib == lib.lower() and "_" not in lib.partition("==")[0] for lib in libs)
    assert any(lib.startswith("hybrid-engine==") for lib in libs)
    assert any(lib.startswith("trio-websocket==") for lib in libs)


def test_lock_file_hash_beside_the_checkout_or_none(tmp_path: Path) -> None:
    package = tmp_path / "engine"
    package.mkdir()
    assert evidence.lock_file_hash(package) is None
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "lock.txt").write_bytes(b"trio==0.35.0 --hash=sha256:00\n")
    assert evidence.lock_file_hash(package) == hashlib.sha256(
        b"trio==0.35.0 --hash=sha256:00\n"
    ).hexdigest()
