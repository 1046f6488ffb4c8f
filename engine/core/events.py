"""The engine's vocabulary: immutable events with deterministic ids.

Every record the engine persists is one of these frozen ``msgspec.Struct``s.
Ids derive from what caused the event, never from a clock or a random source,
so the same input always produces the same ids (I3, S8):

* a tick:      ``<venue>:<SYMBOL>:<trade id>``          e.g. ``binance:BTCUSDT:3735683259``
* a signal:    ``sig:<id of the tick that closed the bar>``
* a veto:      ``veto:<signal id>``
* an order:    ``ord:<signal id>`` (also the client order id sent to a venue)
* an order event: keyed by ``(order_id, seq)``, ``seq`` counting from 0
* a fill:      ``fill:<order id>:<n>``, ``n`` counting from 0

Timestamps are integer nanoseconds since the Unix epoch: ``ts_event`` is the
exchange's time for market data and the causing event's time for everything
derived from it; ``ts_recv`` is the local receive time of market data.
Prices, quantities and money are exact ``Decimal``s, never floats.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Final

import msgspec

NS_PER_US: Final = 1_000
NS_PER_MS: Final = 1_000_000
NS_PER_S: Final = 1_000_000_000
"""Nanoseconds per microsecond, millisecond and second: the unit of every timestamp."""


class Event(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Base of every event: immutable, keyword-only, strict on decode."""


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class Tick(Event, frozen=True, tag="tick"):
    """One trade printed by a venue, normalised."""

    event_id: str
    venue: str
    symbol: str
    trade_id: int
    ts_event: int
    ts_recv: int
    price: Decimal
    qty: Decimal


def tick_id(venue: str, symbol: str, trade_id: int) -> str:
    """The deterministic id of a trade: venue + symbol + the venue's trade id."""
    return f"{venue}:{symbol}:{trade_id}"


class Signal(Event, frozen=True, tag="signal", omit_defaults=True):
    """The strategy's decision at the close of a bar; executed or vetoed later.

    ``notional`` and ``reason`` are optional (a strategy may leave them out, and
    then they are not encoded, so a signal without them encodes as before): the
    USD a BUY would like to spend instead of ``[execution] order_notional_usd``
    -- the risk caps still decide -- and a few words on why, quoted in a veto.
    """

    signal_id: str
    symbol: str
    side: Side
    ts_event: int
    ts_recv: int
    price: Decimal
    cause_id: str
    notional: Decimal | None = None
    reason: str = ""


class VetoReason(enum.StrEnum):
    """Why our own side said no to a signal (a *denial*, not a venue rejection)."""

    RISK_CAP = "RISK_CAP"
    STALE_DATA = "STALE_DATA"
    NO_POSITION = "NO_POSITION"
    HALTED = "HALTED"
    ZERO_QTY = "ZERO_QTY"
    """A BUY whose ``order_notional_usd`` rounds down to zero ``qty_step``s at the price."""
    INSUFFICIENT_CASH = "INSUFFICIENT_CASH"
    """SHADOW/PAPER with ``[execution] starting_cash``: a BUY (notional plus fee) beyond
    the cash not already committed to open BUY orders."""


class TradingState(enum.StrEnum):
    """ACTIVE: entries allowed. HALTED: the drawdown guard stopped new entries (exits allowed)."""

    ACTIVE = "ACTIVE"
    HALTED = "HALTED"


class Veto(Event, frozen=True, tag="veto"):
    """A signal that execution refused, with the reason and its numbers."""

    veto_id: str
    signal_id: str
    symbol: str
    reason: VetoReason
    detail: str
    ts_event: int


class OrderType(enum.StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class OrderState(enum.StrEnum):
    """States of the order lifecycle (see ``engine.core.orders`` for the table)."""

    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    DENIED = "DENIED"
    EXPIRED = "EXPIRED"


class Order(Event, frozen=True, tag="order"):
    """An order as submitted: what, how much, at what assumed or limit price."""

    order_id: str
    signal_id: str
    mode: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal
    ts_event: int


class OrderEvent(Event, frozen=True, tag="order_event"):
    """One transition of an order, with the quantities after it."""

    order_id: str
    seq: int
    state: OrderState
    ts_event: int
    reason: str
    filled_qty: Decimal
    leaves_qty: Decimal


class Fill(Event, frozen=True, tag="fill"):
    """A (possibly partial) execution. ``cash_delta + position_delta * price + fee == 0``."""

    fill_id: str
    order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    cash_delta: Decimal
    position_delta: Decimal
    ts_event: int


class RiskState(Event, frozen=True, tag="risk_state"):
    """The drawdown guard's state, persisted only when ``max_drawdown_usd`` is set.

    Written when the trading state changes (ACTIVE <-> HALTED) and whenever peak
    equity rises, so a restart resumes with the same peak and the same state.
    ``state_id`` is ``risk:<id of the tick or signal after which it was evaluated>``.
    """

    state_id: str
    trading_state: TradingState
    ts_event: int
    equity: Decimal
    peak_equity: Decimal
    max_drawdown_usd: Decimal
    reason: str


class FailureKind(enum.StrEnum):
    """What went wrong talking to a venue (the ``kind`` of a ``VenueFailure``)."""

    TIMEOUT = "TIMEOUT"
    """No answer in time: the outcome of a state-changing call is unknown."""
    NETWORK = "NETWORK"
    """The connection failed or dropped."""
    RATE_LIMITED = "RATE_LIMITED"
    """HTTP 429: slow down (the request was not executed)."""
    BANNED = "BANNED"
    """HTTP 418: IP banned for repeated rate-limit violations."""
    SERVER_ERROR = "SERVER_ERROR"
    """HTTP 5xx: the venue's problem; the outcome is unknown."""
    VENUE_ERROR = "VENUE_ERROR"
    """A 4xx with a venue error code other than an order rejection."""
    BAD_RESPONSE = "BAD_RESPONSE"
    """A response or stream message that did not decode as expected."""
    INCONSISTENT = "INCONSISTENT"
    """A venue report that contradicts what we know (overfill, unknown order)."""
    FEE_UNPRICED = "FEE_UNPRICED"
    """A commission charged in an asset we cannot value (recorded as fee 0)."""
    GAVE_UP = "GAVE_UP"
    """Retries exhausted; the order was given up (see its DENIED transition)."""


class VenueFailure(Event, frozen=True, tag="venue_failure"):
    """One failed interaction with a LIVE venue: logged *and* persisted (L4).

    A venue's "no" to an order is an order transition (REJECTED), not this.
    ``ts_event`` is local wall-clock ns (the failure is our own event; the venue
    gave no time for it), so ``failure_id`` -- ``vf:<operation>:<order id or
    ->:<ts_event>:<attempt>`` -- is unique but not reproducible, and the
    ``venue_failures`` table is not part of the digest.
    """

    failure_id: str
    order_id: str
    """Our order id, or ``""`` when the failure concerns no single order (the stream)."""
    operation: str
    """``new_order``, ``query_order``, ``cancel_order``, ``my_trades``, ``user_stream``, ..."""
    kind: FailureKind
    http_status: int
    """0 when there was no HTTP response."""
    code: int
    """The venue's error code, 0 when it gave none."""
    message: str
    attempt: int
    ts_event: int


Record = Tick | Signal | Veto | Order | OrderEvent | Fill | RiskState | VenueFailure
"""Everything the pipeline hands to persistence."""
