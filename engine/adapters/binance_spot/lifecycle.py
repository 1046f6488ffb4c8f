"""Venue reports -> our order lifecycle: the pure half of the LIVE adapter.

``LiveBook`` holds the LIVE orders still being worked (``engine.core.orders.
WorkingOrder``, the same lifecycle table as PAPER) and turns what the venue
says -- an order response, an order query, a ``myTrades`` list, a user-data
``executionReport`` -- into ``OrderEvent``s and ``Fill``s. It does no I/O and
reads no clock; every time comes from the venue's report.

Rules:

* Fills are keyed by the venue's trade id (``engine.core.booking.venue_fill_id``). The
  same trade arriving twice (the order response *and* the stream, a re-delivery
  after a reconnect, a restart) books once (I3).
* A trade for an order still SUBMITTED first accepts it (the venue may report the
  fill before the placement response comes back).
* A terminal status (CANCELED, EXPIRED) is applied only once every fill the
  venue counted (``cum_qty``) is booked; until then ``needs_trades`` asks the
  shell to fetch the order's trades, so cancelling a partly filled order never
  loses or double-counts a fill (S11).
* Anything about a terminal order is ignored (late duplicates); a report about a
  client id we do not know is flagged ``unknown``.

Commission: charged in the quote asset it is the fee; charged in the base asset
it is valued at the fill price and taken out of the position
(``position_delta = +-qty - commission``); in any other asset (BNB) it cannot be
valued here, so the fee is recorded as 0 and the fill is flagged ``unpriced``.
Either way ``cash_delta + position_delta * price + fee == 0`` holds exactly (I4).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from engine.adapters.binance_spot.signing import client_order_id
from engine.adapters.binance_spot.wire import (
    ExecutionReport,
    VenueOrder,
    VenueStatus,
    VenueTrade,
    ms_to_ns,
)
from engine.core.booking import trade_id_of, venue_fill_id
from engine.core.events import Fill, Order, OrderState, Record, Side
from engine.core.orders import TERMINAL, OrderAction, WorkingOrder, fill_action
from engine.core.sizing import EXACT, ZERO

QUOTE_ASSETS: Final[tuple[str, ...]] = (
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "DAI", "EUR", "TRY", "BRL", "JPY",
    "BTC", "ETH", "BNB",
)  # fmt: skip
"""Quote assets recognised when splitting a symbol, longest match first (``BTCUSDT``)."""

_LIVE_STATES_ACCEPTING: Final = frozenset(
    {VenueStatus.NEW, VenueStatus.PARTIALLY_FILLED, VenueStatus.FILLED, VenueStatus.PENDING_CANCEL}
)
_ENDING: Final = {
    VenueStatus.CANCELED: OrderAction.CANCEL,
    VenueStatus.EXPIRED: OrderAction.EXPIRE,
    VenueStatus.EXPIRED_IN_MATCH: OrderAction.EXPIRE,
}


class InconsistentReport(Exception):
    """Raised by ``LiveBook.apply`` when the venue reports more than the order can hold."""


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> ``("BTC", "USDT")``; raises ``ValueError`` for an unknown quote."""
    for quote in sorted(QUOTE_ASSETS, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"cannot tell base and quote of {symbol!r}")


@dataclass(frozen=True, slots=True)
class TradeInfo:
    trade_id: int
    qty: Decimal
    price: Decimal
    commission: Decimal
    commission_asset: str | None
    ts_event: int


@dataclass(frozen=True, slots=True)
class VenueReport:
    """What the venue says about one of our orders, whatever channel it came by."""

    client_id: str
    status: VenueStatus
    ts_event: int
    cum_qty: Decimal
    reason: str = ""
    trades: tuple[TradeInfo, ...] = ()


