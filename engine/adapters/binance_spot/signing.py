"""Binance request signing and client order ids: pure functions, no I/O, no clock.

*Signed REST requests* (``TRADE`` / ``USER_DATA``): the parameters are URL-encoded
in the order given, ``recvWindow`` and ``timestamp`` are appended, and
``signature`` = hex HMAC-SHA256 of exactly that query string under the API
secret. Everything travels in the query string (also for POST/DELETE), so the
signed bytes are the bytes sent -- there is no body to concatenate.

*Signed WebSocket-API requests* (``userDataStream.subscribe.signature``): the
payload is ``key=value`` pairs of every parameter except ``signature``, sorted
by key and joined with ``&``.

*Client order ids*: Binance accepts ``^[.A-Z:/a-z0-9_-]{1,36}$``. Our order id
(``ord:<signal id>``) is used unchanged when it already matches -- the common
case, ``ord:sig:binance:BTCUSDT:<trade id>`` is 34 characters -- and otherwise
replaced by ``he-`` + 32 hex digits of its sha256. Never by substituting or
cutting characters: two different order ids must never share a client id,
because the client id is what stops a retried submit from doubling an order.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Final

CLIENT_ID_PATTERN: Final = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")
HASHED_PREFIX: Final = "he-"
HASHED_HEX_DIGITS: Final = 32
"""128 bits of sha256: collisions between our own order ids are not a practical concern."""

DEFAULT_RECV_WINDOW_MS: Final = 5_000
"""How long after ``timestamp`` Binance still accepts a signed request (its default)."""

Params = Sequence[tuple[str, str]]


def client_order_id(order_id: str) -> str:
    """The ``newClientOrderId`` for ``order_id``: deterministic, valid, collision-free."""
    if CLIENT_ID_PATTERN.fullmatch(order_id):
        return order_id
    digest = hashlib.sha256(order_id.encode("utf-8")).hexdigest()[:HASHED_HEX_DIGITS]
    return HASHED_PREFIX + digest


def decimal_param(value: Decimal) -> str:
    """A decimal as Binance wants it: plain notation (``0.00001``, never ``1E-5``)."""
    return format(value, "f")


def sign(secret: bytes, payload: str) -> str:
    """Hex HMAC-SHA256 of ``payload`` under ``secret``."""
    return hmac.new(secret, payload.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_query(params: Params, *, secret: bytes, timestamp_ms: int, recv_window_ms: int) -> str:
    """``params`` + ``recvWindow`` + ``timestamp``, URL-encoded, with ``signature`` last."""
    query = urllib.parse.urlencode(
        [*params, ("recvWindow", str(recv_window_ms)), ("timestamp", str(timestamp_ms))]
    )
    return f"{query}&signature={sign(secret, query)}"


def ws_signature_payload(params: Mapping[str, str]) -> str:
    """The WebSocket-API signing payload: ``key=value`` sorted by key, without ``signature``."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")


def ws_signed_params(params: Mapping[str, str], *, secret: bytes) -> dict[str, str]:
    return {**params, "signature": sign(secret, ws_signature_payload(params))}


def split_signature(query: str) -> tuple[str, str]:
    """``(signed part, signature)`` of a signed query string (what the venue checks)."""
    signed, sep, signature = query.rpartition("&signature=")
    if not sep:
        return query, ""
    return signed, signature
