"""A first run that shows what it does: the start line and the heartbeat's progress lines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config.load import load_config
from engine.config.schema import Config, Mode, ProgressSetting, Source
from engine.counters import Counters
from engine.exits import ExitCode
from engine.runtime.console import (
    duration_text,
    failure_line,
    progress_line,
    progress_wanted,
    start_line,
    warmup,
)
from engine.runtime.heartbeat import next_beat
from tests.fakes.engine_process import REAL_CAPTURE, run_engine


def _config(**env: str) -> Config:
    return load_config(environ={f"ENGINE_{k}": v for k, v in env.items()})


# --- pure formatters --------------------------------------------------------------------


def test_warmup_default_strategy_needs_slow_plus_one_bars() -> None:
    # 20 closes define the first regime (not a crossing); the 21st can cross.
    text = warmup(Config().strategy)
    assert text == "first signal possible after 21 bars of 1 s (at least 21 s of trades)"


def test_warmup_minute_bars_and_trade_bars() -> None:
    minute = _config(STRATEGY_BAR_SECONDS="60", STRATEGY_FAST="2", STRATEGY_SLOW="3").strategy
    assert warmup(minute) == (
        "first signal possible after 4 bars of 1 min (at least 4 min of trades)"
    )
    trades = _config(STRATEGY_BAR_SECONDS="0").strategy
    assert warmup(trades) == "first signal possible after 21 trades (every trade is a bar)"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "0.5 s"), (21, "21 s"), (60, "1 min"), (1260, "21 min"), (5400, "1.5 h"),
     (172_800, "2 d")],
)  # fmt: skip
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_progress_line_totals_and_rate_since_previous_beat() -> None:
    previous = Counters(tick_count=1_000).snapshot()
    current = Counters(
        tick_count=1_196, signal_count=3, shadow_orders=2, paper_orders=1, trade_count=1,
        risk_vetoes=4, stale_vetoes=1, bp_drops_tick=7, bp_drops_persist=1,
    ).snapshot()  # fmt: skip
    line = progress_line(previous, current, 10.0, "ACTIVE")
    assert line == (
        "progress: 1,196 ticks (+196 in 10 s, 19.6/s) | 3 signals | 3 orders | 1 fills"
        " | 5 vetoes | 8 drops | ACTIVE"
    )


def test_progress_line_first_beat_and_malformed_shown_only_when_any() -> None:
    line = progress_line(None, Counters(tick_count=50).snapshot(), 2.5, "HALTED")
    assert line.startswith("progress: 50 ticks (+50 in 2.5 s, 20.0/s) | 0 signals")
    assert "malformed" not in line and line.endswith("| HALTED")
    bad = progress_line(None, Counters(parse_errors=2).snapshot(), 1.0, "ACTIVE")
    assert "| 2 malformed |" in bad


@given(
    ticks=st.integers(0, 10**12), before=st.integers(0, 10**12),
    elapsed=st.floats(min_value=0, max_value=1e6),
)  # fmt: skip
def test_progress_line_is_one_line_for_any_counts(ticks: int, before: int, elapsed: float) -> None:
    line = progress_line(
        Counters(tick_count=before).snapshot(), Counters(tick_count=ticks).snapshot(), elapsed, "A"
    )
    assert "\n" not in line and line.startswith(f"progress: {ticks:,} ticks")


class _Tty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize(
    ("setting", "tty", "wanted"),
    [(ProgressSetting.AUTO, True, True), (ProgressSetting.AUTO, False, False),
     (ProgressSetting.ALWAYS, False, True), (ProgressSetting.NEVER, True, False)],
)  # fmt: skip
def test_progress_wanted_on_a_terminal_or_when_asked(
    setting: ProgressSetting, tty: bool, wanted: bool
) -> None:
    assert progress_wanted(setting, _Tty(tty)) is wanted


def test_start_line_names_mode_source_symbols_database_strategy(tmp_path: Path) -> None:
    config = _config(ENGINE_MODE="paper", INGEST_SOURCE="websocket", INGEST_VENUE="coinbase",
                     INGEST_SYMBOLS="BTC-USD,ETH-USD")  # fmt: skip
    assert config.engine.mode is Mode.PAPER and config.ingest.source is Source.WEBSOCKET
    line = start_line(config, command="run", db_path=str(tmp_path / "e.db"))
    assert line.startswith("hybrid-engine run: PAPER mode (simulated fills")
    assert "source coinbase WebSocket (its public endpoint); symbols BTC-USD, ETH-USD" in line
    assert f"database {tmp_path / 'e.db'}" in line
    assert "strategy SMA 5/20 on 1 s bars, first signal possible after 21 bars" in line
    replay = start_line(Config(), command="replay", db_path="x.db", captures=["a.gz", "b.gz"],
                        speed=2.0)  # fmt: skip
    assert "source replay of a.gz and 1 more at 2x the recorded pace" in replay


def test_failure_line_one_bounded_line_with_code_and_name() -> None:
    line = failure_line(ExitCode.NETWORK, "binance feed: budget spent\nlast error: x" + "y" * 999)
    assert line.startswith("hybrid-engine: stopped, exit 10 (NETWORK): binance feed: budget spent")
    assert "\n" not in line and len(line) <= 400 and line.endswith("...")


# --- the real CLI -----------------------------------------------------------------------


def test_run_prints_the_start_line_first_and_no_progress_off_a_terminal(tmp_path: Path) -> None:
    env = {"ENGINE_INGEST_SYNTHETIC_MAX_TICKS": "40", "ENGINE_INGEST_SYNTHETIC_RATE_PER_S": "400",
           "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.02"}  # fmt: skip
    done = run_engine(["run", "--db", str(tmp_path / "e.db")], env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    first = done.stderr.splitlines()[0]
    assert first.startswith("hybrid-engine run: SHADOW mode")
    assert "synthetic random walk (400 trades/s, seed 1, 40 trades); symbols BTCUSDT" in first
    assert f"database {tmp_path / 'e.db'}" in first
    assert "first signal possible after 21 bars of 1 s" in first
    assert "progress:" not in done.stderr  # stderr is a pipe here: auto means off


def test_run_progress_always_prints_progress_lines(tmp_path: Path) -> None:
    env = {"ENGINE_INGEST_SYNTHETIC_MAX_TICKS": "200", "ENGINE_INGEST_SYNTHETIC_RATE_PER_S": "200",
           "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.1",
           "ENGINE_ENGINE_PROGRESS": "always"}  # fmt: skip
    done = run_engine(["run", "--db", str(tmp_path / "e.db")], env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    progress = [ln for ln in done.stderr.splitlines() if ln.startswith("progress: ")]
    assert progress, done.stderr
    assert all(" ticks (+" in ln and ln.endswith("| ACTIVE") for ln in progress)


def test_replay_prints_the_start_line_naming_the_capture(tmp_path: Path) -> None:
    done = run_engine(["replay", str(REAL_CAPTURE), "--db", str(tmp_path / "e.db")], timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    first = done.stderr.splitlines()[0]
    assert first.startswith("hybrid-engine replay: SHADOW mode")
    assert f"source replay of {REAL_CAPTURE} as fast as possible" in first


def test_replay_failing_inside_the_run_says_why_on_stderr(tmp_path: Path) -> None:
    # Recorder-shaped lines (they pass the sniffer) from no venue the engine knows:
    # refused inside the pipeline, and the terminal is told why, not left with silence.
    capture = tmp_path / "unknown-venue.txt"
    capture.write_text("".join(f'{1723161253937085768 + i} {{"foo":{i}}}\n' for i in range(150)))
    done = run_engine(["replay", str(capture), "--db", str(tmp_path / "e.db")], timeout=60)
    assert done.returncode == 12, done.stderr[-2000:]
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("hybrid-engine: stopped")]
    assert line.startswith("hybrid-engine: stopped, exit 12 (CONFIG): ")
    assert f"capture {capture}: no venue detected" in line


@pytest.mark.parametrize(
    ("due", "now", "expected"),
    [(10.0, 10.0, 11.0), (10.0, 10.5, 11.0), (10.0, 11.0, 12.0), (10.0, 13.7, 14.0),
     (10.0, 9.0, 11.0)],
)  # fmt: skip
def test_next_beat_is_the_next_grid_slot_after_now(due: float, now: float, expected: float) -> None:
    assert next_beat(due, 1.0, now) == expected


@given(
    due=st.floats(0, 1e9), late=st.floats(0, 1e6),
    interval=st.floats(min_value=0.01, max_value=3600),
)  # fmt: skip
def test_next_beat_is_after_now_and_on_the_grid(due: float, late: float, interval: float) -> None:
    now = due + late
    beat = next_beat(due, interval, now)
    assert beat > now
    slack = 1e-9 * max(1.0, now)  # float rounding of the subtraction below
    assert beat - interval <= now + slack or beat - interval <= due  # no slot skipped
