"""The LIVE gate refuses a strategy whose kind, parameters or source changed since the proof.

Pure verdicts (``evaluate_gate``) for each kind of change, then the real CLI: ``hybrid-engine
run`` in LIVE mode, armed, against a bundle that proves another strategy exits 12 with one
line and connects nothing.
"""

from __future__ import annotations

from pathlib import Path

from engine.config.load import load_config
from engine.config.schema import Config
from engine.proof import evidence as proof
from engine.proof.gate import Condition, evaluate_gate
from tests.fakes.engine_process import parse_logs, run_engine
from tests.fakes.live_gate import ARMED, Live
from tests.fakes.live_gate import live as live  # noqa: PLC0414 -- the fixture

HOUR_NS = 3_600 * 1_000_000_000
CREATED = 1_723_100_000 * 1_000_000_000


def bundle_for(config: Config) -> bytes:
    bundle = proof.build_bundle(
        checks=[
            proof.CheckResult(name=n, status=proof.CheckStatus.PASS, duration_s=1.0)
            for n in proof.REQUIRED_CHECKS
        ],
        created_at_ns=CREATED,
        engine_version="test",
        code_hash="c" * 64,
        config=config,
        libraries=("a==1",),
    )
    return proof.encode_bundle(bundle)


def verdict_for(proven: Config, running: Config) -> list[tuple[Condition, str]]:
    verdict = evaluate_gate(
        environ=ARMED, arm_flag=False, bundle_bytes=bundle_for(proven),
        now_wall_ns=CREATED + HOUR_NS, code_hash="c" * 64,
        risk_config_hash=proof.risk_config_hash(running), libraries=("a==1",), config=running,
    )  # fmt: skip
    return [(u.condition, u.detail) for u in verdict.unmet]


def config_of(tmp_path: Path, strategy: str) -> Config:
    path = tmp_path / "c.toml"
    path.write_text(f"[strategy]\n{strategy}\n")
    return load_config(path, environ={})


def test_the_same_strategy_passes(tmp_path: Path) -> None:
    table = 'kind = "donchian_breakout"\nlookback = 30'
    assert verdict_for(config_of(tmp_path, table), config_of(tmp_path, table)) == []


def test_another_kind_is_refused(tmp_path: Path) -> None:
    [(condition, detail)] = verdict_for(Config(), config_of(tmp_path, 'kind = "donchian_breakout"'))
    assert condition is Condition.STRATEGY
    assert "kind 'sma_cross' -> 'donchian_breakout'" in detail


def test_other_parameters_are_refused(tmp_path: Path) -> None:
    [(condition, detail)] = verdict_for(Config(), config_of(tmp_path, "fast = 3"))
    assert condition is Condition.STRATEGY
    assert "params {'bar_seconds': 1, 'fast': 5, 'slow': 20} -> {'fast': 3," in detail


def test_an_edited_strategy_file_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "mine.py"
    source.write_text("class Mine:\n    def on_tick(self, tick):\n        return None\n")
    proven = config_of(tmp_path, 'kind = "mine.py:Mine"')
    bundle = bundle_for(proven)
    source.write_text(source.read_text() + "# a comment is a change too\n")
    running = config_of(tmp_path, 'kind = "mine.py:Mine"')
    verdict = evaluate_gate(
        environ=ARMED, arm_flag=False, bundle_bytes=bundle, now_wall_ns=CREATED + HOUR_NS,
        code_hash="c" * 64, risk_config_hash=proof.risk_config_hash(running),
        libraries=("a==1",), config=running,
    )  # fmt: skip
    [unmet] = verdict.unmet
    assert unmet.condition is Condition.STRATEGY
    assert unmet.detail.startswith("the strategy changed since the proof: source ")
    assert "strategy check" in unmet.remedy


def test_run_live_armed_with_another_strategy_exits_12_one_line(live: Live) -> None:
    live.write_bundle()  # proves sma_cross with the defaults
    live.config_path.write_text(
        live.config_path.read_text() + '\n[strategy]\nkind = "donchian_breakout"\n'
    )
    proc = run_engine(["run", "--config", str(live.config_path)], env=ARMED, timeout=60)
    assert proc.returncode == 12, proc.stdout + proc.stderr
    refused = [line for line in parse_logs(proc.stdout) if line["event"] == "live_gate_refused"]
    assert [r["condition"] for r in refused] == ["strategy"]
    assert "kind 'sma_cross' -> 'donchian_breakout'" in str(refused[0]["detail"])
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "LIVE gate G1 refused (1 unmet: strategy)" in proc.stderr
    assert live.nothing_connected()


def test_the_proofs_strategy_check_records_the_identity_and_fails_a_clock_reader() -> None:
    from engine.config.strategies import admit_strategy
    from engine.proof.any_strategy import check_configured

    passed = check_configured(Config().strategy)
    assert passed.status is proof.CheckStatus.PASS, passed.detail
    assert passed.figures["identity"]["kind"] == "sma_cross"
    assert passed.figures["ticks"] == 9757
    assert [p["name"] for p in passed.figures["properties"]] == [
        "two_fresh_processes", "any_rebatching", "pure_source", "no_clock_reads",
        "ticks_unchanged",
    ]  # fmt: skip
    failed = check_configured(
        admit_strategy({"kind": "tests/strategies/clock_reader.py:ClockReader"})
    )
    assert failed.status is proof.CheckStatus.FAIL
    assert "pure_source: clock_reader.py:5 imports time" in failed.detail
    assert "no_clock_reads: " in failed.detail
