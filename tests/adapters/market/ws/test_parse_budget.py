"""Parse-error budget: a sliding minute; above the rate -> ParseRateExceeded (exit 11)."""

from __future__ import annotations

import pytest
import trio

from engine.adapters.market.ws.parse_budget import ParseBudget
from engine.exits import ExitCode, ParseRateExceeded, exit_code_for


def test_parse_budget_at_limit_tolerated_above_raises() -> None:
    budget = ParseBudget(3)
    for t in (0.0, 1.0, 2.0):
        budget.record(t)
    with pytest.raises(ParseRateExceeded) as info:
        budget.record(3.0, "sample")
    assert exit_code_for(info.value) is ExitCode.PARSE
    assert "max_parse_errors_per_min=3" in str(info.value)


async def test_parse_budget_errors_spread_beyond_a_minute_tolerated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ParseBudget(3)
    for _ in range(20):
        budget.record(trio.current_time())
        await trio.sleep(20.0)
    assert budget.in_window(trio.current_time()) == 2


def test_parse_budget_zero_means_no_tolerance() -> None:
    with pytest.raises(ParseRateExceeded):
        ParseBudget(0).record(0.0)
