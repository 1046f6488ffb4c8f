"""The risk chain: each check alone, their order, and the drawdown guard."""

from __future__ import annotations

from decimal import Decimal

from engine.core.events import Side, TradingState, VetoReason
from engine.core.risk import (
    CHECKS,
    DrawdownGuard,
    Limits,
    Proposal,
    check_open_orders,
    check_stale,
    check_symbol_exposure,
    check_total_exposure,
    evaluate,
)
from engine.core.staleness import Lag

D = Decimal
LIMITS = Limits(max_exposure_usd=D(1000), max_symbol_exposure_usd=D(500), max_open_orders=2)
FRESH = Lag(raw_ns=0, baseline_ns=0, excess_ns=0, stale=False)


def proposal(**changes: object) -> Proposal:
    base: dict[str, object] = {
        "side": Side.BUY,
        "symbol": "BTCUSDT",
        "qty": D("0.001"),
        "price": D(60000),
        "mark": D(60000),
        "symbol_exposure": D(0),
        "total_exposure": D(0),
        "open_orders": 0,
        "trading_state": TradingState.ACTIVE,
        "lag": FRESH,
        "cause_id": "binance:BTCUSDT:1",
        "sizing": "test",
    }
    base.update(changes)
    return Proposal(**base)  # type: ignore[arg-type]


def test_evaluate_clean_buy_approved() -> None:
    assert evaluate(proposal(), LIMITS) is None


def test_symbol_cap_projected_beyond_limit_vetoed_with_numbers() -> None:
    denial = check_symbol_exposure(proposal(symbol_exposure=D(450)), LIMITS)
    assert denial is not None and denial.reason is VetoReason.RISK_CAP
    assert denial.detail == (
        "max_symbol_exposure_usd: BTCUSDT current 450, projected 510.000 > limit 500"
    )


def test_symbol_cap_projected_exactly_at_limit_approved() -> None:
    assert check_symbol_exposure(proposal(symbol_exposure=D(440)), LIMITS) is None


def test_total_cap_projected_beyond_limit_vetoed() -> None:
    denial = check_total_exposure(proposal(total_exposure=D(950)), LIMITS)
    assert denial is not None and denial.detail.startswith("max_exposure_usd: current 950")


def test_open_orders_at_limit_vetoed_even_for_sell() -> None:
    denial = check_open_orders(proposal(side=Side.SELL, open_orders=2), LIMITS)
    assert denial is not None and "projected 3 > limit 2" in denial.detail


def test_cap_vetoes_detail_text_is_exact() -> None:
    # The detail is persisted in vetoes (digested): the three caps share one wording.
    total = check_total_exposure(proposal(total_exposure=D(950)), LIMITS)
    assert total is not None and total.reason is VetoReason.RISK_CAP
    assert total.detail == "max_exposure_usd: current 950, projected 1010.000 > limit 1000"
    orders = check_open_orders(proposal(open_orders=2), LIMITS)
    assert orders is not None and orders.reason is VetoReason.RISK_CAP
    assert orders.detail == "max_open_orders: current 2, projected 3 > limit 2"


def test_sell_reducing_position_allowed_when_halted_and_over_caps() -> None:
    p = proposal(
        side=Side.SELL,
        trading_state=TradingState.HALTED,
        symbol_exposure=D(10_000),
        total_exposure=D(10_000),
    )
    assert evaluate(p, LIMITS) is None


def test_buy_when_halted_vetoed_halted() -> None:
    denial = evaluate(proposal(trading_state=TradingState.HALTED), LIMITS)
    assert denial is not None and denial.reason is VetoReason.HALTED


def test_sell_without_position_vetoed_no_position() -> None:
    denial = evaluate(proposal(side=Side.SELL, qty=D(0)), LIMITS)
    assert denial is not None and denial.reason is VetoReason.NO_POSITION


def test_stale_checked_first_before_any_other_reason() -> None:
    stale = Lag(raw_ns=9_000_000_000, baseline_ns=0, excess_ns=9_000_000_000, stale=True)
    denial = evaluate(
        proposal(lag=stale, trading_state=TradingState.HALTED, symbol_exposure=D(10_000)), LIMITS
    )
    assert denial is not None and denial.reason is VetoReason.STALE_DATA
    assert "lag 9000.000 ms beyond normal" in denial.detail
    assert CHECKS[0] is check_stale


def test_unknown_cause_tick_fails_closed_stale() -> None:
    denial = evaluate(proposal(lag=None), LIMITS)
    assert denial is not None and denial.reason is VetoReason.STALE_DATA


def test_drawdown_guard_off_never_records() -> None:
    guard = DrawdownGuard(None)
    assert guard.evaluate(D(-1_000_000), 1, "x") is None
    assert guard.state is TradingState.ACTIVE


def test_drawdown_guard_halts_once_and_stays_halted() -> None:
    guard = DrawdownGuard(D(10))
    first = guard.evaluate(D(0), 1, "t1")
    assert first is not None and first.reason == "first equity peak"
    peak = guard.evaluate(D(5), 2, "t2")
    assert peak is not None and peak.peak_equity == 5
    assert guard.evaluate(D(-5), 3, "t3") is None  # drawdown exactly 10: not beyond
    halt = guard.evaluate(D("-5.01"), 4, "t4")
    assert halt is not None and halt.trading_state is TradingState.HALTED
    assert halt.state_id == "risk:t4" and "drawdown 10.01" in halt.reason
    assert guard.evaluate(D(-20), 5, "t5") is None  # logged once
    assert guard.evaluate(D(4), 6, "t6") is None  # recovery does not resume
    assert guard.state is TradingState.HALTED


def test_drawdown_guard_restored_halt_same_limit_stays_halted() -> None:
    guard = DrawdownGuard(D(10))
    guard.evaluate(D(0), 1, "t1")
    halt = guard.evaluate(D(-11), 2, "t2")
    again = DrawdownGuard(D(10))
    again.restore(halt, D(0))
    assert again.state is TradingState.HALTED
    assert again.evaluate(D(0), 3, "t3") is None
    assert again.state is TradingState.HALTED


def test_drawdown_guard_restored_halt_new_limit_rejudged() -> None:
    guard = DrawdownGuard(D(10))
    guard.evaluate(D(0), 1, "t1")
    halt = guard.evaluate(D(-11), 2, "t2")
    raised = DrawdownGuard(D(50))
    raised.restore(halt, D(0))
    resumed = raised.evaluate(D(-11), 3, "t3")
    assert resumed is not None and resumed.trading_state is TradingState.ACTIVE
    assert "changed from 10 to 50" in resumed.reason
