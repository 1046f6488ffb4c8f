"""The execution core in LIVE mode: the same risk chain and ledger, the venue outside.

The venue's answers reach the core the way the LIVE adapter hands them over:
as ``VenueReport``s made by its wire -> report half
(``engine.adapters.binance_spot.reports``), which the core's one order book
turns into ``OrderEvent``s and ``Fill``s. No I/O anywhere in this file.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.adapters.binance_spot.reports import STATES, fee_asset, status_reason
from engine.adapters.binance_spot.wire import VenueStatus
from engine.config.schema import (
    Config,
    EngineSection,
    ExecutionSection,
    Mode,
    OrderTypeName,
    RiskSection,
)
from engine.core.events import (
    FailureKind,
    Fill,
    Order,
    OrderEvent,
    OrderState,
    OrderType,
    Record,
    Side,
    Signal,
    Tick,
    VenueFailure,
    Veto,
    VetoReason,
)
from engine.core.execution import Execution
from engine.core.live_orders import CancelOrder, SubmitOrder, TradeInfo, VenueReport, VenueState
from engine.core.restored import RestoredOrder, RestoredState
from engine.core.sizing import conserves

T0 = 1_723_161_255_000_000_000
MS = 1_000_000
SYMBOL = "BTCUSDT"


def live_config(
    *,
    max_exposure: str = "1000",
    max_symbol: str = "500",
    max_open: int = 4,
    timeout_s: float = 30.0,
    mode: Mode = Mode.LIVE,
) -> Config:
    return Config(
        engine=EngineSection(mode=mode),
        risk=RiskSection(
            max_exposure_usd=Decimal(max_exposure),
            max_symbol_exposure_usd=Decimal(max_symbol),
            max_open_orders=max_open,
        ),
        execution=msgspec.convert(
            {"order_notional_usd": "100", "qty_step": "0.00001", "order_timeout_s": timeout_s},
            ExecutionSection,
        ),
    )


def tick(n: int, price: str = "50000", symbol: str = SYMBOL, dt_ms: int = 1) -> Tick:
    ts = T0 + n * dt_ms * MS
    return Tick(
        event_id=f"binance:{symbol}:{n}",
        venue="binance",
        symbol=symbol,
        trade_id=n,
        ts_event=ts,
        ts_recv=ts + 5 * MS,
        price=Decimal(price),
        qty=Decimal(1),
    )


def signal(t: Tick, side: Side) -> Signal:
    return Signal(
        signal_id=f"sig:{t.event_id}",
        symbol=t.symbol,
        side=side,
        ts_event=t.ts_event,
        ts_recv=t.ts_recv,
        price=t.price,
        cause_id=t.event_id,
    )


class Venue:
    """The venue, driven by hand: what it says about each order, as the adapter reports it."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.cum: dict[str, Decimal] = {}
        """What the venue counts as filled, per order."""
        self.said: set[str] = set()
        """Orders the venue has said anything about (it placed them)."""
        self.ended: set[str] = set()
        self.next_trade = 1

    def take(self, ex: Execution) -> list[CancelOrder]:
        """Place every submit intent; return the cancel intents."""
        cancels = []
        for intent in ex.take_intents():
            if isinstance(intent, SubmitOrder):
                self.orders[intent.order.order_id] = intent.order
                self.cum[intent.order.order_id] = Decimal(0)
            else:
                cancels.append(intent)
        return cancels

    def open_order_ids(self) -> list[str]:
        return sorted(oid for oid in self.orders if oid not in self.ended)

    def leaves(self, order_id: str) -> Decimal:
        return self.orders[order_id].qty - self.cum[order_id]

    def report(
        self, order_id: str, status: VenueStatus, fill_qty: str | None = None, price: str = "50000"
    ) -> list[VenueReport]:
        trades: tuple[TradeInfo, ...] = ()
        if fill_qty is not None:
            qty = Decimal(fill_qty)
            trades = (
                TradeInfo(self.next_trade, qty, Decimal(price), qty * Decimal(price) / 1000,
                          fee_asset(SYMBOL, "USDT"), T0 + self.next_trade * MS),
            )  # fmt: skip
            self.next_trade += 1
            self.cum[order_id] += qty
        self.said.add(order_id)
        if status in (VenueStatus.FILLED, VenueStatus.CANCELED, VenueStatus.REJECTED):
            self.ended.add(order_id)
        return [
            VenueReport(
                order_id=order_id,
                state=STATES[status],
                ts_event=T0 + self.next_trade * MS,
                cum_qty=self.cum[order_id],
                reason=status_reason(status, ""),
                trades=trades,
            )
        ]


