"""LIVE: what execution asks of the real venue, and how the venue's answers are booked.

In LIVE the risk chain, sizing, ids and ledger are the same as in SHADOW and
PAPER; only the venue is real, so execution cannot decide outcomes -- it asks
for them. An approved order is recorded SUBMITTED (``Order`` + its seq-0
``OrderEvent``, to be persisted *before* anything is sent) and stays open; a
cancellation (superseded, HALTED, ``order_timeout_s`` of event time elapsed)
is only *requested*: the order stays open -- its remainder still counts toward
exposure and ``max_open_orders`` (I2) -- until the venue confirms. Both are
*intents* in an outbox (``take_intents``) that the shell (``engine.runtime.live``)
carries to the venue.

What the venue says comes back as pure values -- a ``VenueReport`` per answer
(order response, query, ``myTrades``, user-stream event), already translated
from the wire by the adapter -- through ``apply_venue``, and this module alone
turns them into ``OrderEvent``s and ``Fill``s in the one ``OrderBook``
(docs/execution.md, "LIVE"). The rules:

* A fill is keyed by the venue's trade id (``venue_fill_id``): the same trade
  reported twice (the order response *and* the stream, a re-delivery after a
  reconnect, a restart) books once (I3).
* A trade for an order still SUBMITTED first accepts it (the venue may report
  the fill before the placement response comes back).
* A terminal status (CANCELED, EXPIRED) is applied only once every fill the
  venue counted (``cum_qty``) is booked; until then ``Applied.needs_trades``
  asks the adapter to fetch the order's trades and report again, so cancelling
  a partly filled order never loses or double-counts a fill (S11).
* Anything about an order no longer open is ignored (late duplicates); a
  report about an order this book never held is flagged ``unknown``.

Commission: charged in the quote asset it is the fee; charged in the base asset
it is valued at the fill price and taken out of the position
(``position_delta = +-qty - commission``); in any other asset (BNB) it cannot be
valued here, so the fee is recorded as 0 and the fill is flagged ``unpriced``.
Either way ``cash_delta + position_delta * price + fee == 0`` holds exactly (I4).
"""

from __future__ import annotations

import decimal
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Protocol

from engine.config.schema import Mode
from engine.core.booking import OrderBook, venue_fill_id
from engine.core.events import (
    Fill,
    Order,
    OrderState,
    Record,
    Side,
    Tick,
    VenueFailure,
)
from engine.core.orders import TERMINAL, OrderAction, WorkingOrder
from engine.core.sizing import EXACT, ZERO, conserves


@dataclass(frozen=True, slots=True)
class SubmitOrder:
    """LIVE intent: send ``order`` to the venue (its SUBMITTED record must be persisted first)."""

    order: Order


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """LIVE intent: ask the venue to cancel the unfilled remainder of ``order_id``."""

    order_id: str
    symbol: str
    reason: str


CANCEL_OPERATION: Final = "cancel_order"
"""The ``VenueFailure.operation`` of a failed cancel request (the adapter's name for it)."""

Intent = SubmitOrder | CancelOrder
"""What LIVE execution asks the shell to do at the venue, in the order it must be done."""


class VenueState(enum.Enum):
    """What the venue's status of an order means for our lifecycle (the adapter maps its
    wire statuses onto these)."""

    PENDING = "pending"
    """The venue holds it but has not accepted it yet: its trades book, nothing else."""
    WORKING = "working"
    """Accepted: resting, filling or filled (the fills themselves come as trades)."""
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    """The venue refused the order (an error answer, or a REJECTED status)."""
    NOT_PLACED = "not_placed"
    """Our side stopped trying to place an order the venue does not have (DENIED)."""


_ENDING: Final = {VenueState.CANCELED: OrderAction.CANCEL, VenueState.EXPIRED: OrderAction.EXPIRE}
_REFUSING: Final = {
    VenueState.REJECTED: OrderAction.REJECT,
    VenueState.NOT_PLACED: OrderAction.DENY,
}
"""Applied only to an order still SUBMITTED (a venue that accepted or filled it did place it)."""


