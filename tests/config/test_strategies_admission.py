"""Hypothesis over the strategy's two admission paths: the ``[strategy]`` table and its signals.

Whatever a configuration file holds, ``admit_strategy`` either refuses it with one
line naming a ``strategy.*`` key (exit 12) or admits a table whose strategy builds
and runs over real ticks raising nothing but its own bugs (exit 1 in the engine).
Whatever a strategy returns, the host either refuses it (``StrategyFault``) or
admits a signal that execution processes without raising.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.config.schema import Config
from engine.config.strategies import admit_strategy
from engine.core.events import Side, Signal, Tick
from engine.core.execution import Execution
from engine.core.hosted import StrategyFault, admit_signal
from engine.exits import ConfigError
from engine.proof.any_strategy import capture_ticks, fresh_strategy, packaged_capture

TICKS = capture_ticks([packaged_capture()], limit=400)

FIELDS = {
    "sma_cross": ["fast", "slow", "bar_seconds"],
    "donchian_breakout": ["lookback", "bar_seconds"],
    "tests.strategies.sized:Sized": ["notional", "every"],
    "tests.strategies.misbehaving:RaisesAfter": ["after"],
    "examples/strategies/momentum.py:Momentum": ["lookback", "threshold_bps"],
}
"""Each kind's parameters: tables mostly use them (plus a stray key now and then)."""
STRAY = st.sampled_from(["kind2", "Fast", "", "lookbak"])


SCALARS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["5", "0.5", "1E+400", "+3", " 7", "١٢", "NaN", "1_000", "2.50"]),
    st.booleans(),
    st.none(),
)
PLAUSIBLE = st.one_of(st.integers(0, 40), st.sampled_from(["2", "0.5", "10", "3"]))
VALUES = st.one_of(
    PLAUSIBLE, PLAUSIBLE, PLAUSIBLE,  # mostly values a strategy may admit, so many tables run
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=3), SCALARS, max_size=2),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_strategy_table_is_refused_naming_a_key_or_runs_without_raising(
    data: st.DataObject,
) -> None:
    kind = data.draw(st.sampled_from(sorted(FIELDS)))
    keys = st.one_of(st.sampled_from(FIELDS[kind]), st.sampled_from(FIELDS[kind]), STRAY)
    table: dict[str, Any] = data.draw(st.dictionaries(keys, VALUES, max_size=3))
    try:
        choice = admit_strategy({"kind": kind, **table})
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("strategy"), message
        assert "\n" not in message
        event("refused")
        return
    event("admitted")
    strategy = fresh_strategy(choice)
    try:
        strategy.on_batch(TICKS)
    except ZeroDivisionError:  # RaisesAfter's own, deliberate bug (drained, exit 1)
        assert kind.endswith("RaisesAfter")
    except StrategyFault as exc:  # a signal the host refused (Sized with notional 0): exit 1
        assert str(exc).startswith(f"{kind}: signal "), str(exc)
        event("refused while running")


@st.composite
def caused_signals(draw: st.DrawFn) -> tuple[Tick, Signal]:
    """A tick and a signal a strategy returned for it: mostly plausible, sometimes forged."""
    tick = draw(st.sampled_from(TICKS))
    forge = draw(st.integers(0, 6))
    price = draw(st.one_of(
        st.decimals(allow_nan=True, allow_infinity=True),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10**6), places=4),
    ))  # fmt: skip
    notional = draw(st.one_of(
        st.none(), st.decimals(allow_nan=True, allow_infinity=True),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10**4), places=2),
    ))  # fmt: skip
    signal = Signal(
        signal_id="sig:" + (tick.event_id if forge != 1 else "x"),
        symbol=tick.symbol if forge != 2 else "OTHER",
        side=draw(st.sampled_from(Side)),
        ts_event=tick.ts_event - draw(st.integers(-(10**9), 10**20)),
        ts_recv=tick.ts_recv if forge != 4 else tick.ts_recv + 1,
        price=price,
        cause_id=tick.event_id if forge != 3 else "y",
        notional=notional,
        reason=draw(st.one_of(st.just(""), st.text(max_size=250))),
    )
    return tick, signal


@settings(max_examples=500, deadline=None)
@given(drawn=caused_signals())
def test_a_signal_is_refused_or_execution_takes_it_without_raising(
    drawn: tuple[Tick, Signal],
) -> None:
    tick, signal = drawn
    try:
        admitted = admit_signal(signal, tick, "test")
    except StrategyFault as exc:
        assert str(exc).startswith("test: ")
        return
    assert admitted is signal
    execution = Execution(Config())
    execution.process([tick, admitted])
    execution.process([tick])


def test_an_admitted_table_keeps_its_values() -> None:
    choice = admit_strategy({"kind": "donchian_breakout", "lookback": "7"})
    assert fresh_strategy(choice).describe().startswith("Donchian breakout over 7 bars")


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_an_int_parameter_without_a_range_is_still_bounded(value: int) -> None:
    with pytest.raises(ConfigError, match=r"^strategy\.after: must be"):
        admit_strategy({"kind": "tests.strategies.misbehaving:RaisesAfter", "after": value})


@pytest.mark.parametrize("kind", ["x" * 5000 + ".py:C", "a.py:C\x00", "mod:C\n"])
def test_a_kind_too_long_or_holding_a_control_character_is_refused(kind: str) -> None:
    with pytest.raises(ConfigError, match=r"^strategy\.kind: "):
        admit_strategy({"kind": kind})


def test_a_string_parameter_holding_a_control_character_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^strategy\.tag: "):
        admit_strategy({"kind": "tests.strategies.tagged:Tagged", "tag": "a\x1b[2J"})
