"""The user-data stream: fills and order updates pushed by the venue, reconciled on reconnect.

Binance retired the REST ``listenKey`` for spot; the stream is a subscription on
the WebSocket API (``[live] ws_url``, e.g. ``wss://ws-api.binance.com:443/ws-api/v3``):
``userDataStream.subscribe.signature`` with ``apiKey``, ``timestamp`` and an
HMAC signature over the sorted parameters. Events then arrive as
``{"subscriptionId": n, "event": {"e": "executionReport", ...}}``.

The loop: connect, subscribe, *then* ``reconcile`` (events sent while we were
away are not replayed by the venue, so every open order is queried), then book
each ``executionReport`` as it comes. Every record produced goes to ``send``
(awaited: these records must never be dropped, S6). A lost connection is
recorded as a failure and retried with the seeded backoff
(``engine.adapters.backoff``, the same schedule as the market feed's);
``max_failures`` consecutive attempts that delivered nothing end the task with
``NetworkBudgetExhausted`` (exit 10). What a user stream *delivers* is a
confirmed subscription (an account without orders may send no event for
hours): that, and only that, restarts the count. A subscription the venue
refuses for the key or the signature is a configuration problem no restart
fixes: ``ConfigError`` (exit 12).

*Keepalive.* The venue pings every 20 s and trio-websocket answers. We also
ping after ``keepalive_s`` and treat a pong missing for ``pong_timeout_s`` as a
dead connection. A malformed reply to the opening handshake (h11/wsproto
protocol errors), or none within ``connect_timeout_s``, is a lost connection like
any other, not a crash or a hang; the close is bounded as the feed's is
(``ws.failures.DISCONNECT_TIMEOUT_S``), and which exceptions mean "lost" is the
feed's list (``ws.failures.CONNECTION_ERRORS``) plus this stream's own
(a refused subscription, a missing pong, a malformed frame). Why this loop and the
feed's are two loops sharing these pieces: ``docs/architecture.md``
("Reconnecting").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from engine import logs
from engine.adapters.backoff import DEFAULT_POLICY, Backoff, BackoffPolicy, ReconnectBudget
from engine.adapters.binance_spot.credentials import Credentials
from engine.adapters.binance_spot.execution import BinanceExecution
from engine.adapters.binance_spot.signing import ws_signed_params
from engine.adapters.binance_spot.wire import (
    event_head_decoder,
    execution_report_decoder,
    stream_decoder,
)
from engine.adapters.link.deadlines import ConnectionDeadlines
from engine.adapters.link.failures import CONNECTION_ERRORS, DISCONNECT_TIMEOUT_S
from engine.core.events import FailureKind, Record
from engine.exits import ConfigError, NetworkBudgetExhausted

SUBSCRIBE_METHOD: Final = "userDataStream.subscribe.signature"
FATAL_CODES: Final = frozenset({-2014, -2015, -1022})
"""API-key format invalid, key/IP/permissions rejected, bad signature: exit 12."""
MESSAGE_QUEUE: Final = 64
"""trio-websocket's receive queue; events are few, this keeps pings answered while we book."""


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    connect_timeout_s: float = 10.0
    subscribe_timeout_s: float = 10.0
    keepalive_s: float = 30.0
    pong_timeout_s: float = 10.0
    backoff: BackoffPolicy = DEFAULT_POLICY
    max_failures: int = 10
    """Consecutive failed connection attempts before giving up with exit 10."""

    @property
    def disconnect_timeout_s(self) -> float:
        """The bound on closing a connection (as the market feed's)."""
        return min(self.pong_timeout_s, DISCONNECT_TIMEOUT_S)


class StreamFailure(Exception):
    """Raised inside the loop for a connection that must be re-established."""


def subscribe_request(credentials: Credentials, timestamp_ms: int, request_id: str) -> str:
    params = ws_signed_params(
        {"apiKey": credentials.api_key, "timestamp": str(timestamp_ms)},
        secret=credentials.secret.reveal(),
    )
    body = {"id": request_id, "method": SUBSCRIBE_METHOD, "params": params}
    return msgspec.json.encode(body).decode()