class FeeAsset(enum.Enum):
    """The asset a trade's commission was charged in, relative to the order's symbol."""

    QUOTE = "quote"
    BASE = "base"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TradeInfo:
    """One venue trade of one of our orders."""

    trade_id: int
    qty: Decimal
    price: Decimal
    commission: Decimal
    fee_asset: FeeAsset
    ts_event: int


@dataclass(frozen=True, slots=True)
class VenueReport:
    """What the venue says about one of our orders, whatever channel it came by.

    ``reason`` is the text of the terminal transition it may cause (the adapter
    words it: the venue's status and reason, or its error code and message).
    """

    order_id: str
    state: VenueState
    ts_event: int
    cum_qty: Decimal
    reason: str = ""
    trades: tuple[TradeInfo, ...] = ()


class InconsistentReport(Exception):
    """Raised by ``LiveMode.apply_report`` when the venue reports more than the order can
    hold; nothing of that report is booked."""


@dataclass(slots=True)
class Applied:
    """What booking venue reports produced, and what the adapter must do or record."""

    records: list[Record] = field(default_factory=list)
    """The ``OrderEvent``s and ``Fill``s booked, in order (to persist)."""
    needs_trades: bool = False
    """The venue counted fills not booked: fetch the order's trades and report again."""
    unknown: list[str] = field(default_factory=list)
    """Order ids of reports about an order this book never held."""
    unpriced: list[str] = field(default_factory=list)
    """Fill ids whose commission could not be valued (fee recorded as 0)."""
    inconsistent: list[str] = field(default_factory=list)
    """Why a report was refused (``InconsistentReport``): nothing of it was booked."""

    def add(self, other: Applied) -> None:
        self.records += other.records
        self.needs_trades = self.needs_trades or other.needs_trades
        self.unknown += other.unknown
        self.unpriced += other.unpriced
        self.inconsistent += other.inconsistent


class VenueBook(Protocol):
    """The port through which the LIVE adapter reports to the one order book and reads it.

    The adapter never changes an order itself: it hands over what the venue said
    (``apply_venue``) and reads which orders are open and in what state.
    """

    def apply_venue(self, items: Iterable[VenueReport | VenueFailure]) -> Applied: ...

    def state_of(self, order_id: str) -> OrderState | None:
        """The state of an open order; ``None`` once it is closed (or was never held)."""
        ...

    def open_order_ids(self) -> list[str]: ...


Amounts = tuple[Decimal, Decimal, Decimal, bool]
"""``(position_delta, cash_delta, fee, unpriced)`` of one venue trade."""


def fill_amounts(side: Side, trade: TradeInfo) -> Amounts:
    """``(position_delta, cash_delta, fee, unpriced)`` of one venue trade (module docstring).

    *Error handling:* ``decimal.Inexact`` when a value is too long to compute exactly.
    """
    signed = trade.qty if side is Side.BUY else EXACT.minus(trade.qty)
    unpriced = False
    if trade.commission == ZERO or trade.fee_asset is FeeAsset.QUOTE:
        fee, position_delta = trade.commission, signed
    elif trade.fee_asset is FeeAsset.BASE:
        fee = EXACT.multiply(trade.commission, trade.price)
        position_delta = EXACT.subtract(signed, trade.commission)
    else:
        fee, position_delta, unpriced = ZERO, signed, True
    cash_delta = EXACT.subtract(EXACT.minus(EXACT.multiply(position_delta, trade.price)), fee)
    return position_delta, cash_delta, fee, unpriced


