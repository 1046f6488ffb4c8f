"""A trader's own strategy: loaded by module or file, proved by ``strategy check``, stopped cleanly.

Real parts: the CLI in fresh processes, the bundled real capture, a real SQLite file.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from engine.config.load import load_config
from engine.config.schema import Config, RiskSection
from engine.config.strategies import admit_strategy, identify_strategy
from engine.core.events import Order, Record, Side, Signal, Tick, Veto, VetoReason
from engine.core.execution import Execution
from engine.core.hosted import Hosted, StrategyFault, admit_signal, signal_for
from engine.exits import ConfigError
from engine.proof import replay
from engine.proof.any_strategy import (
    capture_ticks,
    check_strategy,
    fresh_strategy,
    packaged_capture,
    source_problems,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "strategies"
BROKEN = REPO / "tests" / "strategies"
CAPTURE = REPO / "replays" / "btcusdt_20240808.gz"


def engine(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip


def human(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines that are not JSON log lines."""
    return [line for line in proc.stdout.splitlines() if not line.startswith("{")]


def log_events(proc: subprocess.CompletedProcess[str], event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


# ---------------------------------------------------------------- loading


def test_user_strategy_from_a_file_path_relative_to_the_config(tmp_path: Path) -> None:
    config = load_config(EXAMPLE / "momentum.toml", environ={})
    assert config.strategy.kind == f"{EXAMPLE / 'momentum.py'}:Momentum"
    strategy = fresh_strategy(config.strategy)
    assert isinstance(strategy, Hosted)
    assert "momentum over 200 trades" in strategy.describe()
    identity = identify_strategy(config.strategy)
    assert identity.params == {"lookback": 200, "threshold_bps": "2"}
    assert identity.sources == ("momentum.py",)


def test_user_strategy_from_an_importable_module() -> None:
    choice = admit_strategy({"kind": "tests.strategies.misbehaving:RaisesAfter", "after": 3})
    strategy = fresh_strategy(choice)
    ticks = capture_ticks([CAPTURE], limit=5)
    strategy.on_batch(ticks[:2])
    with pytest.raises(ZeroDivisionError):
        strategy.on_batch(ticks[2:])
    assert identify_strategy(choice).sources == ("misbehaving.py",)


def test_user_strategy_from_the_environment_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(EXAMPLE)
    config = load_config(environ={"ENGINE_STRATEGY_KIND": "momentum.py:Momentum",
                                  "ENGINE_STRATEGY_LOOKBACK": "50"})  # fmt: skip
    assert config.strategy.kind == f"{EXAMPLE / 'momentum.py'}:Momentum"
    assert identify_strategy(config.strategy).params["lookback"] == 50


@pytest.mark.parametrize(
    ("table", "line"),
    [
        ({"kind": "no_such_strategy"}, "strategy.kind: unknown strategy 'no_such_strategy'"),
        ({"kind": 5}, "strategy.kind: Expected `str`"),
        ({"kind": "no_such_module_xyz:Thing"}, "strategy.kind: cannot import no_such_module_xyz"),
        ({"kind": "missing.py:Thing"}, "strategy.kind: "),
        ({"kind": "tests.strategies.misbehaving:Nope"}, "strategy.kind: tests.strategies.misb"),
        ({"kind": "tests.strategies.misbehaving:Params"}, "strategy.kind: Params has no on_tick"),
        ({"kind": "tests.strategies.misbehaving:RaisesAfter", "before": 1},
         "strategy.before: unknown key (tests.strategies.misbehaving:RaisesAfter takes: after)"),
        ({"kind": "tests.strategies.misbehaving:RaisesAfter", "after": "many"},
         "strategy.after: Expected `int`"),
        ({"kind": "tests.strategies.clock_reader:ClockReader", "x": 1},
         "strategy.x: unknown key (tests.strategies.clock_reader:ClockReader takes no param"),
        ({"kind": "sma_cross", "lookback": 3}, "strategy.lookback: unknown key (sma_cross takes"),
        ({"kind": "sma_cross", "fast": 30}, "strategy.slow: slow (20) must be greater than"),
        ({"kind": "donchian_breakout", "lookback": 10**6}, "strategy.lookback: must be 1 to"),
        ({"kind": "tests.strategies.misbehaving:RefusesToBuild"},
         "strategy.kind: tests.strategies.misbehaving:RefusesToBuild could not be built: "
         "ValueError: needs a venue"),
    ],
)
def test_bad_strategy_tables_are_refused_naming_the_key(
    table: dict[str, object], line: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        admit_strategy(table)
    assert str(refused.value).startswith(line), str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_bad_strategy_key_in_a_file_exits_12_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[strategy]\nkind = "donchian_breakout"\nlookbak = 5\n')
    proc = engine("replay", str(CAPTURE), "--config", str(path), "--db", str(tmp_path / "e.db"))
    assert proc.returncode == 12
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    takes = "(donchian_breakout takes: lookback, bar_seconds)"
    assert f"strategy.lookbak: unknown key {takes}" in lines[0]
    assert not (tmp_path / "e.db").exists()


def test_todays_sma_files_keep_working(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text("[strategy]\nfast = 3\nslow = 7\nbar_seconds = 2\n")
    config = load_config(path, environ={"ENGINE_STRATEGY_FAST": "4"})
    assert config.strategy.kind == "sma_cross"
    assert identify_strategy(config.strategy).params == {"fast": 4, "slow": 7, "bar_seconds": 2}


# ---------------------------------------------------------------- the host admits signals


def test_a_forged_lineage_is_refused_by_the_host() -> None:
    choice = admit_strategy({"kind": "tests.strategies.misbehaving:ForgesLineage"})
    strategy = fresh_strategy(choice)
    ticks = capture_ticks([CAPTURE], limit=300)
    with pytest.raises(StrategyFault, match="cause_id must be the tick's id"):
        strategy.on_batch(ticks)


# ---------------------------------------------------------------- strategy check


def test_the_example_passes_strategy_check() -> None:
    proc = engine("strategy", "check", "examples/strategies/momentum.py:Momentum",
                  "--config", "examples/strategies/momentum.toml")  # fmt: skip
    lines = human(proc)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert [line.split()[:2] for line in lines[1:-1]] == [
        ["PASS", "two_fresh_processes"], ["PASS", "any_rebatching"], ["PASS", "pure_source"],
        ["PASS", "no_clock_reads"], ["PASS", "ticks_unchanged"],
    ]  # fmt: skip
    assert "9,757 ticks, 20 signals" in lines[0]
    assert lines[-1].startswith("hybrid-engine strategy check: PASS")


@pytest.mark.parametrize("kind", ["sma_cross", "donchian_breakout"])
def test_the_built_ins_pass_strategy_check(kind: str) -> None:
    report = check_strategy(admit_strategy({"kind": kind}))
    assert report.passed, [p.detail for p in report.properties]
    assert report.ticks == 9757
    assert report.signals > 0


def test_a_clock_reading_strategy_fails_the_check() -> None:
    proc = engine("strategy", "check", "tests/strategies/clock_reader.py:ClockReader")
    lines = human(proc)
    assert proc.returncode == 1
    by_name = {line.split()[1].rstrip(":"): line for line in lines[1:-1]}
    assert by_name["pure_source"].startswith("FAIL pure_source: clock_reader.py:5 imports time")
    assert by_name["no_clock_reads"].startswith("FAIL no_clock_reads: 9757 clock/random reads")
    assert "time_ns" in by_name["no_clock_reads"]
    assert lines[-1].startswith("hybrid-engine strategy check: FAIL")


def test_a_clock_read_hidden_from_the_source_check_is_caught_while_it_runs() -> None:
    choice = admit_strategy({"kind": "tests/strategies/sneaky_clock.py:SneakyClock"})
    report = check_strategy(choice)
    results = {p.name: p for p in report.properties}
    assert results["pure_source"].status == "PASS"  # nothing the AST can see...
    assert results["no_clock_reads"].status == "FAIL"  # ...but the call is seen
    assert "monotonic_ns" in results["no_clock_reads"].detail


def test_a_batching_dependent_strategy_fails_the_check() -> None:
    report = check_strategy(
        admit_strategy({"kind": "tests/strategies/batch_dependent.py:FirstOfBatch"})
    )
    results = {p.name: p for p in report.properties}
    assert results["any_rebatching"].status == "FAIL"
    assert "one tick per batch vs one batch" in results["any_rebatching"].detail
    assert results["two_fresh_processes"].status == "PASS"  # deterministic, yet batch-dependent


def test_a_tick_mutating_strategy_fails_the_check() -> None:
    report = check_strategy(admit_strategy({"kind": "tests.strategies.misbehaving:MutatesTicks"}))
    results = {p.name: p for p in report.properties}
    assert results["ticks_unchanged"].status == "FAIL"
    assert "a tick was mutated" in results["ticks_unchanged"].detail


def test_source_check_names_each_forbidden_import_and_call(tmp_path: Path) -> None:
    path = tmp_path / "s.py"
    path.write_text("import os.path\nfrom random import choice\nimport engine.store.task\n"
                    "from engine.core import events\nx = open('f')\n")  # fmt: skip
    assert source_problems(path) == [
        "s.py:1 imports os.path", "s.py:2 imports random", "s.py:3 imports engine.store.task",
        "s.py:5 calls open()",
    ]  # fmt: skip


# ---------------------------------------------------------------- replay: the case, a raise


def test_the_example_replays_to_its_committed_digest() -> None:
    [result] = replay.check_replays(EXAMPLE)
    assert result.ok, result
    assert result.ticks == [9757, 9757]


def test_a_raising_strategy_drains_persists_everything_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "raise.toml"
    config.write_text(f'[strategy]\nkind = "{BROKEN / "misbehaving.py"}:RaisesAfter"\n'
                      "after = 5000\n")  # fmt: skip
    db = tmp_path / "e.db"
    proc = engine("replay", str(CAPTURE), "--config", str(config), "--db", str(db))
    assert proc.returncode == 1, proc.stderr
    failed = log_events(proc, "strategy_failed")
    assert len(failed) == 1  # logged once, with the strategy's own traceback
    assert "ZeroDivisionError: strategy bug at tick binance:BTCUSDT:" in str(failed[0]["error"])
    assert 'misbehaving.py", line' in str(failed[0]["traceback"])
    assert "exit 1 (CRASH): StrategyFailed: strategy raised ZeroDivisionError" in proc.stderr
    with sqlite3.connect(db) as conn:
        ticks = conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0]
        signals = conn.execute("SELECT COUNT(*) FROM signals").fetchone()[0]
        (counters,) = conn.execute(
            "SELECT counters FROM heartbeats WHERE final = 1 ORDER BY hb_id DESC LIMIT 1"
        ).fetchone()
    assert json.loads(counters)["strategy_ns"] > 0  # time inside the strategy, a heartbeat counter
    # Nothing accepted is lost: every tick the replay accepted was persisted, the
    # failing batch's and those queued behind it included.
    [stopped] = log_events(proc, "ingest_stopped")
    assert ticks == stopped["ingest_processed"]
    assert ticks >= 5000
    assert signals == 4  # ticks 1000..4000 signalled; the failing batch adds none


def test_tick_by_tick_equals_batches_for_the_example() -> None:
    choice = admit_strategy({"kind": f"{EXAMPLE / 'momentum.py'}:Momentum"})
    ticks = capture_ticks([packaged_capture()])
    whole = fresh_strategy(choice).on_batch(ticks)
    strategy = fresh_strategy(choice)
    assert isinstance(strategy, Hosted)
    single: list[Tick | Signal] = []
    for tick in ticks:
        single.append(tick)
        signal = strategy.on_tick(tick)
        if signal is not None:
            single.append(signal)
    assert single == whole
    sides = [s.side for s in whole if isinstance(s, Signal)]
    assert all(a != b for a, b in itertools.pairwise(sides))  # alternates
    assert sides[0] in (Side.BUY, Side.SELL)


# ---------------------------------------------------------------- notional and reason


def sized_run(notional: str, risk: dict[str, str] | None = None) -> list[Record]:
    """The records execution makes of ``Sized``'s signals over the first 3,000 real ticks."""
    config = Config(risk=msgspec.convert(risk or {}, RiskSection, strict=False))
    choice = admit_strategy({"kind": "tests.strategies.sized:Sized", "notional": notional})
    strategy = fresh_strategy(choice)
    execution = Execution(config)
    ticks = capture_ticks([CAPTURE], limit=3000)
    records: list[Record] = []
    for start in range(0, len(ticks), 700):
        records += execution.process(strategy.on_batch(ticks[start : start + 700]))
    return records


def test_a_signals_notional_sizes_its_buy_and_the_caps_still_decide() -> None:
    buys = [r for r in sized_run("50") if isinstance(r, Order) and r.side is Side.BUY]
    assert buys, "the strategy bought nothing"
    for order in buys:  # 50 USD, not order_notional_usd's 100
        assert Decimal(49) < order.qty * order.price <= Decimal("50.01")
    capped = sized_run("400", {"max_exposure_usd": "300", "max_symbol_exposure_usd": "300"})
    vetoes = [r for r in capped if isinstance(r, Veto) and r.reason is VetoReason.RISK_CAP]
    assert vetoes, "a 400 USD BUY under a 300 USD cap was not vetoed"
    assert vetoes[0].detail.endswith("(signal: every Nth trade)")


@pytest.mark.parametrize("notional", ["0", "-5", "1E+10", "0.0000000000001", "NaN"])
def test_a_bad_notional_is_refused_by_the_host(notional: str) -> None:
    [tick] = capture_ticks([CAPTURE], limit=1)
    signal = msgspec.structs.replace(signal_for(tick, Side.BUY), notional=Decimal(notional))
    with pytest.raises(StrategyFault, match="notional must be"):
        admit_signal(signal, tick, "test")


def test_a_reason_with_a_line_break_is_refused_by_the_host() -> None:
    [tick] = capture_ticks([CAPTURE], limit=1)
    with pytest.raises(StrategyFault, match="reason must be printable"):
        admit_signal(signal_for(tick, Side.SELL, reason="two\nlines"), tick, "test")


def test_a_relative_config_path_still_gives_an_absolute_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    config = load_config("examples/strategies/momentum.toml", environ={})
    assert config.strategy.kind == f"{EXAMPLE / 'momentum.py'}:Momentum"


def test_a_raising_strategy_fails_every_property_naming_the_exception() -> None:
    proc = engine("strategy", "check", "tests/strategies/misbehaving.py:RaisesAfter")
    lines = human(proc)
    assert proc.returncode == 1
    assert len(lines[1:-1]) == 5
    for line in lines[1:-1]:
        assert line.startswith("FAIL "), line
        assert "the strategy raised ZeroDivisionError: strategy bug at tick" in line


def test_strategy_check_refuses_what_it_cannot_run_with_12(tmp_path: Path) -> None:
    not_capture = tmp_path / "x.txt"
    not_capture.write_text("hello\n")
    for args, named in (
        (["no_such_kind"], "strategy.kind: unknown strategy"),
        (["sma_cross", "--capture", str(tmp_path / "missing.gz")], "--capture "),
        (["sma_cross", "--capture", str(not_capture)], f"capture {not_capture}"),
        (["sma_cross", "--bogus"], "unrecognized arguments: --bogus"),
    ):
        proc = engine("strategy", "check", *args)
        assert proc.returncode == 12, (args, proc.stderr)
        [line] = proc.stderr.strip().splitlines()
        assert named in line, (args, line)
