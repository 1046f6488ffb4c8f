"""What Binance sends back, decoded at the edge into typed Structs (nothing untyped goes further).

REST: an order (``POST/GET/DELETE /api/v3/order``), an error body
``{"code": -2010, "msg": "..."}``, the trades of an order (``GET /api/v3/myTrades``).
WebSocket API: the response to a request and the user-data event envelope,
whose ``executionReport`` events carry order updates and fills.

Unknown extra fields are ignored (the venue adds fields over time); missing or
mistyped fields we rely on fail decoding, which the adapter records as a failure.
Quantities and prices decode from the venue's decimal strings straight into
``Decimal``; times are venue milliseconds, turned into ns by ``ms_to_ns``.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Final

import msgspec

from engine.core.events import NS_PER_MS


def ms_to_ns(ms: int) -> int:
    return ms * NS_PER_MS


class VenueStatus(enum.StrEnum):
    """Binance order statuses (``X`` / ``status``)."""

    NEW = "NEW"
    PENDING_NEW = "PENDING_NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    PENDING_CANCEL = "PENDING_CANCEL"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"


class Wire(msgspec.Struct, frozen=True, kw_only=True):
    """Base of venue messages: immutable; unknown fields ignored."""


class ErrorBody(Wire, frozen=True, kw_only=True):
    code: int
    msg: str


class OrderFill(Wire, frozen=True, kw_only=True):
    """One trade inside a ``newOrderRespType=FULL`` response."""

    price: Decimal
    qty: Decimal
    commission: Decimal
    commissionAsset: str
    tradeId: int


class VenueOrder(Wire, frozen=True, kw_only=True):
    symbol: str
    orderId: int
    clientOrderId: str
    """For a cancel response, the id of the *cancel request*; see ``our_client_id``."""
    status: VenueStatus
    origQty: Decimal
    executedQty: Decimal
    side: str
    type: str
    price: Decimal = Decimal(0)
    transactTime: int | None = None
    updateTime: int | None = None
    time: int | None = None
    fills: tuple[OrderFill, ...] = ()
    origClientOrderId: str = ""

    @property
    def our_client_id(self) -> str:
        return self.origClientOrderId or self.clientOrderId

    @property
    def ts_ms(self) -> int:
        for value in (self.transactTime, self.updateTime, self.time):
            if value is not None:
                return value
        return 0


class VenueTrade(Wire, frozen=True, kw_only=True):
    """One of the account's trades (``GET /api/v3/myTrades``)."""

    id: int
    orderId: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commissionAsset: str
    time: int
    isBuyer: bool


class ExecutionReport(Wire, frozen=True, kw_only=True, rename={
    "event_time": "E", "symbol": "s", "client_order_id": "c", "side": "S",
    "order_type": "o", "orig_qty": "q", "price": "p", "exec_type": "x",
    "status": "X", "reject_reason": "r", "order_id": "i", "last_qty": "l",
    "cum_qty": "z", "last_price": "L", "commission": "n", "commission_asset": "N",
    "transact_time": "T", "trade_id": "t", "orig_client_order_id": "C",
}):  # fmt: skip
    """A user-data ``executionReport``: one order update, with the fill when ``x == TRADE``.

    For a cancellation ``c`` is the *cancel request's* id and ``C`` the order's
    original client id: ``our_client_id`` picks the right one.
    """

    event_time: int
    symbol: str
    client_order_id: str
    side: str
    order_type: str
    orig_qty: Decimal
    price: Decimal
    exec_type: str
    status: VenueStatus
    reject_reason: str = "NONE"
    order_id: int
    last_qty: Decimal
    cum_qty: Decimal
    last_price: Decimal
    commission: Decimal = Decimal(0)
    commission_asset: str | None = None
    transact_time: int
    trade_id: int = -1
    orig_client_order_id: str = ""

    @property
    def our_client_id(self) -> str:
        return self.orig_client_order_id or self.client_order_id


class EventHead(Wire, frozen=True, kw_only=True):
    e: str


class StreamMessage(Wire, frozen=True, kw_only=True):
    """Anything the WebSocket API sends: a response (``id``) or an event (``event``)."""

    id: str | int | None = None
    status: int | None = None
    result: msgspec.Raw = msgspec.Raw()
    error: ErrorBody | None = None
    subscriptionId: int | None = None
    event: msgspec.Raw = msgspec.Raw()
    """Empty (``len == 0``) when the message is not an event."""


error_decoder: Final = msgspec.json.Decoder(ErrorBody)
order_decoder: Final = msgspec.json.Decoder(VenueOrder)
trades_decoder: Final = msgspec.json.Decoder(list[VenueTrade])
stream_decoder: Final = msgspec.json.Decoder(StreamMessage)
event_head_decoder: Final = msgspec.json.Decoder(EventHead)
execution_report_decoder: Final = msgspec.json.Decoder(ExecutionReport)
