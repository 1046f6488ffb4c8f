"""Binance spot REST: one signed HTTP call per method, every failure classified.

This layer does not retry: ``engine.adapters.binance_spot.execution`` decides what may be
retried and when (a new order may only be re-sent after the venue was asked
whether it already has it). Each call either returns the decoded answer or
raises ``VenueCallError`` saying what happened and -- the question that matters
for a state-changing call -- whether the request may have been executed
(``outcome_unknown``).

==========================================  ===============  ================
what happened                               kind             outcome unknown
==========================================  ===============  ================
connect failed / connect timed out          NETWORK/TIMEOUT  no (never sent)
sent, then timeout / connection dropped     TIMEOUT/NETWORK  **yes**
HTTP 429 (rate limit)                       RATE_LIMITED     no (not executed)
HTTP 418 (IP ban)                           BANNED           no
HTTP 5xx                                    SERVER_ERROR     **yes** (Binance
                                                             says: unknown)
HTTP 4xx with ``{"code", "msg"}``           VENUE_ERROR      no (refused)
2xx that does not decode                    BAD_RESPONSE     **yes**
==========================================  ===============  ================

*Transport.* ``httpx.AsyncClient`` runs on Trio through httpcore's Trio backend
(chosen automatically under ``trio.run``); every call is additionally bounded
by ``trio.fail_after`` so no request can outlive ``timeout_s`` by much.

*Secrets.* The key travels in the ``X-MBX-APIKEY`` header, the secret only
signs; neither is ever put in an exception message (URLs, which carry the
signature, are never quoted either).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import httpx
import msgspec
import trio

from engine.adapters.binance_spot.credentials import Credentials
from engine.adapters.binance_spot.signing import (
    DEFAULT_RECV_WINDOW_MS,
    Params,
    decimal_param,
    signed_query,
)
from engine.adapters.binance_spot.wire import (
    VenueOrder,
    VenueTrade,
    error_decoder,
    order_decoder,
    trades_decoder,
)
from engine.core.events import FailureKind, Order, OrderType

ORDER_PATH: Final = "/api/v3/order"
MY_TRADES_PATH: Final = "/api/v3/myTrades"
API_KEY_HEADER: Final = "X-MBX-APIKEY"

ORDER_NOT_FOUND: Final = -2013
"""``Order does not exist.`` -- the answer to a query for an order the venue never got."""
UNKNOWN_ORDER_CANCEL: Final = -2011
"""``Unknown order sent.`` -- a cancel for an order the venue does not have (open)."""

DEFAULT_TIMEOUT_S: Final = 10.0
"""Per-request bound (connect + write + read). Beyond it a placement's outcome is unknown."""
GUARD_SLACK_S: Final = 1.0
"""``trio.fail_after`` allowance on top of httpx's own timeout (it should never be needed)."""
MESSAGE_CHARS: Final = 200


class VenueCallError(Exception):
    """Raised by ``BinanceRest`` for any call that did not return a usable answer."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        outcome_unknown: bool,
        http_status: int = 0,
        code: int = 0,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.outcome_unknown = outcome_unknown
        self.http_status = http_status
        self.code = code
        self.retry_after_s = retry_after_s


_DECODE_ERRORS: Final = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)
"""What decoding a body can raise: msgspec raises ``RecursionError`` for JSON nested
too deep and ``UnicodeDecodeError`` for invalid UTF-8, not ``DecodeError``."""


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def classify_response(response: httpx.Response) -> VenueCallError | None:
    """``None`` for a 2xx; otherwise the error it means (see the module table)."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = response.content
    try:
        err = error_decoder.decode(body)
        code, msg = err.code, err.msg[:MESSAGE_CHARS]
    except _DECODE_ERRORS:
        code, msg = 0, f"HTTP {status} without a venue error body"
    if status == 429:
        return VenueCallError(
            FailureKind.RATE_LIMITED, f"429 rate limited: {msg}", outcome_unknown=False,
            http_status=status, code=code, retry_after_s=_retry_after(response),
        )  # fmt: skip
    if status == 418:
        return VenueCallError(
            FailureKind.BANNED, f"418 IP banned: {msg}", outcome_unknown=False,
            http_status=status, code=code, retry_after_s=_retry_after(response),
        )  # fmt: skip
    if status >= 500:
        return VenueCallError(
            FailureKind.SERVER_ERROR, f"{status}: {msg}", outcome_unknown=True,
            http_status=status, code=code,
        )  # fmt: skip
    return VenueCallError(
        FailureKind.VENUE_ERROR, msg, outcome_unknown=False, http_status=status, code=code
    )