async def _subscribe(
    ws: WebSocketConnection,
    credentials: Credentials,
    wall_ms: Callable[[], int],
    request_id: str,
    policy: StreamPolicy,
) -> None:
    await ws.send_message(subscribe_request(credentials, wall_ms(), request_id))
    with trio.fail_after(policy.subscribe_timeout_s):
        while True:
            message = stream_decoder.decode(await ws.get_message())
            if message.id == request_id:
                break
    if message.status == 200:
        return
    code = message.error.code if message.error else 0
    text = message.error.msg if message.error else f"status {message.status}"
    if code in FATAL_CODES or message.status in (401, 403):
        raise ConfigError(f"binance user stream refused the credentials: {code} {text}")
    raise StreamFailure(f"subscription refused: {code} {text}")


async def _keepalive(ws: WebSocketConnection, policy: StreamPolicy) -> None:
    while True:
        await trio.sleep(policy.keepalive_s)
        try:
            with trio.fail_after(policy.pong_timeout_s):
                await ws.ping()
        except trio.TooSlowError:
            raise StreamFailure(f"no pong within {policy.pong_timeout_s:g} s") from None


async def run_user_stream(
    execution: BinanceExecution,
    send: trio.MemorySendChannel[list[Record]],
    *,
    url: str,
    credentials: Credentials,
    wall_ms: Callable[[], int],
    policy: StreamPolicy = StreamPolicy(),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep the user stream subscribed and book what it says (see module docstring).

    ``task_status.started()`` fires after the first subscription and its
    reconciliation, so the caller knows the venue's view is in the book.
    """
    backoff = Backoff(policy.backoff)
    budget = ReconnectBudget(max_failures=policy.max_failures, max_downtime_s=math.inf)
    ready: trio.TaskStatus[None] | None = task_status
    for attempt in itertools.count(1):
        subscribed_at: float | None = None
        reason = ""
        try:
            connecting = ConnectionDeadlines(policy.connect_timeout_s, policy.disconnect_timeout_s)
            with connecting.scope:
                async with open_websocket_url(
                    url,
                    message_queue_size=MESSAGE_QUEUE,
                    connect_timeout=policy.connect_timeout_s,
                    disconnect_timeout=policy.disconnect_timeout_s,
                ) as ws:
                    connecting.opened()
                    await _subscribe(ws, credentials, wall_ms, f"sub-{attempt}", policy)
                    subscribed_at = trio.current_time()
                    budget.delivered(subscribed_at)
                    logs.info("live_user_stream_subscribed", attempt=attempt)
                    records = await execution.reconcile()
                    if records:
                        await send.send(records)
                    if ready is not None:
                        ready.started()
                        ready = None
                    await _read(execution, send, ws, policy)
            if connecting.handshake_timed_out:
                raise StreamFailure(f"no handshake reply within {policy.connect_timeout_s:g} s")
        except* _LOST as group:
            reason = "; ".join(_describe(e) for e in _leaves(group))
        budget.failed()  # a lost subscription counts too: it restarts the count at one
        record = execution.failure(
            "user_stream", "", FailureKind.NETWORK, f"user stream lost: {reason}", attempt=attempt
        )
        await send.send([record])
        if budget.exhausted(trio.current_time()) is not None:
            raise NetworkBudgetExhausted(
                f"binance user stream: {budget.failures} consecutive failed connections"
            )
        backoff.connection_ended(subscribed_at, trio.current_time())
        await trio.sleep(backoff.next_delay())


_LOST: Final = (
    *CONNECTION_ERRORS,
    StreamFailure,
    trio.TooSlowError,
    msgspec.DecodeError,
    # msgspec raises these instead of DecodeError for JSON nested too deep and for
    # invalid UTF-8 (a binary frame): a malformed frame, never a crash (docs/contract.md L3).
    RecursionError,
    UnicodeDecodeError,
)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, StreamFailure) else type(exc).__name__


async def _read(
    execution: BinanceExecution,
    send: trio.MemorySendChannel[list[Record]],
    ws: WebSocketConnection,
    policy: StreamPolicy,
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_keepalive, ws, policy)
        while True:
            message = stream_decoder.decode(await ws.get_message())
            if not len(message.event):
                continue
            head = event_head_decoder.decode(message.event)
            if head.e == "executionReport":
                report = execution_report_decoder.decode(message.event)
                records = await execution.on_execution_report(report)
                if records:
                    await send.send(records)
            elif head.e == "eventStreamTerminated":
                raise StreamFailure("venue terminated the subscription")
