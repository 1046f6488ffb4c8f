"""Coinbase Exchange ``matches`` channel: messages decoded straight into ticks.

The feed, after a subscribe message (``subscribe_message``), sends:

* ``subscriptions`` -- the acknowledgement: no tick;
* ``last_match``    -- the product's latest trade, once per product at subscribe
  time: a tick (a reconnect therefore resends a trade already seen; the
  duplicate filter in ingest drops it);
* ``match``         -- one trade: a tick keyed by ``product_id`` and ``trade_id``;
* ``error``         -- a refused subscription or a bad request: no tick, but not
  malformed either. ``decode_coinbase_error`` reads it and ``is_config_refusal``
  tells the shell which kind it is: a refusal of something we configured (an
  unknown product id, an invalid channel) cannot be fixed by reconnecting;
  anything else is the venue's transient trouble. The words alone decide nothing:
  only an ``error`` *answering the subscribe* can be such a refusal (the stream,
  ``engine.adapters.market.ws.stream``, knows which one that is); one mid-stream is always
  transient, whatever it says.

The ``ticker`` channel repeats the ``trade_id`` of a trade already delivered as
a ``match`` (every ticker in the shared real capture does). Ticks come from the
``matches`` channel only: a ``ticker`` never becomes a tick, so subscribing to
both cannot duplicate one. Everything else (``l2update``, ``snapshot``,
``heartbeat``, ``status``, ...) is skipped.

*Validation at the edge:* a trade message that is not JSON, lacks a field, has a
field of the wrong type, a price or size that is not an admissible decimal
(``engine.adapters.market.admission.parse_decimal``: strict ASCII syntax, within
``[admission.MIN_VALUE, admission.MAX_VALUE)`` and 12 decimals), a product id outside
``admission.SYMBOL_PATTERN``, a trade id or time beyond 64 bits, or a time
without a timezone raises ``MalformedMessage``; nothing untyped leaves this
module.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Final

import msgspec

from engine import logs
from engine.adapters.market.admission import Refusal, parse_decimal, parse_price, parse_symbol
from engine.adapters.market.decoding import MalformedMessage
from engine.core.events import Tick, tick_id

VENUE: Final = "coinbase"
DEFAULT_URL: Final = "wss://ws-feed.exchange.coinbase.com"
TRADE_CHANNEL: Final = "matches"

MAX_ID: Final = 2**63 - 1
"""Trade ids and times (in ns) must fit SQLite's signed 64-bit INTEGER."""

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)

AwareDatetime = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class _Trade(msgspec.Struct, frozen=True, tag_field="type"):
    """Fields shared by ``match`` and ``last_match`` (unknown fields are ignored:
    Coinbase adds fields over time and that must not break ingest)."""

    trade_id: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]
    product_id: str
    price: str
    size: str
    time: AwareDatetime
    side: str = ""
    sequence: int = 0


class Match(_Trade, frozen=True, tag="match"):
    pass


class LastMatch(_Trade, frozen=True, tag="last_match"):
    pass


class _Channel(msgspec.Struct, frozen=True):
    name: str
    product_ids: list[str] = []


class Subscriptions(msgspec.Struct, frozen=True, tag_field="type", tag="subscriptions"):
    channels: list[_Channel | str] = []


class Error(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    message: str = ""
    reason: str = ""


class _TypeOnly(msgspec.Struct, frozen=True):
    type: str


_decoder: Final = msgspec.json.Decoder(Match | LastMatch | Subscriptions | Error)
_type_decoder: Final = msgspec.json.Decoder(_TypeOnly)

_TRADE_TYPES: Final = frozenset({"match", "last_match"})
_CHECKED_TYPES: Final = frozenset({"match", "last_match", "subscriptions", "error"})
_DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
"""msgspec raises ``UnicodeDecodeError`` (not a ``DecodeError``) for invalid UTF-8 in a
string, and ``RecursionError`` for JSON nested too deep."""


def time_to_ns(when: dt.datetime) -> int:
    """Exact integer nanoseconds since the epoch (no float on the way)."""
    return ((when - _EPOCH) // _MICROSECOND) * 1000


def _message_type(raw: bytes, exc: Exception) -> str:
    try:
        return _type_decoder.decode(raw).type
    except _DECODE_ERRORS:
        raise MalformedMessage(f"coinbase: {exc}") from None


def decode_coinbase(raw: bytes, ts_recv_ns: int) -> Tick | None:
    """One Coinbase Exchange frame -> a tick (``match``/``last_match``) or ``None``.

    *Error handling:* raises ``MalformedMessage`` for a frame that is not a JSON
    object with a string ``type``, or a trade/ack message of the wrong shape.
    """
    try:
        msg = _decoder.decode(raw)
    except _DECODE_ERRORS as exc:
        kind = _message_type(raw, exc)
        if kind in _CHECKED_TYPES:
            raise MalformedMessage(f"coinbase {kind}: {exc}") from None
        return None  # ticker, l2update, heartbeat, ...: not a trade
    if not isinstance(msg, _Trade):
        return None
    price = parse_price(msg.price)
    qty = parse_decimal(msg.size)
    if price is None or qty is None:
        raise MalformedMessage(
            f"coinbase trade {msg.trade_id}: price {logs.sample(msg.price, 60)!r} / "
            f"size {logs.sample(msg.size, 60)!r} not an admissible decimal",
            Refusal.NUMBER,
        )
    symbol = parse_symbol(msg.product_id)
    if symbol is None:
        raise MalformedMessage(
            f"coinbase trade {msg.trade_id}: not a product id: "
            f"{logs.sample(msg.product_id, 60)!r}",
            Refusal.SYMBOL,
        )
    ts_event = time_to_ns(msg.time)
    if not 0 <= ts_event <= MAX_ID:  # SQLite INTEGER is signed 64-bit
        raise MalformedMessage(
            f"coinbase {symbol} trade {msg.trade_id}: time {msg.time} beyond 64-bit ns"
        )
    return Tick(
        event_id=tick_id(VENUE, symbol, msg.trade_id),
        venue=VENUE,
        symbol=symbol,
        trade_id=msg.trade_id,
        ts_event=ts_event,
        ts_recv=ts_recv_ns,
        price=price,
        qty=qty,
    )


def decode_coinbase_error(raw: bytes) -> str | None:
    """The text of an ``error`` message, ``None`` for any other frame (never raises)."""
    try:
        msg = _decoder.decode(raw)
    except _DECODE_ERRORS:
        return None
    if isinstance(msg, Error):
        return f"{msg.message} {msg.reason}".strip() or "error"
    return None


CONFIG_REFUSAL_MARKERS: Final = ("not a valid", "invalid", "delisted", "unknown product")
"""Words Coinbase uses when it refuses what the subscribe asked for
(``"Failed to subscribe" / "BTC-XYZ is not a valid product"``): the
configuration names something the venue does not have, and no restart fixes it."""


def is_config_refusal(error_text: str) -> bool:
    """Whether an ``error`` answering the subscribe refuses our configuration (by its words)."""
    lowered = error_text.lower()
    return any(marker in lowered for marker in CONFIG_REFUSAL_MARKERS)


def subscribe_message(
    product_ids: Sequence[str], channels: Sequence[str] = (TRADE_CHANNEL,)
) -> str:
    """The subscribe request Coinbase needs before it sends anything."""
    return msgspec.json.encode(
        {"type": "subscribe", "product_ids": list(product_ids), "channels": list(channels)}
    ).decode()