def classify_transport(exc: Exception) -> VenueCallError:
    """A transport exception as a ``VenueCallError`` (only the exception's type is quoted)."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return VenueCallError(
            FailureKind.TIMEOUT, f"connect timeout ({name})", outcome_unknown=False
        )
    if isinstance(exc, httpx.ConnectError):
        return VenueCallError(
            FailureKind.NETWORK, f"connect failed ({name})", outcome_unknown=False
        )
    if isinstance(exc, httpx.TimeoutException | trio.TooSlowError):
        return VenueCallError(
            FailureKind.TIMEOUT, f"no answer in time ({name})", outcome_unknown=True
        )
    return VenueCallError(FailureKind.NETWORK, f"connection failed ({name})", outcome_unknown=True)


def new_order_params(order: Order, client_id: str) -> list[tuple[str, str]]:
    params = [
        ("symbol", order.symbol),
        ("side", str(order.side)),
        ("type", str(order.order_type)),
        ("quantity", decimal_param(order.qty)),
    ]
    if order.order_type is OrderType.LIMIT:
        params += [("timeInForce", "GTC"), ("price", decimal_param(order.price))]
    params += [("newClientOrderId", client_id), ("newOrderRespType", "FULL")]
    return params


class BinanceRest:
    """Signed calls to the Binance spot REST API (see module docstring).

    *Resource handling:* the ``httpx.AsyncClient`` is the caller's; this class
    never closes it.
    """

    def __init__(
        self,
        *,
        base_url: str,
        credentials: Credentials,
        client: httpx.AsyncClient,
        wall_ms: Callable[[], int],
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._credentials = credentials
        self._client = client
        self._wall_ms = wall_ms
        self._recv_window_ms = recv_window_ms
        self._timeout = httpx.Timeout(timeout_s)
        self._guard_s = timeout_s + GUARD_SLACK_S

    async def _signed(self, method: str, path: str, params: Params) -> bytes:
        query = signed_query(
            params,
            secret=self._credentials.secret.reveal(),
            timestamp_ms=self._wall_ms(),
            recv_window_ms=self._recv_window_ms,
        )
        try:
            with trio.fail_after(self._guard_s):
                response = await self._client.request(
                    method,
                    f"{self._base}{path}?{query}",
                    headers={API_KEY_HEADER: self._credentials.api_key},
                    timeout=self._timeout,
                )
        except (httpx.HTTPError, trio.TooSlowError, OSError) as exc:
            raise classify_transport(exc) from None
        error = classify_response(response)
        if error is not None:
            error.message = self._credentials.redact(error.message)
            raise error
        return response.content

    def _decode_order(self, body: bytes, *, unknown: bool) -> VenueOrder:
        try:
            return order_decoder.decode(body)
        except _DECODE_ERRORS as exc:
            raise VenueCallError(
                FailureKind.BAD_RESPONSE, f"order response: {exc}"[:MESSAGE_CHARS],
                outcome_unknown=unknown,
            ) from None  # fmt: skip

    async def new_order(self, order: Order, client_id: str) -> VenueOrder:
        """``POST /api/v3/order`` (``newOrderRespType=FULL``: the fills come back too)."""
        body = await self._signed("POST", ORDER_PATH, new_order_params(order, client_id))
        return self._decode_order(body, unknown=True)

    async def query_order(self, symbol: str, client_id: str) -> VenueOrder | None:
        """``GET /api/v3/order`` by client id; ``None`` when the venue has no such order."""
        try:
            body = await self._signed(
                "GET", ORDER_PATH, [("symbol", symbol), ("origClientOrderId", client_id)]
            )
        except VenueCallError as exc:
            if exc.kind is FailureKind.VENUE_ERROR and exc.code == ORDER_NOT_FOUND:
                return None
            raise
        return self._decode_order(body, unknown=False)

    async def cancel_order(self, symbol: str, client_id: str) -> VenueOrder:
        """``DELETE /api/v3/order`` by client id."""
        body = await self._signed(
            "DELETE", ORDER_PATH, [("symbol", symbol), ("origClientOrderId", client_id)]
        )
        return self._decode_order(body, unknown=True)

    async def my_trades(self, symbol: str, venue_order_id: int) -> list[VenueTrade]:
        """``GET /api/v3/myTrades`` of one order: the exact fills, for reconciliation."""
        body = await self._signed(
            "GET", MY_TRADES_PATH, [("symbol", symbol), ("orderId", str(venue_order_id))]
        )
        try:
            return trades_decoder.decode(body)
        except _DECODE_ERRORS as exc:
            raise VenueCallError(
                FailureKind.BAD_RESPONSE, f"myTrades: {exc}"[:MESSAGE_CHARS], outcome_unknown=False
            ) from None
