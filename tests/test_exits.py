"""The exit-code mapping: one pure function, fixed precedence, nesting does not matter."""

from __future__ import annotations

import itertools

import pytest
import trio

from engine.exits import (
    PRECEDENCE,
    ConfigError,
    EngineError,
    ExitCode,
    NetworkBudgetExhausted,
    Overload,
    ParseRateExceeded,
    exit_code_for,
)


def test_exit_code_for_none_is_complete() -> None:
    assert exit_code_for(None) is ExitCode.COMPLETE


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConfigError("x"), ExitCode.CONFIG),
        (NetworkBudgetExhausted("x"), ExitCode.NETWORK),
        (ParseRateExceeded("x"), ExitCode.PARSE),
        (Overload("x"), ExitCode.OVERLOAD),
        (RuntimeError("bug"), ExitCode.CRASH),
        (EngineError("generic"), ExitCode.CRASH),
        (KeyError("k"), ExitCode.CRASH),
    ],
)
def test_exit_code_for_single_exception_maps_its_code(exc: BaseException, code: ExitCode) -> None:
    assert exit_code_for(exc) is code


def test_exit_code_values_are_stable() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "COMPLETE": 0,
        "CRASH": 1,
        "NETWORK": 10,
        "PARSE": 11,
        "CONFIG": 12,
        "OVERLOAD": 13,
    }


def test_exit_code_for_nested_group_picks_highest_precedence() -> None:
    group = ExceptionGroup(
        "outer",
        [
            NetworkBudgetExhausted("net"),
            ExceptionGroup(
                "inner", [ParseRateExceeded("parse"), ExceptionGroup("deep", [Overload("o")])]
            ),
        ],
    )
    assert exit_code_for(group) is ExitCode.OVERLOAD


def test_exit_code_for_unknown_exception_beats_explained_restartable_failures() -> None:
    group = ExceptionGroup("g", [Overload("o"), ExceptionGroup("i", [ValueError("bug")])])
    assert exit_code_for(group) is ExitCode.CRASH


def test_exit_code_for_config_error_wins_over_everything() -> None:
    group = ExceptionGroup("g", [ValueError("bug"), ExceptionGroup("i", [ConfigError("c")])])
    assert exit_code_for(group) is ExitCode.CONFIG


@pytest.mark.parametrize(
    "order",
    list(itertools.permutations([NetworkBudgetExhausted, ParseRateExceeded, Overload])),
)
def test_exit_code_for_group_is_independent_of_order(order: tuple[type[EngineError], ...]) -> None:
    group = ExceptionGroup("g", [cls("x") for cls in order])
    assert exit_code_for(group) is ExitCode.OVERLOAD


def test_precedence_lists_every_failure_code_once() -> None:
    assert sorted(PRECEDENCE) == sorted(c for c in ExitCode if c is not ExitCode.COMPLETE)


async def test_exit_code_for_real_nursery_group_maps_like_a_built_one() -> None:
    async def fail(exc: Exception) -> None:
        # No checkpoint before raising: both tasks fail before either can be cancelled.
        raise exc

    with pytest.raises(ExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail, NetworkBudgetExhausted("gone"))
            nursery.start_soon(fail, ParseRateExceeded("garbage"))
    assert exit_code_for(info.value) is ExitCode.PARSE