def booked(ex: Execution, reports: list[VenueReport]) -> list[Record]:
    """What the core's book produced from ``reports`` (and nothing refused or unknown)."""
    applied = ex.apply_venue(reports)
    assert applied.inconsistent == [] and applied.unknown == []
    return applied.records


def buy(ex: Execution, n: int, price: str = "50000") -> list[Record]:
    t = tick(n, price)
    return ex.process([t, signal(t, Side.BUY)])


# --------------------------------------------------------------------------- basics


def test_live_buy_signal_records_submitted_and_queues_one_submit_intent() -> None:
    ex = Execution(live_config())
    records = buy(ex, 1)
    order, submitted = records
    assert isinstance(order, Order) and isinstance(submitted, OrderEvent)
    assert (order.order_id, order.mode, order.qty) == (
        "ord:sig:binance:BTCUSDT:1", "LIVE", Decimal("0.00199"),
    )  # fmt: skip
    assert (submitted.seq, submitted.state, submitted.leaves_qty) == (
        0, OrderState.SUBMITTED, order.qty,
    )  # fmt: skip
    assert ex.take_intents() == [SubmitOrder(order)]
    assert ex.take_intents() == []  # the outbox empties
    assert ex.ledger.position(SYMBOL) == 0  # nothing is filled until the venue says so
    assert list(ex.open_orders) == [order.order_id]
    assert ex.mode == "LIVE"


def test_live_duplicate_signal_creates_no_second_order_or_intent() -> None:
    ex = Execution(live_config())
    t = tick(1)
    ex.process([t, signal(t, Side.BUY)])
    ex.take_intents()
    assert ex.process([signal(t, Side.BUY)]) == []
    assert ex.take_intents() == []


def test_live_venue_fill_books_the_ledger_and_closes_the_order() -> None:
    ex, venue = Execution(live_config()), Venue()
    buy(ex, 1)
    venue.take(ex)
    oid = "ord:sig:binance:BTCUSDT:1"
    reports = venue.report(oid, VenueStatus.FILLED, "0.00199")
    records = booked(ex, reports)  # ACCEPTED, FILLED, the fill: all new
    assert booked(ex, reports) == []
    assert [r.state for r in records if isinstance(r, OrderEvent)] == [
        OrderState.ACCEPTED, OrderState.FILLED,
    ]  # fmt: skip
    assert ex.ledger.position(SYMBOL) == Decimal("0.00199")
    assert ex.open_orders == {}
    (fill,) = [r for r in records if isinstance(r, Fill)]
    assert conserves(fill.cash_delta, fill.position_delta, fill.price, fill.fee)


def test_live_duplicate_venue_records_change_nothing() -> None:
    ex, venue = Execution(live_config()), Venue()
    buy(ex, 1)
    venue.take(ex)
    oid = "ord:sig:binance:BTCUSDT:1"
    first = venue.report(oid, VenueStatus.PARTIALLY_FILLED, "0.001")
    first += venue.report(oid, VenueStatus.PARTIALLY_FILLED)
    booked(ex, first)
    before = (ex.ledger.cash, ex.ledger.fill_count, ex.ledger.position(SYMBOL))
    order_before = (ex.open_orders[oid].state, ex.open_orders[oid].filled_qty)
    assert booked(ex, first) == []
    assert booked(ex, list(reversed(first))) == []
    assert (ex.ledger.cash, ex.ledger.fill_count, ex.ledger.position(SYMBOL)) == before
    assert (ex.open_orders[oid].state, ex.open_orders[oid].filled_qty) == order_before


def test_live_events_out_of_order_adopt_the_latest_and_ignore_the_older() -> None:
    ex, venue = Execution(live_config()), Venue()
    buy(ex, 1)
    venue.take(ex)
    oid = "ord:sig:binance:BTCUSDT:1"
    accepted = venue.report(oid, VenueStatus.NEW)
    filled = venue.report(oid, VenueStatus.FILLED, "0.00199")
    records = booked(ex, filled)  # the stream overtook the submit response
    assert [r.state for r in records if isinstance(r, OrderEvent)] == [
        OrderState.ACCEPTED, OrderState.FILLED,
    ]  # fmt: skip
    assert ex.open_orders == {}
    assert booked(ex, accepted) == []  # older: changes nothing
    assert ex.ledger.position(SYMBOL) == Decimal("0.00199")