def report_from_execution(er: ExecutionReport) -> VenueReport:
    trades: tuple[TradeInfo, ...] = ()
    if er.exec_type == "TRADE" and er.trade_id >= 0 and er.last_qty > ZERO:
        trades = (
            TradeInfo(
                trade_id=er.trade_id,
                qty=er.last_qty,
                price=er.last_price,
                commission=er.commission,
                commission_asset=er.commission_asset,
                ts_event=ms_to_ns(er.transact_time),
            ),
        )
    reason = "" if er.reject_reason == "NONE" else er.reject_reason
    return VenueReport(
        client_id=er.our_client_id,
        status=er.status,
        ts_event=ms_to_ns(er.transact_time),
        cum_qty=er.cum_qty,
        reason=reason,
        trades=trades,
    )


def report_from_order(order: VenueOrder, trades: Sequence[VenueTrade] = ()) -> VenueReport:
    """An order response or query, with its fills (``FULL`` response) and/or ``myTrades``."""
    ts = ms_to_ns(order.ts_ms)
    infos = [
        TradeInfo(f.tradeId, f.qty, f.price, f.commission, f.commissionAsset, ts)
        for f in order.fills
    ]
    infos += [
        TradeInfo(t.id, t.qty, t.price, t.commission, t.commissionAsset, ms_to_ns(t.time))
        for t in trades
        if t.orderId == order.orderId
    ]
    return VenueReport(
        client_id=order.our_client_id,
        status=order.status,
        ts_event=ts,
        cum_qty=order.executedQty,
        trades=tuple(infos),
    )


@dataclass(slots=True)
class Applied:
    records: list[Record] = field(default_factory=list)
    needs_trades: bool = False
    """The venue counted fills we have not booked: fetch the order's trades and apply again."""
    unknown: bool = False
    """The report is about a client order id this book does not hold."""
    unpriced: list[str] = field(default_factory=list)
    """Fill ids whose commission could not be valued (fee recorded as 0)."""


def fill_amounts(
    side: Side, trade: TradeInfo, base: str, quote: str
) -> tuple[Decimal, Decimal, Decimal, bool]:
    """``(position_delta, cash_delta, fee, unpriced)`` of one venue trade (module docstring)."""
    signed = trade.qty if side is Side.BUY else EXACT.minus(trade.qty)
    asset = trade.commission_asset
    unpriced = False
    if trade.commission == ZERO or asset == quote:
        fee, position_delta = trade.commission, signed
    elif asset == base:
        fee = EXACT.multiply(trade.commission, trade.price)
        position_delta = EXACT.subtract(signed, trade.commission)
    else:
        fee, position_delta, unpriced = ZERO, signed, True
    cash_delta = EXACT.subtract(EXACT.minus(EXACT.multiply(position_delta, trade.price)), fee)
    return position_delta, cash_delta, fee, unpriced


