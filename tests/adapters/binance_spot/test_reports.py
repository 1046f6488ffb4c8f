"""Venue reports -> order transitions and fills: the core's one LIVE book, fed the way the
Binance adapter feeds it (its wire -> report half, ``binance_spot.reports``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

import pytest

from engine.adapters.binance_spot.execution import BinanceExecution
from engine.adapters.binance_spot.reports import (
    STATES,
    fee_asset,
    report_from_execution,
    split_symbol,
    status_reason,
)
from engine.adapters.binance_spot.signing import client_order_id
from engine.adapters.binance_spot.wire import VenueStatus, execution_report_decoder
from engine.core.booking import OrderBook, trade_id_of
from engine.core.events import Fill, Order, OrderEvent, OrderState, OrderType, Side
from engine.core.live_orders import (
    Applied,
    InconsistentReport,
    LiveMode,
    TradeInfo,
    VenueReport,
    VenueState,
    fill_amounts,
)
from engine.core.orders import WorkingOrder
from engine.core.sizing import conserves
from tests.fakes.live_support import live_book, place

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
    return TradeInfo(
        tid, Decimal(qty), PX, Decimal(commission), fee_asset("BTCUSDT", asset), 1_000 + tid
    )


def report(status: VenueStatus, cum: str, *trades: TradeInfo, reason: str = "") -> VenueReport:
    """What the adapter makes of a Binance answer with ``status``."""
    return VenueReport(
        OID, STATES[status], 2_000, Decimal(cum), reason=status_reason(status, reason),
        trades=trades,
    )  # fmt: skip


@dataclass
class Book:
    orders: OrderBook
    live: LiveMode

    def apply(self, rep: VenueReport) -> Applied:
        return self.live.apply_report(rep)

    def held(self) -> Decimal:
        """The filled quantity of the order, open or closed (the ledger holds every fill)."""
        return self.orders.ledger.position("BTCUSDT")


@pytest.fixture
def book() -> Book:
    orders = OrderBook()
    b = Book(orders, live_book(orders))
    records = place(b.live, order())
    assert [type(r) for r in records] == [Order, OrderEvent]
    return b


def states(records: list[object]) -> list[str]:
    return [str(r.state) for r in records if isinstance(r, OrderEvent)]


def fills(records: list[object]) -> list[Fill]:
    return [r for r in records if isinstance(r, Fill)]


def test_adapter_tracking_twice_maps_once(book: Book) -> None:
    live = BinanceExecution(rest=None, credentials=None, book=book.live)  # type: ignore[arg-type]
    live.track(order())
    live.track(order())
    assert live.open_order_ids() == [OID]


def test_report_new_accepts(book: Book) -> None:
    applied = book.apply(report(VenueStatus.NEW, "0"))
    assert states(applied.records) == ["ACCEPTED"]
    assert not applied.needs_trades


def test_report_full_fill_accepts_fills_and_conserves(book: Book) -> None:
    applied = book.apply(report(VenueStatus.FILLED, "0.002", trade(1, "0.002", "0.1")))
    assert states(applied.records) == ["ACCEPTED", "FILLED"]
    (fill,) = fills(applied.records)
    assert fill.fill_id == f"fill:{OID}:T1"
    assert fill.fee == Decimal("0.1")
    assert fill.position_delta == QTY
    assert conserves(fill.cash_delta, fill.position_delta, fill.price, fill.fee)
    assert book.live.open_order_ids() == []


def test_report_partial_then_rest_fills(book: Book) -> None:
    first = book.apply(report(VenueStatus.PARTIALLY_FILLED, "0.001", trade(1, "0.001")))
    assert states(first.records) == ["ACCEPTED", "PARTIALLY_FILLED"]
    second = book.apply(report(VenueStatus.FILLED, "0.002", trade(2, "0.001")))
    assert states(second.records) == ["FILLED"]
    assert book.held() == QTY


def test_report_duplicate_trade_books_once(book: Book) -> None:
    book.apply(report(VenueStatus.PARTIALLY_FILLED, "0.001", trade(1, "0.001")))
    again = book.apply(report(VenueStatus.PARTIALLY_FILLED, "0.001", trade(1, "0.001")))
    assert again.records == []
    assert book.held() == Decimal("0.001")


def test_report_same_trade_twice_in_one_report_books_once(book: Book) -> None:
    # a FULL response's fills and myTrades name the same trades
    applied = book.apply(report(VenueStatus.FILLED, "0.002", trade(1, "0.002"), trade(1, "0.002")))
    assert states(applied.records) == ["ACCEPTED", "FILLED"]
    assert len(fills(applied.records)) == 1


def test_report_after_terminal_ignored(book: Book) -> None:
    book.apply(report(VenueStatus.FILLED, "0.002", trade(1, "0.002")))
    assert book.apply(report(VenueStatus.CANCELED, "0.002")).records == []


def test_report_filled_without_trades_asks_for_them(book: Book) -> None:
    applied = book.apply(report(VenueStatus.FILLED, "0.002"))
    assert states(applied.records) == ["ACCEPTED"]
    assert applied.needs_trades


def test_cancel_after_unbooked_partial_waits_for_trades(book: Book) -> None:
    applied = book.apply(report(VenueStatus.CANCELED, "0.001"))
    assert applied.needs_trades
    assert book.live.state_of(OID) is OrderState.SUBMITTED
    done = book.apply(report(VenueStatus.CANCELED, "0.001", trade(1, "0.001")))
    assert states(done.records) == ["ACCEPTED", "PARTIALLY_FILLED", "CANCELED"]
    event = [r for r in done.records if isinstance(r, OrderEvent)][-1]
    assert event.filled_qty == Decimal("0.001")
    assert event.leaves_qty == 0


def test_report_rejected_carries_reason(book: Book) -> None:
    applied = book.apply(report(VenueStatus.REJECTED, "0", reason="INSUFFICIENT_BALANCE"))
    assert states(applied.records) == ["REJECTED"]
    assert "INSUFFICIENT_BALANCE" in applied.records[0].reason  # type: ignore[union-attr]


def test_book_reject_records_venue_code_and_message(book: Book) -> None:
    # the adapter words an error answer "venue <code>: <message>" (test_exec_binance.py)
    refused = "venue -2010: Account has insufficient balance"
    (event,) = book.apply(VenueReport(OID, VenueState.REJECTED, 5, Decimal(0), refused)).records
    assert event.state is OrderState.REJECTED  # type: ignore[union-attr]
    assert event.reason == "venue -2010: Account has insufficient balance"  # type: ignore[union-attr]
    again = VenueReport(OID, VenueState.REJECTED, 6, Decimal(0), "venue -1: again")
    assert book.apply(again).records == []


def test_book_give_up_denies_only_unplaced(book: Book) -> None:
    given_up = VenueReport(OID, VenueState.NOT_PLACED, 5, Decimal(0), "not placed")
    (event,) = book.apply(given_up).records
    assert event.state is OrderState.DENIED  # type: ignore[union-attr]


def test_book_give_up_of_an_accepted_order_changes_nothing(book: Book) -> None:
    book.apply(report(VenueStatus.NEW, "0"))
    given_up = VenueReport(OID, VenueState.NOT_PLACED, 5, Decimal(0), "not placed")
    assert book.apply(given_up).records == []
    assert book.live.state_of(OID) is OrderState.ACCEPTED


def test_report_overfill_raises(book: Book) -> None:
    with pytest.raises(InconsistentReport):
        book.apply(report(VenueStatus.FILLED, "0.003", trade(1, "0.003")))


def test_report_overfill_books_nothing_of_it(book: Book) -> None:
    overfill = report(VenueStatus.FILLED, "0.003", trade(1, "0.001"), trade(2, "0.002"))
    applied = book.live.apply_venue([overfill])
    assert applied.records == [] and len(applied.inconsistent) == 1
    assert "venue trade 2 of 0.002 exceeds the remaining 0.001" in applied.inconsistent[0]
    assert book.held() == 0 and book.live.state_of(OID) is OrderState.SUBMITTED


@pytest.mark.parametrize(
    ("qty", "price", "commission", "cum"),
    [
        ("0", "50000", "0", "0"),
        ("-0.001", "50000", "0", "0"),
        ("NaN", "50000", "0", "0.001"),
        ("0.001", "0", "0", "0.001"),
        ("0.001", "Infinity", "0", "0.001"),
        ("0.001", "50000", "sNaN", "0.001"),
        ("0.001", "50000", "0", "NaN"),
        ("0.001", "1" + "7" * 90, "0", "0.001"),  # too long to book exactly (EXACT: 80 digits)
    ],
)
def test_report_with_numbers_no_order_can_hold_is_refused(
    book: Book, qty: str, price: str, commission: str, cum: str
) -> None:
    bad = TradeInfo(
        1, Decimal(qty), Decimal(price), Decimal(commission), fee_asset("BTCUSDT", "USDT"), 1
    )
    rep = VenueReport(OID, VenueState.WORKING, 5, Decimal(cum), trades=(bad,))
    applied = book.live.apply_venue([rep])
    assert applied.records == [] and len(applied.inconsistent) == 1
    assert book.held() == 0 and book.live.state_of(OID) is OrderState.SUBMITTED


def test_report_unknown_client_id_flagged(book: Book) -> None:
    applied = book.apply(VenueReport("ord:someone-else", VenueState.WORKING, 1, Decimal(0)))
    assert applied.unknown and applied.records == []


def test_restore_remembers_booked_trades() -> None:
    first = live_book()
    place(first, order())
    booked = first.apply_report(report(VenueStatus.PARTIALLY_FILLED, "0.001", trade(1, "0.001")))
    (fill,) = fills(booked.records)
    assert trade_id_of(fill.fill_id) == 1
    # what Execution.restore does with the database's open order and fills
    orders = OrderBook()
    second = live_book(orders)
    orders.ledger.apply(fill)
    second.restore_fill(fill)
    resumed = replace(WorkingOrder.of(order()), state=OrderState.PARTIALLY_FILLED,
                      filled_qty=Decimal("0.001"), next_seq=3, fills=1)  # fmt: skip
    assert second.resume(resumed)
    orders.open(resumed)
    again = second.apply_report(
        report(VenueStatus.FILLED, "0.002", trade(1, "0.001"), trade(2, "0.001"))
    )
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
    position_delta, cash_delta, fee, unpriced = fill_amounts(side, t)
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
    er = execution_report_decoder.decode(raw)
    assert er.our_client_id == CID
    rep = report_from_execution(OID, er)
    assert (rep.order_id, rep.state, rep.reason) == (OID, VenueState.CANCELED, "venue: CANCELED")
    assert rep.trades == ()
    assert rep.ts_event == 3_000_000


@pytest.mark.parametrize("last_qty", ["sNaN", "NaN", "Infinity"])
def test_execution_report_with_a_quantity_not_a_number_is_refused_not_a_crash(
    book: Book, last_qty: str
) -> None:
    raw = (
        b'{"e":"executionReport","E":1,"s":"BTCUSDT","c":"' + CID.encode() + b'","S":"BUY",'
        b'"o":"LIMIT","q":"0.002","p":"50000","x":"TRADE","X":"PARTIALLY_FILLED","r":"NONE",'
        b'"i":5,"l":"' + last_qty.encode() + b'","z":"0.001","L":"50000","n":"0","N":null,'
        b'"T":3,"t":9}'
    )
    rep = report_from_execution(OID, execution_report_decoder.decode(raw))
    applied = book.live.apply_venue([rep])
    assert applied.records == [] and len(applied.inconsistent) == 1
    assert book.held() == 0