def test_live_venue_failures_and_unknown_orders_are_ignored() -> None:
    ex = Execution(live_config())
    stray = VenueReport("ord:elsewhere", VenueState.WORKING, T0, Decimal(0))
    applied = ex.apply_venue([stray])
    assert applied.records == []
    assert applied.unknown == ["ord:elsewhere"]  # the adapter records it as INCONSISTENT


def test_live_report_the_order_cannot_hold_is_refused_and_books_nothing() -> None:
    # The core makes every transition itself from the lifecycle table, so no report can
    # ask for an edge the table lacks; what a report can get wrong is the quantity.
    ex = Execution(live_config())
    buy(ex, 1)
    oid = "ord:sig:binance:BTCUSDT:1"
    trade = TradeInfo(1, Decimal("0.1"), Decimal(50000), Decimal(0), fee_asset(SYMBOL, None), T0)
    overfill = VenueReport(oid, VenueState.WORKING, T0, Decimal("0.1"), trades=(trade,))
    applied = ex.apply_venue([overfill])
    assert applied.records == []
    (why,) = applied.inconsistent
    assert "exceeds the remaining 0.00199" in why
    assert ex.ledger.fill_count == 0 and ex.open_orders[oid].state is OrderState.SUBMITTED


# --------------------------------------------------------------------------- caps (I2)


def test_live_in_flight_buy_counts_toward_the_symbol_cap() -> None:
    ex = Execution(live_config(max_symbol="150"))
    buy(ex, 1)  # ~99.5 USD in flight, nothing filled yet
    t = tick(2)
    (veto,) = ex.process([t, signal(t, Side.BUY)])
    assert isinstance(veto, Veto) and veto.reason is VetoReason.RISK_CAP
    assert veto.detail.startswith("max_symbol_exposure_usd: BTCUSDT current 99.50000")
    assert len(ex.take_intents()) == 1  # only the first order's submit


def test_live_in_flight_orders_count_toward_max_open_orders() -> None:
    ex = Execution(live_config(max_open=1))
    buy(ex, 1)
    t = tick(2, symbol="ETHUSDT", price="3000")
    (veto,) = ex.process([t, signal(t, Side.BUY)])
    assert isinstance(veto, Veto)
    assert veto.detail == "max_open_orders: current 1, projected 2 > limit 1"


def test_live_superseded_order_stays_open_and_counted_until_the_venue_cancels() -> None:
    ex, venue = Execution(live_config()), Venue()
    buy(ex, 1)
    venue.take(ex)
    oid = "ord:sig:binance:BTCUSDT:1"
    ex.apply_venue(venue.report(oid, VenueStatus.NEW))
    t = tick(2)
    (veto,) = ex.process([t, signal(t, Side.SELL)])  # nothing held: NO_POSITION ...
    assert isinstance(veto, Veto) and veto.reason is VetoReason.NO_POSITION
    (cancel,) = venue.take(ex)  # ... but the exit intent still cancels the resting BUY
    assert (cancel.order_id, cancel.reason) == (oid, "superseded by sig:binance:BTCUSDT:2")
    assert oid in ex.open_orders and ex.symbol_exposure(SYMBOL) > 0
    t3 = tick(3)
    ex.process([t3, signal(t3, Side.SELL)])
    assert venue.take(ex) == []  # a cancel is requested once
    ex.apply_venue(venue.report(oid, VenueStatus.CANCELED))
    assert ex.open_orders == {} and ex.symbol_exposure(SYMBOL) == 0


def test_live_partial_fill_then_cancel_keeps_exactly_the_filled_part() -> None:
    ex, venue = Execution(live_config()), Venue()
    buy(ex, 1)
    venue.take(ex)
    oid = "ord:sig:binance:BTCUSDT:1"
    ex.apply_venue(venue.report(oid, VenueStatus.PARTIALLY_FILLED, "0.00099"))
    assert ex.symbol_exposure(SYMBOL) == Decimal("0.00199") * 50000  # position + remainder
    ex.apply_venue(venue.report(oid, VenueStatus.CANCELED))
    assert ex.ledger.position(SYMBOL) == Decimal("0.00099")
    assert ex.symbol_exposure(SYMBOL) == Decimal("0.00099") * 50000
    t = tick(2)
    order, _submitted = ex.process([t, signal(t, Side.SELL)])
    assert isinstance(order, Order) and order.qty == Decimal("0.00099")