class LiveBook:
    """The LIVE orders being worked, by our order id and by client order id."""

    def __init__(self) -> None:
        self._orders: dict[str, WorkingOrder] = {}
        self._by_client: dict[str, str] = {}
        self._trades: dict[str, set[int]] = {}

    # -- tracking ----------------------------------------------------------------

    def add(self, order: Order, reason: str) -> list[Record]:
        """Start tracking a new order; return its ``Order`` and SUBMITTED records to persist
        *before* anything is sent (so a crash mid-send leaves an intent to reconcile)."""
        if order.order_id in self._orders:
            return []
        working = WorkingOrder(
            order_id=order.order_id,
            signal_id=order.signal_id,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.qty,
            price=order.price,
            ts_submitted=order.ts_event,
        )
        self._track(working, ())
        return [order, working.submitted_event(reason)]

    def restore(self, working: WorkingOrder, fill_ids: Iterable[str] = ()) -> None:
        """Resume an order an earlier run left open, with the fills it already booked."""
        trade_ids = [t for t in map(trade_id_of, fill_ids) if t is not None]
        self._track(working, trade_ids)

    def _track(self, working: WorkingOrder, trade_ids: Iterable[int]) -> None:
        self._orders[working.order_id] = working
        self._by_client[client_order_id(working.order_id)] = working.order_id
        self._trades[working.order_id] = set(trade_ids)

    def get(self, order_id: str) -> WorkingOrder:
        return self._orders[order_id]

    def order_id_for_client(self, client_id: str) -> str | None:
        return self._by_client.get(client_id)

    def is_open(self, order_id: str) -> bool:
        working = self._orders.get(order_id)
        return working is not None and working.state not in TERMINAL

    def open_order_ids(self) -> list[str]:
        return sorted(oid for oid, o in self._orders.items() if o.state not in TERMINAL)

    # -- transitions we decide ---------------------------------------------------

    def reject(self, order_id: str, ts_event: int, code: int, message: str) -> list[Record]:
        """The venue refused the order outright (HTTP 4xx with an error code)."""
        working = self._orders[order_id]
        if working.state is not OrderState.SUBMITTED:
            return []
        return [working.transition(OrderAction.REJECT, ts_event, f"venue {code}: {message}")]

    def give_up(self, order_id: str, ts_event: int, reason: str) -> list[Record]:
        """We stop trying to place an order the venue does not have (DENIED: our side's no)."""
        working = self._orders[order_id]
        if working.state is not OrderState.SUBMITTED:
            return []
        return [working.transition(OrderAction.DENY, ts_event, reason)]

    # -- what the venue says -----------------------------------------------------

    def apply(self, report: VenueReport) -> Applied:
        """Book ``report``; see the module docstring for the rules.

        *Error handling:* raises ``InconsistentReport`` (nothing booked from the
        offending trade on) when a trade would overfill the order.
        """
        out = Applied()
        order_id = self._by_client.get(report.client_id)
        if order_id is None:
            out.unknown = True
            return out
        working = self._orders[order_id]
        seen = self._trades[order_id]
        for trade in sorted(report.trades, key=lambda t: t.trade_id):
            if working.state in TERMINAL or trade.trade_id in seen:
                continue
            self._book_trade(working, trade, out)
            seen.add(trade.trade_id)
        if working.state in TERMINAL:
            return out
        missing = report.cum_qty > working.filled_qty
        if report.status in _LIVE_STATES_ACCEPTING:
            self._accept(working, report.ts_event, out)
            out.needs_trades = missing
        elif report.status in _ENDING:
            if missing:
                out.needs_trades = True
            else:
                self._accept(working, report.ts_event, out)
                action = _ENDING[report.status]
                reason = f"venue: {report.status}" + (
                    f" ({report.reason})" if report.reason else ""
                )
                out.records.append(working.transition(action, report.ts_event, reason))
        elif report.status is VenueStatus.REJECTED and working.state is OrderState.SUBMITTED:
            out.records.append(
                working.transition(
                    OrderAction.REJECT, report.ts_event, f"venue rejected: {report.reason}"
                )
            )
        return out

    def _accept(self, working: WorkingOrder, ts_event: int, out: Applied) -> None:
        if working.state is OrderState.SUBMITTED:
            out.records.append(working.transition(OrderAction.ACCEPT, ts_event, "venue: accepted"))

    def _book_trade(self, working: WorkingOrder, trade: TradeInfo, out: Applied) -> None:
        if trade.qty > working.leaves_qty:
            raise InconsistentReport(
                f"{working.order_id}: venue trade {trade.trade_id} of {trade.qty} exceeds "
                f"the remaining {working.leaves_qty}"
            )
        self._accept(working, trade.ts_event, out)
        base, quote = split_symbol(working.symbol)
        position_delta, cash_delta, fee, unpriced = fill_amounts(working.side, trade, base, quote)
        fill_id = venue_fill_id(working.order_id, trade.trade_id)
        action = fill_action(working, trade.qty)
        out.records.append(
            working.transition(
                action,
                trade.ts_event,
                f"venue trade {trade.trade_id}: {trade.qty} @ {trade.price}",
                fill_qty=trade.qty,
            )
        )
        out.records.append(
            Fill(
                fill_id=fill_id,
                order_id=working.order_id,
                symbol=working.symbol,
                side=working.side,
                qty=trade.qty,
                price=trade.price,
                fee=fee,
                cash_delta=cash_delta,
                position_delta=position_delta,
                ts_event=trade.ts_event,
            )
        )
        working.fills += 1
        if unpriced:
            out.unpriced.append(fill_id)
