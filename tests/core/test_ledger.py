"""Ledger: everything from fills, exact conservation, average-cost PnL that always adds up."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.events import Fill, Side
from engine.core.ledger import ConservationError, Ledger, ledger_from_fills
from engine.core.sizing import cash_delta_for, fee_for, position_delta_for

D = Decimal


def fill(n: int, side: Side, qty: str, price: str, fee_bps: str = "10") -> Fill:
    q, p = D(qty), D(price)
    fee = fee_for(q, p, D(fee_bps))
    delta = position_delta_for(side, q)
    return Fill(
        fill_id=f"fill:o:{n}",
        order_id="o",
        symbol="BTCUSDT",
        side=side,
        qty=q,
        price=p,
        fee=fee,
        cash_delta=cash_delta_for(delta, p, fee),
        position_delta=delta,
        ts_event=n,
    )


def test_ledger_buy_then_partial_sells_realised_plus_unrealised_minus_fees_is_equity() -> None:
    ledger = ledger_from_fills(
        [
            fill(0, Side.BUY, "3", "100"),
            fill(1, Side.SELL, "1", "110"),
            fill(2, Side.SELL, "1", "90"),
        ]
    )
    marks = {"BTCUSDT": D("95")}
    assert ledger.position("BTCUSDT") == 1
    assert ledger.realised == D(10) - D(10)
    assert ledger.unrealised(marks) == D(-5)
    assert ledger.fees == D("0.3") + D("0.11") + D("0.09")
    assert ledger.cash == D(-300) + D(110) + D(90) - ledger.fees
    assert ledger.equity(marks) == ledger.realised + ledger.unrealised(marks) - ledger.fees


def test_ledger_non_conserving_fill_raises_and_books_nothing() -> None:
    ledger = Ledger()
    bad = fill(0, Side.BUY, "1", "100")
    bad = Fill(**{**{f: getattr(bad, f) for f in bad.__struct_fields__}, "fee": D("0.2")})
    with pytest.raises(ConservationError):
        ledger.apply(bad)
    assert ledger == Ledger()


def test_ledger_position_closed_resets_basis_and_realises_everything() -> None:
    ledger = ledger_from_fills([fill(0, Side.BUY, "0.3", "100"), fill(1, Side.SELL, "0.3", "101")])
    assert ledger.books["BTCUSDT"].basis == 0
    assert ledger.realised == D("0.3")
    assert ledger.equity({}) == ledger.cash == ledger.realised - ledger.fees


qtys = st.decimals(min_value=D("0.001"), max_value=D("5"), places=3)
prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), qtys, prices), min_size=1, max_size=30), prices)
def test_ledger_any_long_only_sequence_identities_hold_exactly(
    steps: list[tuple[bool, Decimal, Decimal]], mark: Decimal
) -> None:
    fills = []
    position = D(0)
    for n, (buy, qty, price) in enumerate(steps):
        if buy or position == 0:
            fills.append(fill(n, Side.BUY, str(qty), str(price)))
            position += qty
        else:
            sold = min(qty, position)
            fills.append(fill(n, Side.SELL, str(sold), str(price)))
            position -= sold
    ledger = ledger_from_fills(fills)
    marks = {"BTCUSDT": mark}
    assert ledger.position("BTCUSDT") == position == sum(f.position_delta for f in fills)
    assert ledger.cash == sum(f.cash_delta for f in fills)
    assert ledger.fees == sum(f.fee for f in fills)
    with decimal.localcontext(prec=100):  # the test's own sums must not round either
        for f in fills:
            assert f.cash_delta + f.position_delta * f.price + f.fee == 0
        assert ledger.equity(marks) == ledger.realised + ledger.unrealised(marks) - ledger.fees