def test_live_order_timeout_requests_one_cancel_at_event_time() -> None:
    ex = Execution(live_config(timeout_s=1.0))
    buy(ex, 1)
    ex.take_intents()
    ex.process([tick(999)])
    assert ex.take_intents() == []
    ex.process([tick(1001)])  # 1 s of event time after the order
    (cancel,) = ex.take_intents()
    assert isinstance(cancel, CancelOrder) and "order_timeout_s 1.0" in cancel.reason
    ex.process([tick(1002)])
    assert ex.take_intents() == []


def test_live_restore_resumes_open_live_orders_and_books_known_fills_once() -> None:
    ex, venue = Execution(live_config()), Venue()
    buy(ex, 1)
    venue.take(ex)
    oid = "ord:sig:binance:BTCUSDT:1"
    reports = venue.report(oid, VenueStatus.PARTIALLY_FILLED, "0.001")
    records = booked(ex, reports)
    order = next(r for r in buy(Execution(live_config()), 1) if isinstance(r, Order))
    fills = tuple(r for r in records if isinstance(r, Fill))
    still_open = RestoredOrder(
        order=order, state=OrderState.PARTIALLY_FILLED, filled_qty=Decimal("0.001"),
        next_seq=3, fills=1,
    )  # fmt: skip
    restored = RestoredState(
        fills=fills, open_orders=(still_open,), decided_signal_ids=frozenset({order.signal_id})
    )
    again = Execution(live_config())
    again.restore(restored)
    assert again.open_orders[oid].filled_qty == Decimal("0.001")
    assert again.ledger.position(SYMBOL) == Decimal("0.001")
    assert booked(again, reports) == []  # already in the database: booked once
    assert buy(again, 1) == []  # decided before the restart
    shadow = Execution(live_config(mode=Mode.SHADOW))
    shadow.restore(restored)
    assert shadow.open_orders == {}  # a LIVE order is never resumed by a simulator


# --------------------------------------------------------------------------- property


