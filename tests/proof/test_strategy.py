"""sma_cross properties: the packaged ones, run exactly as the proof runs them.

The properties live in ``engine/proof/strategy.py`` (one copy): agreement with a
naive Fraction reference, byte-identical output from fresh instances, and
independence from chunking (``on_batch`` splits, ``on_tick``, mixed). Each runs
through ``engine.proof.properties`` with the proof's fixed examples and seed.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.core.events import NS_PER_S, Tick, tick_id
from engine.core.strategy import SmaCross
from engine.proof import strategy
from engine.proof.evidence import CheckStatus
from engine.proof.properties import PROPERTIES, run_property

STRATEGY = {p.name: p for p in PROPERTIES if p.name.startswith("strategy_")}


def assert_passes(name: str) -> None:
    """Run the registered property ``name`` with the proof's settings; PASS or its reason."""
    prop = STRATEGY[name]
    result = run_property(prop)
    assert result.status is CheckStatus.PASS, result.detail
    assert result.ran == prop.examples


def test_on_batch_random_stream_agrees_with_reference() -> None:
    assert_passes("strategy_agrees_with_reference")


def test_on_batch_same_ticks_fresh_instances_identical_bytes() -> None:
    assert_passes("strategy_fresh_instances_identical_bytes")


def test_on_batch_any_chunking_or_on_tick_same_output() -> None:
    assert_passes("strategy_any_chunking_same_output")


def test_on_tick_one_by_one_same_output_as_on_batch() -> None:
    assert_passes("strategy_on_tick_same_as_on_batch")


def test_every_registered_strategy_property_has_its_test_here() -> None:
    assert set(STRATEGY) == {
        "strategy_agrees_with_reference",
        "strategy_fresh_instances_identical_bytes",
        "strategy_any_chunking_same_output",
        "strategy_on_tick_same_as_on_batch",
    }


def ticks(prices: list[str]) -> list[Tick]:
    t0 = strategy.T0
    return [
        Tick(
            event_id=tick_id("binance", "AAA", n),
            venue="binance",
            symbol="AAA",
            trade_id=n,
            ts_event=t0 + n * NS_PER_S,
            ts_recv=t0 + n * NS_PER_S + 1,
            price=Decimal(p),
            qty=Decimal(1),
        )
        for n, p in enumerate(prices)
    ]


def test_reference_signals_on_a_crossing_like_the_strategy() -> None:
    stream = ticks(["3", "2", "1", "1", "2", "3", "4", "3", "2", "1"])
    expected = strategy.reference(stream, 1, 2, 0)
    assert len(expected) > len(stream)  # the reference does find crossings here
    assert SmaCross(1, 2, 0).on_batch(stream) == expected


def test_agreement_property_fails_loudly_on_a_wrong_strategy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The property can fail: a strategy that drops every signal is caught, with a reason."""
    monkeypatch.setattr(strategy.SmaCross, "on_batch", lambda self, batch: list(batch))
    result = run_property(STRATEGY["strategy_agrees_with_reference"])
    assert result.status is CheckStatus.FAIL
    assert "on_batch vs reference" in result.detail
    assert "\n" not in result.detail
