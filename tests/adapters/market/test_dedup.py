"""Duplicate filter and gap detection: bounded memory, per (venue, symbol)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.market.dedup import MAX_RETIRED_REGIONS, Gap, Jump, TradeDedup


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


def test_dedup_in_order_stream_remembers_nothing() -> None:
    dedup = TradeDedup(window=100)
    for trade_id in range(1, 100_001):
        assert dedup.admit("binance", "BTCUSDT", trade_id) == (True, None)
    assert dedup.remembered() == 0
    assert dedup.admit("binance", "BTCUSDT", 99_990) == (False, None)


def test_dedup_gaps_past_window_remember_only_window_late_ids_beyond_dropped() -> None:
    dedup = TradeDedup(window=100)
    dedup.admit("binance", "BTCUSDT", 1)
    new, gap = dedup.admit("binance", "BTCUSDT", 90)
    assert new and gap is not None and gap.missing == 88
    new, gap = dedup.admit("binance", "BTCUSDT", 180)
    assert new and gap is not None and gap.missing == 89
    assert dedup.remembered() == 100
    assert dedup.admit("binance", "BTCUSDT", 150) == (True, None)  # late, within the window
    assert dedup.admit("binance", "BTCUSDT", 150) == (False, None)
    assert dedup.admit("binance", "BTCUSDT", 85) == (True, None)  # still remembered
    assert dedup.admit("binance", "BTCUSDT", 50)[0] is False  # forgotten: not provably new
    assert dedup.admit("binance", "BTCUSDT", 180) == (False, None)


def test_dedup_jump_beyond_window_refused_state_unchanged() -> None:
    dedup = TradeDedup(window=100)
    dedup.admit("binance", "BTCUSDT", 1)
    assert dedup.admit("binance", "BTCUSDT", 1000) == (
        False, Jump("binance", "BTCUSDT", 1000, 1),
    )  # fmt: skip
    assert dedup.admit("binance", "BTCUSDT", 2) == (True, None)  # the real stream goes on
    assert dedup.remembered() == 0


def test_dedup_huge_id_never_silences_the_symbol() -> None:
    dedup = TradeDedup()
    admitted = [dedup.admit("binance", "BTCUSDT", t)[0] for t in range(100, 200)]
    assert dedup.admit("binance", "BTCUSDT", 2**63 - 1)[0] is False
    admitted += [dedup.admit("binance", "BTCUSDT", t)[0] for t in range(200, 10_000)]
    assert all(admitted)


def test_dedup_bogus_first_id_reanchors_on_third_consistent_id() -> None:
    dedup = TradeDedup(window=100)
    assert dedup.admit("binance", "BTCUSDT", 2**63 - 1) == (True, None)  # nothing to judge by
    assert dedup.admit("binance", "BTCUSDT", 500)[0] is False
    assert dedup.admit("binance", "BTCUSDT", 501)[0] is False
    new, note = dedup.admit("binance", "BTCUSDT", 503)
    assert new and note == Jump("binance", "BTCUSDT", 503, 2**63 - 1)
    assert [dedup.admit("binance", "BTCUSDT", t)[0] for t in range(504, 600)] == [True] * 96


def test_dedup_inconsistent_out_of_window_ids_never_reanchor() -> None:
    dedup = TradeDedup(window=100)
    dedup.admit("binance", "BTCUSDT", 1)
    for bogus in (10_000, 50_000, 20_000, 90_000, 5_000_000):
        assert dedup.admit("binance", "BTCUSDT", bogus)[0] is False
    assert dedup.admit("binance", "BTCUSDT", 2) == (True, None)


def test_dedup_reanchored_away_and_back_never_admits_an_id_twice() -> None:
    dedup = TradeDedup(window=1)
    first = [t for t in (0, 1, 2, 3) if dedup.admit("v", "S", t)[0]]
    second = [t for t in (10, 11, 12, 13) if dedup.admit("v", "S", t)[0]]
    back = [t for t in (0, 1, 2, 3, 4, 5, 6, 7) if dedup.admit("v", "S", t)[0]]
    assert first == [0, 1, 2, 3] and second == [12, 13]
    assert back == [6, 7]  # 0-3 were admitted before; 4, 5 confirm the move; 6 re-anchors


def test_dedup_many_gaps_memory_stays_bounded() -> None:
    dedup = TradeDedup(window=50)
    for trade_id in range(0, 10_000, 3):  # two missing ids after every trade
        dedup.admit("binance", "BTCUSDT", trade_id)
    assert dedup.remembered() <= 50
    assert dedup.gaps_by_symbol() == {"binance:BTCUSDT": 3333}


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=400), st.integers(1, 50))
def test_dedup_never_admits_an_id_twice_and_stays_bounded(ids: list[int], window: int) -> None:
    dedup = TradeDedup(window=window)
    admitted = [i for i in ids if dedup.admit("v", "S", i)[0]]
    assert len(admitted) == len(set(admitted))
    assert dedup.remembered() <= window
    assert dedup.retired_regions() <= MAX_RETIRED_REGIONS


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=200, unique=True),
    st.lists(st.integers(min_value=0, max_value=199), max_size=50),
)
def test_dedup_increasing_ids_with_resends_admits_each_once_gaps_sum_to_missing(
    raw: list[int], resend_at: list[int]
) -> None:
    ids = sorted(raw)
    stream: list[int] = []
    for i, trade_id in enumerate(ids):
        stream.append(trade_id)
        if i in resend_at:  # a reconnect resends the last few trades
            stream.extend(ids[max(0, i - 3) : i + 1])
    dedup = TradeDedup()
    admitted, missing = [], 0
    for trade_id in stream:
        new, gap = dedup.admit("v", "S", trade_id)
        if new:
            admitted.append(trade_id)
        if gap is not None:
            missing += gap.missing
    assert admitted == ids
    assert missing == ids[-1] - ids[0] + 1 - len(ids)
