"""Binance's answers -> the core's ``VenueReport``s: the wire-to-report half of the adapter.

An order response, an order query, a ``myTrades`` list and a user-data
``executionReport`` all become one ``engine.core.live_orders.VenueReport``
about our order id; the core's one order book turns it into ``OrderEvent``s and
``Fill``s (the rules: ``engine.core.live_orders``; docs/execution.md, "LIVE").
Only what is Binance's is decided here: which status means what, the words of
a terminal transition, and which asset of the symbol a commission was charged
in. No I/O, no clock: every time comes from the venue's report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from engine.adapters.binance_spot.wire import (
    ExecutionReport,
    VenueOrder,
    VenueStatus,
    VenueTrade,
    ms_to_ns,
)
from engine.core.live_orders import FeeAsset, TradeInfo, VenueReport, VenueState
from engine.core.sizing import ZERO

QUOTE_ASSETS: Final[tuple[str, ...]] = (
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "DAI", "EUR", "TRY", "BRL", "JPY",
    "BTC", "ETH", "BNB",
)  # fmt: skip
"""Quote assets recognised when splitting a symbol, longest match first (``BTCUSDT``)."""

STATES: Final = {
    VenueStatus.PENDING_NEW: VenueState.PENDING,
    VenueStatus.NEW: VenueState.WORKING,
    VenueStatus.PARTIALLY_FILLED: VenueState.WORKING,
    VenueStatus.FILLED: VenueState.WORKING,
    VenueStatus.PENDING_CANCEL: VenueState.WORKING,
    VenueStatus.CANCELED: VenueState.CANCELED,
    VenueStatus.EXPIRED: VenueState.EXPIRED,
    VenueStatus.EXPIRED_IN_MATCH: VenueState.EXPIRED,
    VenueStatus.REJECTED: VenueState.REJECTED,
}
"""What each Binance order status means for our lifecycle."""


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> ``("BTC", "USDT")``; raises ``ValueError`` for an unknown quote."""
    for quote in sorted(QUOTE_ASSETS, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"cannot tell base and quote of {symbol!r}")


def fee_asset(symbol: str, asset: str | None) -> FeeAsset:
    """Which asset of ``symbol`` a commission charged in ``asset`` is (``OTHER``: neither)."""
    base, quote = split_symbol(symbol)
    if asset == quote:
        return FeeAsset.QUOTE
    return FeeAsset.BASE if asset == base else FeeAsset.OTHER


def status_reason(status: VenueStatus, reason: str) -> str:
    """The words of the transition ``status`` may end an order with."""
    if status is VenueStatus.REJECTED:
        return f"venue rejected: {reason}"
    return f"venue: {status}" + (f" ({reason})" if reason else "")


def report_from_execution(order_id: str, er: ExecutionReport) -> VenueReport:
    """A user-stream ``executionReport`` about ``order_id`` (its client id, mapped)."""
    trades: tuple[TradeInfo, ...] = ()
    # A quantity that is not a number is handed on: the book refuses the report whole.
    if (
        er.exec_type == "TRADE"
        and er.trade_id >= 0
        and (not er.last_qty.is_finite() or er.last_qty > ZERO)
    ):
        trades = (
            TradeInfo(
                trade_id=er.trade_id,
                qty=er.last_qty,
                price=er.last_price,
                commission=er.commission,
                fee_asset=fee_asset(er.symbol, er.commission_asset),
                ts_event=ms_to_ns(er.transact_time),
            ),
        )
    reason = "" if er.reject_reason == "NONE" else er.reject_reason
    return VenueReport(
        order_id=order_id,
        state=STATES[er.status],
        ts_event=ms_to_ns(er.transact_time),
        cum_qty=er.cum_qty,
        reason=status_reason(er.status, reason),
        trades=trades,
    )


def report_from_order(
    order_id: str, order: VenueOrder, trades: Sequence[VenueTrade] = ()
) -> VenueReport:
    """An order response or query, with its fills (``FULL`` response) and/or ``myTrades``."""
    ts = ms_to_ns(order.ts_ms)
    infos = [(f.tradeId, f.qty, f.price, f.commission, f.commissionAsset, ts) for f in order.fills]
    infos += [
        (t.id, t.qty, t.price, t.commission, t.commissionAsset, ms_to_ns(t.time))
        for t in trades
        if t.orderId == order.orderId
    ]
    symbol = order.symbol
    return VenueReport(
        order_id=order_id,
        state=STATES[order.status],
        ts_event=ts,
        cum_qty=order.executedQty,
        reason=status_reason(order.status, ""),
        trades=tuple(
            TradeInfo(tid, qty, price, fee, fee_asset(symbol, asset), ts_event)
            for tid, qty, price, fee, asset, ts_event in infos
        ),
    )