class LiveMachine(RuleBasedStateMachine):
    """Random signals, ticks and venue answers (in and out of order, duplicated).

    Checks: every BUY fits both caps at creation with in-flight orders counted
    (recomputed from records alone); open orders <= max; duplicates and stale
    events change nothing; the ledger equals the sums over distinct fills.
    """

    MAX_SYMBOL = Decimal(250)
    MAX_TOTAL = Decimal(400)
    MAX_OPEN = 3

    def __init__(self) -> None:
        super().__init__()
        self.ex = Execution(
            live_config(max_exposure="400", max_symbol="250", max_open=self.MAX_OPEN)
        )
        self.venue = Venue()
        self.n = 0
        self.price = {SYMBOL: Decimal(50000), "ETHUSDT": Decimal(3000)}
        self.last: Tick | None = None
        self.history: list[list[VenueReport]] = []
        self.fills: dict[str, Fill] = {}
        self.orders: dict[str, Order] = {}
        self.closed: set[str] = set()
        self.filled: dict[str, Decimal] = defaultdict(Decimal)

    def exposure(self, symbol: str) -> Decimal:
        qty = sum((f.position_delta for f in self.fills.values() if f.symbol == symbol), Decimal(0))
        for oid, order in self.orders.items():
            if order.symbol == symbol and order.side is Side.BUY and oid not in self.closed:
                qty += order.qty - self.filled[oid]
        return qty * self.price[symbol]

    @rule(symbol=st.sampled_from([SYMBOL, "ETHUSDT"]), move=st.integers(-30, 30))
    def trade(self, symbol: str, move: int) -> None:
        self.n += 1
        self.price[symbol] = max(Decimal(1), self.price[symbol] + move)
        self.last = tick(self.n, str(self.price[symbol]), symbol)
        self.ex.process([self.last])

    @precondition(lambda self: self.last is not None)
    @rule(side=st.sampled_from(list(Side)))
    def decide(self, side: Side) -> None:
        assert self.last is not None
        before = {s: self.exposure(s) for s in self.price}
        for record in self.ex.process([signal(self.last, side)]):
            if isinstance(record, Order):
                self.orders[record.order_id] = record
                if record.side is Side.BUY:
                    added = record.qty * self.price[record.symbol]
                    assert before[record.symbol] + added <= self.MAX_SYMBOL
                    assert sum(before.values()) + added <= self.MAX_TOTAL
        self.venue.take(self.ex)

    @precondition(lambda self: bool(self.venue.open_order_ids()))
    @rule(data=st.data(), what=st.sampled_from(["accept", "part", "fill", "cancel", "reject"]))
    def venue_answers(self, data: st.DataObject, what: str) -> None:
        oid = data.draw(st.sampled_from(self.venue.open_order_ids()))
        leaves = self.venue.leaves(oid)
        price = str(self.price[self.venue.orders[oid].symbol])
        if what == "accept":
            records = self.venue.report(oid, VenueStatus.NEW)
        elif what == "part" and leaves > Decimal("0.00001"):
            records = self.venue.report(oid, VenueStatus.PARTIALLY_FILLED, "0.00001", price)
        elif what == "fill":
            records = self.venue.report(oid, VenueStatus.FILLED, str(leaves), price)
        elif what == "reject" and oid not in self.venue.said:
            records = self.venue.report(oid, VenueStatus.REJECTED)
        else:
            records = self.venue.report(oid, VenueStatus.CANCELED)
        self.history.append(records)
        if data.draw(st.booleans()):  # held back: delivered later, out of order
            return
        self.deliver(records)

    def deliver(self, reports: list[VenueReport]) -> None:
        for record in booked(self.ex, reports):
            if isinstance(record, Fill):
                self.fills[record.fill_id] = record
            elif isinstance(record, OrderEvent):
                self.filled[record.order_id] = max(self.filled[record.order_id], record.filled_qty)
                if record.state in (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED):
                    self.closed.add(record.order_id)

    @precondition(lambda self: bool(self.history))
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """A late or duplicate delivery of an earlier batch."""
        reports = data.draw(st.sampled_from(self.history))
        self.deliver(reports)

    @invariant()
    def caps_and_ledger(self) -> None:
        assert len(self.ex.open_orders) <= self.MAX_OPEN
        fills = self.fills.values()
        assert self.ex.ledger.fill_count == len(self.fills)
        assert self.ex.ledger.cash == sum((f.cash_delta for f in fills), Decimal(0))
        for symbol in self.price:
            held = sum((f.position_delta for f in fills if f.symbol == symbol), Decimal(0))
            assert self.ex.ledger.position(symbol) == held
            assert held >= 0


LiveMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_live_machine = LiveMachine.TestCase


def test_live_failed_cancel_is_requested_again_at_the_next_tick() -> None:
    # A cancel the venue never confirmed (the call failed) used to stay "requested"
    # forever: the order rested at the venue past order_timeout_s until the drain.
    ex = Execution(live_config(timeout_s=1.0))
    buy(ex, 1)
    ex.take_intents()
    ex.process([tick(1001)])
    (cancel,) = ex.take_intents()
    assert isinstance(cancel, CancelOrder)
    failure = VenueFailure(
        failure_id=f"vf:cancel_order:{cancel.order_id}:1:1", order_id=cancel.order_id,
        operation="cancel_order", kind=FailureKind.TIMEOUT, http_status=0, code=0,
        message="read timed out", attempt=1, ts_event=T0,
    )  # fmt: skip
    assert ex.apply_venue([failure]).records == []
    ex.process([tick(1002)])
    (again,) = ex.take_intents()
    assert isinstance(again, CancelOrder) and again.order_id == cancel.order_id
    ex.process([tick(1003)])
    assert ex.take_intents() == []  # one request in flight at a time


def test_live_limit_order_is_priced_at_the_limit_offset_not_the_slippage() -> None:
    base = live_config()
    config = msgspec.structs.replace(
        base,
        execution=msgspec.structs.replace(
            base.execution,
            order_type=OrderTypeName.LIMIT,
            limit_offset_bps=Decimal("20"),
            slippage_bps=Decimal("5"),
        ),
    )
    ex = Execution(config)
    order = buy(ex, 1)[0]
    assert isinstance(order, Order)
    assert order.order_type is OrderType.LIMIT
    assert order.price == Decimal("49900.0000")  # 50000 - 20 bps: a BUY limit sits below
