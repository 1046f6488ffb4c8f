"""Venue reports -> order transitions and fills (the pure half of the LIVE adapter)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.adapters.binance_spot.lifecycle import (
    InconsistentReport,
    LiveBook,
    TradeInfo,
    VenueReport,
    fill_amounts,
    report_from_execution,
    split_symbol,
)
from engine.adapters.binance_spot.signing import client_order_id
from engine.adapters.binance_spot.wire import VenueStatus, execution_report_decoder
from engine.core.booking import trade_id_of
from engine.core.events import Fill, Order, OrderEvent, OrderState, OrderType, Side
from engine.core.sizing import conserves

OID = "ord:sig:binance:BTCUSDT:7"
CID = client_order_id(OID)
QTY = Decimal("0.002")
PX = Decimal("50000.00")


def order(side: Side = Side.BUY) -> Order:
    return Order(
        order_id=OID, signal_id="sig:binance:BTCUSDT:7", mode="live", symbol="BTCUSDT",
        side=side, order_type=OrderType.MARKET, qty=QTY, price=PX, ts_event=100,
    )  # fmt: skip


def trade(tid: int, qty: str, commission: str = "0.05", asset: str | None = "USDT") -> TradeInfo:
    return TradeInfo(tid, Decimal(qty), PX, Decimal(commission), asset, 1_000 + tid)


def report(status: VenueStatus, cum: str, *trades: TradeInfo, reason: str = "") -> VenueReport:
    return VenueReport(CID, status, 2_000, Decimal(cum), reason=reason, trades=trades)


@pytest.fixture
def book() -> LiveBook:
    b = LiveBook()
    records = b.add(order(), "live: test")
    assert [type(r) for r in records] == [Order, OrderEvent]
    return b


def states(records: list[object]) -> list[str]:
    return [str(r.state) for r in records if isinstance(r, OrderEvent)]


def fills(records: list[object]) -> list[Fill]:
    return [r for r in records if isinstance(r, Fill)]


def test_book_add_twice_tracks_once(book: LiveBook) -> None:
    assert book.add(order(), "again") == []


def test_report_new_accepts(book: LiveBook) -> None:
    applied = book.apply(report(VenueStatus.NEW, "0"))
    assert states(applied.records) == ["ACCEPTED"]
    assert not applied.needs_trades


def test_report_full_fill_accepts_fills_and_conserves(book: LiveBook) -> None:
    applied = book.apply(report(VenueStatus.FILLED, "0.002", trade(1, "0.002", "0.1")))
    assert states(applied.records) == ["ACCEPTED", "FILLED"]
    (fill,) = fills(applied.records)
    assert fill.fill_id == f"fill:{OID}:T1"
    assert fill.fee == Decimal("0.1")
    assert fill.position_delta == QTY
    assert conserves(fill.cash_delta, fill.position_delta, fill.price, fill.fee)
    assert book.open_order_ids() == []


def test_report_partial_then_rest_fills(book: LiveBook) -> None:
    first = book.apply(report(VenueStatus.PARTIALLY_FILLED, "0.001", trade(1, "0.001")))
    assert states(first.records) == ["ACCEPTED", "PARTIALLY_FILLED"]
    second = book.apply(report(VenueStatus.FILLED, "0.002", trade(2, "0.001")))
    assert states(second.records) == ["FILLED"]
    assert book.get(OID).filled_qty == QTY


def test_report_duplicate_trade_books_once(book: LiveBook) -> None:
    book.apply(report(VenueStatus.PARTIALLY_FILLED, "0.001", trade(1, "0.001")))
    again = book.apply(report(VenueStatus.PARTIALLY_FILLED, "0.001", trade(1, "0.001")))
    assert again.records == []
    assert book.get(OID).filled_qty == Decimal("0.001")


def test_report_after_terminal_ignored(book: LiveBook) -> None:
    book.apply(report(VenueStatus.FILLED, "0.002", trade(1, "0.002")))
    assert book.apply(report(VenueStatus.CANCELED, "0.002")).records == []


def test_report_filled_without_trades_asks_for_them(book: LiveBook) -> None:
    applied = book.apply(report(VenueStatus.FILLED, "0.002"))
    assert states(applied.records) == ["ACCEPTED"]
    assert applied.needs_trades


def test_cancel_after_unbooked_partial_waits_for_trades(book: LiveBook) -> None:
    applied = book.apply(report(VenueStatus.CANCELED, "0.001"))
    assert applied.needs_trades
    assert book.get(OID).state is OrderState.SUBMITTED
    done = book.apply(report(VenueStatus.CANCELED, "0.001", trade(1, "0.001")))
    assert states(done.records) == ["ACCEPTED", "PARTIALLY_FILLED", "CANCELED"]
    event = [r for r in done.records if isinstance(r, OrderEvent)][-1]
    assert event.filled_qty == Decimal("0.001")
    assert event.leaves_qty == 0


def test_report_rejected_carries_reason(book: LiveBook) -> None:
    applied = book.apply(report(VenueStatus.REJECTED, "0", reason="INSUFFICIENT_BALANCE"))
    assert states(applied.records) == ["REJECTED"]
    assert "INSUFFICIENT_BALANCE" in applied.records[0].reason  # type: ignore[union-attr]


def test_book_reject_records_venue_code_and_message(book: LiveBook) -> None:
    (event,) = book.reject(OID, 5, -2010, "Account has insufficient balance")
    assert event.state is OrderState.REJECTED  # type: ignore[union-attr]
    assert event.reason == "venue -2010: Account has insufficient balance"  # type: ignore[union-attr]
    assert book.reject(OID, 6, -1, "again") == []


def test_book_give_up_denies_only_unplaced(book: LiveBook) -> None:
    (event,) = book.give_up(OID, 5, "not placed")
    assert event.state is OrderState.DENIED  # type: ignore[union-attr]


def test_report_overfill_raises(book: LiveBook) -> None:
    with pytest.raises(InconsistentReport):
        book.apply(report(VenueStatus.FILLED, "0.003", trade(1, "0.003")))


def test_report_unknown_client_id_flagged(book: LiveBook) -> None:
    applied = book.apply(VenueReport("someone-else", VenueStatus.NEW, 1, Decimal(0)))
    assert applied.unknown and applied.records == []


def test_restore_remembers_booked_trades() -> None:
    first = LiveBook()
    first.add(order(), "x")
    first.apply(report(VenueStatus.PARTIALLY_FILLED, "0.001", trade(1, "0.001")))
    working = first.get(OID)
    second = LiveBook()
    second.restore(working, [f"fill:{OID}:T1"])
    again = second.apply(report(VenueStatus.FILLED, "0.002", trade(1, "0.001"), trade(2, "0.001")))
    assert states(again.records) == ["FILLED"]
    assert len(fills(again.records)) == 1


@pytest.mark.parametrize(
    ("side", "asset", "commission"),
    [
        (Side.BUY, "USDT", "0.1"),
        (Side.SELL, "USDT", "0.1"),
        (Side.BUY, "BTC", "0.000002"),
        (Side.SELL, "BTC", "0.000002"),
        (Side.BUY, "BNB", "0.0001"),
        (Side.BUY, None, "0"),
    ],
)
def test_fill_amounts_conserve_for_every_commission_asset(
    side: Side, asset: str | None, commission: str
) -> None:
    t = trade(1, "0.002", commission, asset)
    position_delta, cash_delta, fee, unpriced = fill_amounts(side, t, "BTC", "USDT")
    assert conserves(cash_delta, position_delta, t.price, fee)
    assert unpriced == (asset == "BNB")
    if asset == "BTC":
        assert fee == Decimal("0.000002") * PX
        assert abs(position_delta) == (
            QTY - Decimal(commission) if side is Side.BUY else QTY + Decimal(commission)
        )


def test_split_symbol() -> None:
    assert split_symbol("BTCUSDT") == ("BTC", "USDT")
    assert split_symbol("ETHBTC") == ("ETH", "BTC")
    assert split_symbol("BTCFDUSD") == ("BTC", "FDUSD")
    with pytest.raises(ValueError):
        split_symbol("USDT")


def test_trade_id_of() -> None:
    assert trade_id_of(f"fill:{OID}:T42") == 42
    assert trade_id_of(f"fill:{OID}:0") is None


def test_execution_report_cancel_uses_original_client_id() -> None:
    raw = (
        b'{"e":"executionReport","E":1,"s":"BTCUSDT","c":"cancel-1","S":"BUY","o":"LIMIT",'
        b'"q":"0.002","p":"50000","x":"CANCELED","X":"CANCELED","r":"NONE","i":5,"l":"0",'
        b'"z":"0","L":"0","n":"0","N":null,"T":3,"t":-1,"C":"' + CID.encode() + b'"}'
    )
    rep = report_from_execution(execution_report_decoder.decode(raw))
    assert rep.client_id == CID
    assert rep.trades == ()
    assert rep.ts_event == 3_000_000
