"""The one LIVE order book under any interleaving and repetition of venue reports.

The venue's truth for one order is a list of trades and an outcome (still
working, filled, cancelled, expired, rejected). Each *report* is what one
channel says at one moment of that history: the cumulative quantity so far,
the status then, and some of the trades so far (the stream carries only the
latest, a query none, ``myTrades`` all). Reports are delivered in any order,
any number of times, and the book is checked after every delivery:

* each venue trade is booked at most once, only if the venue made it, and the
  ledger equals the sum over the booked fills (I3, I4);
* the order's transitions are consecutive from SUBMITTED and legal in the
  lifecycle table, nothing follows a terminal one, and a CANCELED / EXPIRED is
  recorded only with every trade the venue counted already booked (S11);
* the order is open exactly while the records hold no terminal transition;

and, once a complete report of the final state (every trade) is delivered, the
book holds all of the venue's trades and the venue's outcome.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.booking import OrderBook, venue_fill_id
from engine.core.events import Fill, Order, OrderEvent, OrderState, OrderType, Record, Side
from engine.core.live_orders import FeeAsset, TradeInfo, VenueReport, VenueState
from engine.core.orders import TERMINAL, TRANSITIONS
from engine.core.sizing import conserves
from tests.fakes.live_support import live_book, place

OID = "ord:sig:binance:BTCUSDT:1"
QTY = Decimal("0.010")
STEP = Decimal("0.001")
ORDER = Order(
    order_id=OID, signal_id="sig:binance:BTCUSDT:1", mode="LIVE", symbol="BTCUSDT",
    side=Side.BUY, order_type=OrderType.LIMIT, qty=QTY, price=Decimal(50000), ts_event=1,
)  # fmt: skip
OUTCOMES = [
    VenueState.WORKING,
    VenueState.CANCELED,
    VenueState.EXPIRED,
    VenueState.REJECTED,
    VenueState.NOT_PLACED,
]


def trade(n: int, steps: int, asset: FeeAsset) -> TradeInfo:
    qty = STEP * steps
    return TradeInfo(100 + n, qty, Decimal(50000 + n), qty * 50, asset, 1_000 + n)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[TradeInfo], VenueState, list[VenueReport]]:
    outcome = draw(st.sampled_from(OUTCOMES))
    trades: list[TradeInfo] = []
    if outcome not in (VenueState.REJECTED, VenueState.NOT_PLACED):
        sizes = draw(st.lists(st.integers(1, 4), max_size=5))
        left = int(QTY / STEP)
        for n, wanted in enumerate(sizes):
            size = min(wanted, left)
            if size == 0:
                break
            trades.append(trade(n, size, draw(st.sampled_from(list(FeeAsset)))))
            left -= size
    reports: list[VenueReport] = []
    for _ in range(draw(st.integers(1, 12))):
        k = draw(st.integers(0, len(trades)))
        last = k == len(trades)
        state = outcome if last and draw(st.booleans()) else VenueState.WORKING
        if outcome in (VenueState.REJECTED, VenueState.NOT_PLACED):
            state = draw(st.sampled_from([outcome, VenueState.PENDING]))
        shown = draw(st.sampled_from(["none", "latest", "all", "some"]))
        known = trades[:k]
        if shown == "latest":
            known = known[-1:]
        elif shown == "some":
            known = [t for t in known if draw(st.booleans())]
        elif shown == "none":
            known = []
        cum = sum((t.qty for t in trades[:k]), Decimal(0))
        reports.append(VenueReport(OID, state, 2_000 + k, cum, f"venue: {state}", tuple(known)))
    final = outcome if outcome is not VenueState.WORKING else VenueState.WORKING
    cum = sum((t.qty for t in trades), Decimal(0))
    reports.append(VenueReport(OID, final, 9_000, cum, f"venue: {final}", tuple(trades)))
    return trades, outcome, reports


def check(records: list[Record], book: OrderBook, trades: list[TradeInfo]) -> None:
    events = [r for r in records if isinstance(r, OrderEvent)]
    fills = [r for r in records if isinstance(r, Fill)]
    made = {venue_fill_id(OID, t.trade_id): t for t in trades}
    assert len({f.fill_id for f in fills}) == len(fills), "a trade booked twice"
    for fill in fills:
        assert fill.fill_id in made, f"{fill.fill_id}: never a venue trade"
        assert fill.qty == made[fill.fill_id].qty
        assert conserves(fill.cash_delta, fill.position_delta, fill.price, fill.fee)
    assert book.ledger.fill_count == len(fills)
    assert book.ledger.position("BTCUSDT") == sum((f.position_delta for f in fills), Decimal(0))
    previous, booked = OrderState.SUBMITTED, Decimal(0)
    for n, event in enumerate(events, start=1):
        assert event.seq == n, "transitions not consecutive"
        assert previous not in TERMINAL, "a transition after a terminal one"
        assert any(to is event.state for (frm, _), to in TRANSITIONS.items() if frm is previous)
        previous = event.state
    for i, record in enumerate(records):
        if isinstance(record, Fill):
            booked += record.qty
        elif isinstance(record, OrderEvent):
            following = records[i + 1] if i + 1 < len(records) else None
            with_fill = booked + following.qty if isinstance(following, Fill) else booked
            assert record.filled_qty == with_fill  # a fill's transition precedes its Fill
            assert record.leaves_qty == (0 if record.state in TERMINAL else QTY - with_fill)
    closed = previous in TERMINAL
    assert (OID in book.open_orders) is not closed
    if not closed and OID in book.open_orders:
        assert book.open_orders[OID].filled_qty == booked


@settings(max_examples=300, deadline=None)
@given(history=histories(), data=st.data())
def test_any_interleaving_and_repetition_books_each_trade_once(
    history: tuple[list[TradeInfo], VenueState, list[VenueReport]], data: st.DataObject
) -> None:
    trades, outcome, reports = history
    orders = OrderBook()
    live = live_book(orders)
    place(live, ORDER)
    records: list[Record] = []
    order = data.draw(st.lists(st.sampled_from(range(len(reports))), max_size=25))
    for i in order:
        applied = live.apply_venue([reports[i]])
        assert applied.inconsistent == [] and applied.unknown == []
        records += applied.records
        check(records, orders, trades)
    again = live.apply_venue([reports[-1]])  # the complete report of the final state
    records += again.records
    check(records, orders, trades)
    fills = [r for r in records if isinstance(r, Fill)]
    states = [r.state for r in records if isinstance(r, OrderEvent)]
    if outcome in (VenueState.REJECTED, VenueState.NOT_PLACED):
        assert states == [
            OrderState.REJECTED if outcome is VenueState.REJECTED else OrderState.DENIED
        ]
        return
    assert len(fills) == len(trades), "a venue trade never booked"
    assert not again.needs_trades
    ended = {VenueState.CANCELED: OrderState.CANCELED, VenueState.EXPIRED: OrderState.EXPIRED}
    filled = sum((t.qty for t in trades), Decimal(0)) == QTY
    if filled:
        assert states[-1] is OrderState.FILLED and OID not in orders.open_orders
    elif outcome in ended:
        assert states[-1] is ended[outcome] and OID not in orders.open_orders
    else:
        assert OID in orders.open_orders
    assert live.apply_venue(reports).records == []  # everything again: nothing new
