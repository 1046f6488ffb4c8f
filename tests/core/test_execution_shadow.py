"""SHADOW execution: sizing, the immediate simulated fill, vetoes, idempotency."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from engine.config.schema import Config, ExecutionSection, RiskSection
from engine.core.events import (
    Fill,
    Order,
    OrderEvent,
    OrderState,
    Side,
    Veto,
    VetoReason,
)
from engine.core.execution import Execution
from tests.fakes.events import signal, tick


def shadow_config(**execution: object) -> Config:
    return msgspec.structs.replace(
        Config(), execution=msgspec.convert(execution, ExecutionSection, strict=False)
    )


def test_buy_signal_shadow_fills_at_slipped_price_with_qty_rounded_down() -> None:
    ex = Execution(shadow_config(order_notional_usd="100", slippage_bps="1", fee_bps="10"))
    t = tick(1, "61737.63")
    records = ex.process([t, signal(t, Side.BUY)])
    order, submitted, accepted, filled, fill = records
    assert isinstance(order, Order) and isinstance(fill, Fill)
    price = Decimal("61737.63") * Decimal("1.0001")
    assert order.price == price == fill.price
    # 100 / 61743.8037... = 0.0016196..; rounded DOWN to 0.00001
    assert order.qty == Decimal("0.00161") == fill.qty
    assert fill.fee == fill.qty * price * Decimal("0.001")
    assert fill.cash_delta + fill.position_delta * fill.price + fill.fee == 0
    assert order.order_id == "ord:sig:binance:BTCUSDT:1"
    assert fill.fill_id == "fill:ord:sig:binance:BTCUSDT:1:0"
    assert [e.state for e in (submitted, accepted, filled) if isinstance(e, OrderEvent)] == [
        OrderState.SUBMITTED,
        OrderState.ACCEPTED,
        OrderState.FILLED,
    ]
    assert isinstance(filled, OrderEvent)
    assert (filled.seq, filled.filled_qty, filled.leaves_qty) == (2, Decimal("0.00161"), 0)
    assert ex.ledger.position("BTCUSDT") == Decimal("0.00161")


def test_qty_rounding_exact_quotient_on_step_boundary_keeps_full_step() -> None:
    # 100 / (40 * 0.00001) is exactly 250000 steps: a rounded quotient would not matter here,
    # but truncation must not lose the last step either.
    ex = Execution(shadow_config(slippage_bps="0", qty_step="0.00001"))
    t = tick(1, "40")
    records = ex.process([t, signal(t, Side.BUY)])
    assert isinstance(records[0], Order)
    assert records[0].qty == Decimal("2.5")


def test_sell_signal_with_position_closes_whole_position_at_lower_price() -> None:
    ex = Execution(shadow_config(slippage_bps="2"))
    t1, t2 = tick(1, "60000"), tick(2, "61000")
    ex.process([t1, signal(t1, Side.BUY)])
    records = ex.process([t2, signal(t2, Side.SELL)])
    fill = records[-1]
    assert isinstance(fill, Fill)
    assert fill.side is Side.SELL
    assert fill.position_delta == -Decimal("0.00166")
    assert fill.price == Decimal("61000") * Decimal("0.9998")
    assert fill.cash_delta + fill.position_delta * fill.price + fill.fee == 0
    assert ex.ledger.position("BTCUSDT") == 0


def test_sell_signal_without_position_vetoed_no_position() -> None:
    ex = Execution(shadow_config())
    t = tick(1, "60000")
    [veto] = ex.process([t, signal(t, Side.SELL)])
    assert isinstance(veto, Veto)
    assert veto.reason is VetoReason.NO_POSITION
    assert veto.veto_id == "veto:sig:binance:BTCUSDT:1"
    assert veto.ts_event == t.ts_event


def test_buy_too_small_for_one_step_vetoed_zero_qty() -> None:
    ex = Execution(shadow_config(order_notional_usd="0.1", qty_step="0.001"))
    t = tick(1, "60000")
    [veto] = ex.process([t, signal(t, Side.BUY)])
    assert isinstance(veto, Veto)
    assert veto.reason is VetoReason.ZERO_QTY
    assert "qty_step 0.001" in veto.detail


def test_duplicate_signal_creates_no_second_order() -> None:
    ex = Execution(shadow_config())
    t = tick(1, "60000")
    first = ex.process([t, signal(t, Side.BUY)])
    again = ex.process([t, signal(t, Side.BUY)])
    assert first and again == []
    assert ex.ledger.position("BTCUSDT") == Decimal("0.00166")


def test_buy_beyond_symbol_cap_vetoed_risk_cap_with_numbers() -> None:
    config = msgspec.structs.replace(
        shadow_config(order_notional_usd="100"),
        risk=RiskSection(max_symbol_exposure_usd=Decimal("150"), max_exposure_usd=Decimal("1000")),
    )
    ex = Execution(config)
    t1, t2 = tick(1, "60000"), tick(2, "60000")
    ex.process([t1, signal(t1, Side.BUY)])
    [veto] = ex.process([t2, signal(t2, Side.BUY)])
    assert isinstance(veto, Veto)
    assert veto.reason is VetoReason.RISK_CAP
    assert veto.detail.startswith("max_symbol_exposure_usd")
    assert "current 99.6" in veto.detail and "limit 150" in veto.detail


def test_signal_from_stale_tick_vetoed_stale_data_with_lag() -> None:
    ex = Execution(shadow_config())
    ticks = [tick(n, "60000") for n in range(1, 50)]
    late = tick(50, "60000", lag_ms=6000)
    [veto] = ex.process([*ticks, late, signal(late, Side.BUY)])
    assert isinstance(veto, Veto)
    assert veto.reason is VetoReason.STALE_DATA
    assert "lag 6000.000 ms" in veto.detail