class LiveMode:
    """LIVE: the intents outbox, and the venue's reports booked into execution's book.

    It is also the ``VenueBook`` the adapter reports into (``Execution.venue_book``).
    """

    mode: Final = Mode.LIVE
    order_mode: Final = Mode.LIVE.name
    rests_limit_orders: Final = True
    fills_at_once: Final = False
    supersede_frees_slot: Final = False

    def __init__(self, book: OrderBook, order_timeout_s: float, timeout_ns: int) -> None:
        self._book = book
        self._order_timeout_s = order_timeout_s
        self._timeout_ns = timeout_ns
        self._intents: list[Intent] = []
        self._cancelling: set[str] = set()
        """Orders whose cancellation was requested and not yet confirmed."""
        self.fill_ids: set[str] = set()
        """Every fill booked (restored ones included): a fill is booked once (I3)."""
        self._held: set[str] = set()
        """Every order this book held in this run (placed or resumed): a report about
        another one is flagged ``unknown``, one about a closed one is a late duplicate."""

    def resume(self, order: WorkingOrder) -> bool:
        """Resumed as open; the shell reconciles it with the venue before trading."""
        order.expires_at = order.ts_submitted + self._timeout_ns
        self._held.add(order.order_id)
        return True

    def restore_fill(self, fill: Fill) -> None:
        self.fill_ids.add(fill.fill_id)

    def place(self, order: WorkingOrder, record: Order, out: list[Record]) -> None:
        """Record SUBMITTED, keep it open, and ask for it to be sent (after it is persisted)."""
        out.append(order.submitted_event("live: recorded, to be sent to the venue"))
        order.expires_at = order.ts_submitted + self._timeout_ns
        self._book.open(order)
        self._held.add(order.order_id)
        self._intents.append(SubmitOrder(record))

    def work(self, tick: Tick, out: list[Record]) -> None:
        """Request the cancellation of every open order whose ``order_timeout_s`` elapsed."""
        ts_event = tick.ts_event
        for order in list(self._book.open_orders.values()):
            if order.expires_at is not None and ts_event >= order.expires_at:
                self.cancel(
                    order, ts_event, f"live: order_timeout_s {self._order_timeout_s} elapsed", out
                )

    def cancel(self, order: WorkingOrder, ts_event: int, reason: str, out: list[Record]) -> None:
        """Ask once for the remainder to be cancelled; the order stays open until the venue
        confirms (its CANCELED comes back through ``apply_venue``)."""
        if order.order_id not in self._cancelling:
            self._cancelling.add(order.order_id)
            self._intents.append(CancelOrder(order.order_id, order.symbol, reason))

    def take_intents(self) -> list[Intent]:
        """What to do at the venue since the last call, in order (empties the outbox)."""
        intents, self._intents = self._intents, []
        return intents

    # -- the venue's side (VenueBook) ----------------------------------------------

    def state_of(self, order_id: str) -> OrderState | None:
        order = self._book.open_orders.get(order_id)
        return None if order is None else order.state

    def open_order_ids(self) -> list[str]:
        return sorted(self._book.open_orders)

    def apply_venue(self, items: Iterable[VenueReport | VenueFailure]) -> Applied:
        """Book what the venue said (the module docstring's rules); return what it produced.

        A ``VenueReport`` is booked by ``apply_report``; one it refuses is
        listed in ``Applied.inconsistent`` with nothing of it booked. A
        ``VenueFailure`` of a ``cancel_order`` call only re-arms that order's
        cancellation (the venue did not confirm it: the next tick past the
        timeout, or the next superseding signal or halt, requests it again, one
        request in flight at a time); any other failure changes nothing.
        Applying the same reports again books nothing (I3).
        """
        applied = Applied()
        for item in items:
            if type(item) is VenueFailure:
                if item.operation == CANCEL_OPERATION:
                    self._cancelling.discard(item.order_id)
            elif type(item) is VenueReport:
                try:
                    applied.add(self.apply_report(item))
                except InconsistentReport as exc:
                    applied.inconsistent.append(str(exc))
        return applied

    def apply_report(self, report: VenueReport) -> Applied:
        """Book one report (the module docstring's rules).

        *Error handling:* ``InconsistentReport``, before anything is booked, when
        its new trades would overfill the order, or a quantity, price or commission
        is not a finite number (or a trade's quantity or price not positive).
        """
        out = Applied()
        order_id = report.order_id
        _refuse_implausible(report)
        order = self._book.open_orders.get(order_id)
        if order is None:
            if order_id not in self._held:
                out.unknown.append(order_id)
            return out  # closed already: a late duplicate changes nothing
        for trade, amounts in self._new_trades(order, report.trades):
            self._book_trade(order, trade, amounts, out)
        if order.state in TERMINAL:
            self._cancelling.discard(order_id)  # filled: the book closed it
            return out
        missing = report.cum_qty > order.filled_qty
        state = report.state
        if state is VenueState.WORKING:
            self._accept(order, report.ts_event, out)
            out.needs_trades = missing
        elif state in _ENDING:
            if missing:
                out.needs_trades = True
            else:
                self._accept(order, report.ts_event, out)
                self._end(order, _ENDING[state], report, out)
        elif state in _REFUSING and order.state is OrderState.SUBMITTED:
            self._end(order, _REFUSING[state], report, out)
        return out

    def _new_trades(
        self, order: WorkingOrder, trades: Iterable[TradeInfo]
    ) -> list[tuple[TradeInfo, Amounts]]:
        """The trades of ``order`` not booked yet, once each, by trade id, with their
        ``fill_amounts``; refused whole when they would overfill it or one cannot be
        booked exactly (a value too long for ``EXACT``)."""
        new: dict[int, TradeInfo] = {}
        for trade in trades:
            if venue_fill_id(order.order_id, trade.trade_id) not in self.fill_ids:
                new.setdefault(trade.trade_id, trade)
        remaining = order.leaves_qty
        for trade_id in sorted(new):
            trade = new[trade_id]
            if trade.qty > remaining:
                raise InconsistentReport(
                    f"{order.order_id}: venue trade {trade_id} of {trade.qty} exceeds "
                    f"the remaining {remaining}"
                )
            remaining = EXACT.subtract(remaining, trade.qty)
        booked: list[tuple[TradeInfo, Amounts]] = []
        for trade_id in sorted(new):
            trade = new[trade_id]
            try:
                amounts = fill_amounts(order.side, trade)
            except decimal.DecimalException:
                amounts = None
            if amounts is None or not conserves(amounts[1], amounts[0], trade.price, amounts[2]):
                raise InconsistentReport(
                    f"{order.order_id}: venue trade {trade_id} ({trade.qty} @ {trade.price}, "
                    f"commission {trade.commission}) cannot be booked exactly"
                )
            booked.append((trade, amounts))
        return booked

    def _end(
        self, order: WorkingOrder, action: OrderAction, report: VenueReport, out: Applied
    ) -> None:
        out.records.append(order.transition(action, report.ts_event, report.reason))
        self._book.close(order.order_id)
        self._cancelling.discard(order.order_id)

    def _accept(self, order: WorkingOrder, ts_event: int, out: Applied) -> None:
        if order.state is OrderState.SUBMITTED:
            out.records.append(order.transition(OrderAction.ACCEPT, ts_event, "venue: accepted"))

    def _book_trade(
        self, order: WorkingOrder, trade: TradeInfo, amounts: Amounts, out: Applied
    ) -> None:
        self._accept(order, trade.ts_event, out)
        position_delta, cash_delta, fee, unpriced = amounts
        fill = Fill(
            fill_id=venue_fill_id(order.order_id, trade.trade_id),
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            qty=trade.qty,
            price=trade.price,
            fee=fee,
            cash_delta=cash_delta,
            position_delta=position_delta,
            ts_event=trade.ts_event,
        )
        reason = f"venue trade {trade.trade_id}: {trade.qty} @ {trade.price}"
        self._book.book(order, fill, reason, out.records)
        self.fill_ids.add(fill.fill_id)
        if unpriced:
            out.unpriced.append(fill.fill_id)


def _refuse_implausible(report: VenueReport) -> None:
    """Refuse numbers no order can hold, before any comparison could raise on them."""
    if not report.cum_qty.is_finite() or report.cum_qty < ZERO:
        raise InconsistentReport(f"{report.order_id}: cumulative quantity {report.cum_qty}")
    for trade in report.trades:
        finite = all(d.is_finite() for d in (trade.qty, trade.price, trade.commission))
        if not (finite and trade.qty > ZERO and trade.price > ZERO):
            raise InconsistentReport(
                f"{report.order_id}: venue trade {trade.trade_id} of {trade.qty} @ "
                f"{trade.price}, commission {trade.commission}"
            )
