"""Duplicate filter and gap detection: bounded memory, per (venue, symbol)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.dedup import Gap, TradeDedup


def test_dedup_repeated_trade_id_rejected() -> None:
    dedup = TradeDedup()
    assert dedup.admit("binance", "BTCUSDT", 10) == (True, None)
    assert dedup.admit("binance", "BTCUSDT", 10) == (False, None)


def test_dedup_same_id_other_symbol_or_venue_admitted() -> None:
    dedup = TradeDedup()
    assert dedup.admit("binance", "BTCUSDT", 10)[0]
    assert dedup.admit("binance", "ETHUSDT", 10)[0]
    assert dedup.admit("coinbase", "BTCUSDT", 10)[0]


def test_dedup_jump_in_ids_reports_gap_and_counts_per_symbol() -> None:
    dedup = TradeDedup()
    dedup.admit("binance", "BTCUSDT", 1)
    new, gap = dedup.admit("binance", "BTCUSDT", 5)
    assert new and gap == Gap("binance", "BTCUSDT", 2, 4)
    assert gap.missing == 3
    dedup.admit("binance", "ETHUSDT", 1)
    dedup.admit("binance", "ETHUSDT", 2)
    assert dedup.gaps_by_symbol() == {"binance:BTCUSDT": 1, "binance:ETHUSDT": 0}
    assert dedup.missing_by_symbol()["binance:BTCUSDT"] == 3


def test_dedup_late_id_inside_window_fills_gap_without_new_gap() -> None:
    dedup = TradeDedup()
    dedup.admit("binance", "BTCUSDT", 1)
    dedup.admit("binance", "BTCUSDT", 3)
    assert dedup.admit("binance", "BTCUSDT", 2) == (True, None)
    assert dedup.admit("binance", "BTCUSDT", 4) == (True, None)


def test_dedup_id_older_than_window_dropped_memory_bounded() -> None:
    dedup = TradeDedup(window=100)
    for trade_id in range(1, 1001):
        assert dedup.admit("binance", "BTCUSDT", trade_id)[0]
    assert dedup.remembered() == 100
    # forgotten ids cannot be proven new: dropped as replays
    assert dedup.admit("binance", "BTCUSDT", 5) == (False, None)
    assert dedup.admit("binance", "BTCUSDT", 950) == (False, None)
    assert dedup.admit("binance", "BTCUSDT", 1001) == (True, None)


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=400), st.integers(1, 50))
def test_dedup_never_admits_an_id_twice_and_stays_bounded(ids: list[int], window: int) -> None:
    dedup = TradeDedup(window=window)
    admitted = [i for i in ids if dedup.admit("v", "S", i)[0]]
    assert len(admitted) == len(set(admitted))
    assert dedup.remembered() <= window


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=200, unique=True))
def test_dedup_increasing_ids_gaps_sum_to_missing(raw: list[int]) -> None:
    ids = sorted(raw)
    dedup = TradeDedup()
    missing = sum(g.missing for i in ids if (g := dedup.admit("v", "S", i)[1]) is not None)
    assert missing == ids[-1] - ids[0] + 1 - len(ids)
