"""Reconnect backoff: exact schedule under the mock clock, cap, reset, budget."""

from __future__ import annotations

import math
import random

import pytest
import trio

from engine.adapters.backoff import Backoff, BackoffPolicy, ReconnectBudget

POLICY = BackoffPolicy(initial_s=0.5, max_s=4.0, factor=2.0, seed=7, healthy_after_s=10.0)

# random.Random(7).random() draws, written out so the test does not re-derive them.
R7 = (
    0.32383276483316237,
    0.15084917392450192,
    0.6509344730398537,
    0.07243628666754276,
    0.5358820043066892,
    0.36568891691258554,
    0.057998924774706806,
)


def test_backoff_seed_draws_are_the_documented_ones() -> None:
    rng = random.Random(7)
    assert tuple(rng.random() for _ in R7) == R7


async def test_backoff_schedule_fixed_seed_grows_caps_exactly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = Backoff(POLICY)
    start = trio.current_time()
    attempts: list[float] = []
    for _ in range(7):
        await trio.sleep(backoff.next_delay())
        attempts.append(trio.current_time() - start)
    bases = (0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0)
    expected_delays = [b * (1 - 0.2 * r) for b, r in zip(bases, R7, strict=True)]
    expected_times = [sum(expected_delays[: i + 1]) for i in range(7)]
    assert attempts == pytest.approx(expected_times, abs=1e-9)
    delays = [b - a for a, b in zip([0.0, *attempts], attempts, strict=False)]
    assert delays == pytest.approx(
        [0.467617, 0.96983, 1.739626, 3.942051, 3.571294, 3.707449, 3.953601], abs=1e-6
    )
    # grows until the cap, never above it
    assert delays[0] < delays[1] < delays[2] < delays[3]
    assert all(d <= POLICY.max_s for d in delays)
    assert all(d >= POLICY.max_s * 0.8 for d in delays[3:])


async def test_backoff_healthy_connection_resets_to_initial(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = Backoff(POLICY)
    for _ in range(4):
        backoff.next_delay()
    assert backoff.step == 4
    healthy_since = trio.current_time()
    await trio.sleep(POLICY.healthy_after_s)
    assert backoff.connection_ended(healthy_since, trio.current_time()) is True
    # the next draw of the same generator, at the initial base again
    assert backoff.next_delay() == pytest.approx(0.5 * (1 - 0.2 * R7[4]))


async def test_backoff_short_lived_connection_keeps_growing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = Backoff(POLICY)
    backoff.next_delay()
    backoff.next_delay()
    healthy_since = trio.current_time()
    await trio.sleep(POLICY.healthy_after_s - 0.001)
    assert backoff.connection_ended(healthy_since, trio.current_time()) is False
    assert backoff.connection_ended(None, trio.current_time() + 100) is False
    assert backoff.next_delay() == pytest.approx(2.0 * (1 - 0.2 * R7[2]))


def test_backoff_same_seed_same_schedule_other_seed_differs() -> None:
    a, b, c = Backoff(POLICY), Backoff(POLICY), Backoff(BackoffPolicy(0.5, 4.0, 2.0, seed=8))
    sa = [a.next_delay() for _ in range(10)]
    assert sa == [b.next_delay() for _ in range(10)]
    assert sa != [c.next_delay() for _ in range(10)]


def test_backoff_base_delay_long_outage_stays_capped() -> None:
    backoff = Backoff(POLICY)
    assert backoff.base_delay(10_000) == 4.0
    assert backoff.base_delay(0) == 0.5


def test_budget_consecutive_failures_exhaust() -> None:
    budget = ReconnectBudget(max_failures=3, max_downtime_s=1000.0)
    budget.start(0.0)
    budget.failed()
    budget.failed()
    assert budget.exhausted(1.0) is None
    budget.failed()
    reason = budget.exhausted(2.0)
    assert reason is not None and "3 consecutive attempts without market data" in reason


def test_budget_market_data_resets_failures_and_downtime() -> None:
    budget = ReconnectBudget(max_failures=3, max_downtime_s=10.0)
    budget.start(0.0)
    budget.failed()
    budget.failed()
    budget.delivered(45.0)
    budget.failed()
    assert budget.failures == 1
    assert budget.downtime(50.0) == 5.0
    assert budget.exhausted(50.0) is None
    assert budget.exhausted(55.0) is not None


def test_budget_downtime_counts_from_the_last_tick_not_from_a_connection() -> None:
    # connections that open, ack and drop never stop the clock: only a tick does
    budget = ReconnectBudget(max_failures=100, max_downtime_s=10.0)
    budget.start(0.0)
    budget.failed()
    assert budget.exhausted(9.9) is None
    reason = budget.exhausted(10.0)
    assert reason is not None and "no market data for 10.0s" in reason
    assert "max_downtime_s" in reason


def test_budget_delivered_never_moves_the_clock_back() -> None:
    budget = ReconnectBudget(max_failures=3, max_downtime_s=10.0)
    budget.start(0.0)
    budget.delivered(8.0)
    budget.delivered(5.0)  # a session that ended reports its (older) last tick
    assert budget.downtime(9.0) == 1.0


def test_budget_words_the_delivery_and_key_it_is_given() -> None:
    # the user stream's link: delivered = a confirmed subscription, no downtime limit
    budget = ReconnectBudget(
        max_failures=2, max_downtime_s=math.inf,
        delivery="a confirmed subscription", failures_key="max_failures",
    )  # fmt: skip
    budget.start(0.0)
    budget.failed()
    budget.failed()
    assert budget.exhausted(1e9) == (
        "2 consecutive attempts without a confirmed subscription (max_failures)"
    )
