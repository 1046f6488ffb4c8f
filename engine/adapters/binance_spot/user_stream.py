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

*One link.* Connecting, keepalive, the bounded handshake and close, what
counts as lost, the backoff and the budget, and the log lines of a reconnect
(``ws_connect`` ... ``ws_give_up``, bound with ``link=user_stream``) are the one
link the market feed runs too (``engine.adapters.link.reconnect``); this module
is its policy for the user stream (``_UserStream``): after connecting, subscribe
and wait for the answer, reconcile, book; *delivered* is the confirmed
subscription; no silence watch and no downtime limit; beyond the link's lost
connections a refused subscription, a missing answer and a malformed frame are
losses too; after every session the loss is a persisted ``VenueFailure`` (its
message holds our own words -- a refused subscription with the venue's code and
message -- or exception type names, never an exception's text, which may echo
what we sent). The keepalive is the link's rule with this
stream's numbers (``StreamPolicy``): ping after ``keepalive_s`` without a frame,
a pong missing for ``pong_timeout_s`` while no frame arrives is a lost
connection; the venue also pings every 20 s and trio-websocket answers. Why one
link: docs/architecture.md "Reconnecting".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec
import trio
from trio_websocket import WebSocketConnection

from engine import logs
from engine.adapters.backoff import DEFAULT_POLICY, BackoffPolicy
from engine.adapters.binance_spot.credentials import Credentials
from engine.adapters.binance_spot.execution import BinanceExecution
from engine.adapters.binance_spot.signing import ws_signed_params
from engine.adapters.binance_spot.wire import (
    event_head_decoder,
    execution_report_decoder,
    stream_decoder,
)
from engine.adapters.link.failures import HandshakeTimeout
from engine.adapters.link.reconnect import Link, LinkSettings, Watcher
from engine.adapters.link.session import Session
from engine.core.events import FailureKind, Record
from engine.exits import ConfigError

SUBSCRIBE_METHOD: Final = "userDataStream.subscribe.signature"
FATAL_CODES: Final = frozenset({-2014, -2015, -1022})
"""API-key format invalid, key/IP/permissions rejected, bad signature: exit 12."""
MESSAGE_QUEUE: Final = 64
"""trio-websocket's receive queue; events are few, this keeps pings answered while we book."""


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """The user stream's numbers for its link (``LinkSettings``) and its subscribe."""

    connect_timeout_s: float = 10.0
    subscribe_timeout_s: float = 10.0
    keepalive_s: float = 30.0
    pong_timeout_s: float = 10.0
    backoff: BackoffPolicy = DEFAULT_POLICY
    max_failures: int = 10
    """Consecutive attempts without a confirmed subscription before exit 10."""

    def settings(self, url: str) -> LinkSettings:
        return LinkSettings(
            url=url,
            connect_timeout_s=self.connect_timeout_s,
            keepalive_interval_s=self.keepalive_s,
            pong_timeout_s=self.pong_timeout_s,
            backoff=self.backoff,
            max_failures=self.max_failures,
            message_queue_size=MESSAGE_QUEUE,
            delivery="a confirmed subscription",
            failures_key="max_failures",
        )


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
    session: Session,
    credentials: Credentials,
    wall_ms: Callable[[], int],
    policy: StreamPolicy,
) -> None:
    request_id = f"sub-{session.attempt}"
    await ws.send_message(subscribe_request(credentials, wall_ms(), request_id))
    with trio.fail_after(policy.subscribe_timeout_s):
        while True:
            message = stream_decoder.decode(await _frame(ws, session))
            if message.id == request_id:
                break
    if message.status == 200:
        return
    code = message.error.code if message.error else 0
    text = message.error.msg if message.error else f"status {message.status}"
    if code in FATAL_CODES or message.status in (401, 403):
        raise ConfigError(f"binance user stream refused the credentials: {code} {text}")
    raise StreamFailure(f"subscription refused: {code} {text}")


async def _frame(ws: WebSocketConnection, session: Session) -> str | bytes:
    """The next frame, stamped into the session (the link's keepalive reads ``last_rx``)."""
    message = await ws.get_message()
    session.last_rx = trio.current_time()
    session.frames += 1
    return message


_LOST: Final = (
    StreamFailure,
    trio.TooSlowError,
    msgspec.DecodeError,
    # msgspec raises these instead of DecodeError for JSON nested too deep and for
    # invalid UTF-8 (a binary frame): a malformed frame, never a crash (docs/contract.md L3).
    RecursionError,
    UnicodeDecodeError,
)
"""Losses of this stream beyond the link's lost connections (``link.failures``)."""


class _UserStream:
    """The user stream's ``LinkPolicy`` (see the module docstring)."""

    name = "binance user stream"
    lost_errors = _LOST

    def __init__(
        self,
        execution: BinanceExecution,
        send: trio.MemorySendChannel[list[Record]],
        *,
        url: str,
        credentials: Credentials,
        wall_ms: Callable[[], int],
        policy: StreamPolicy,
        task_status: trio.TaskStatus[None],
    ) -> None:
        self._execution = execution
        self._send = send
        self._credentials = credentials
        self._wall_ms = wall_ms
        self._policy = policy
        self._ready: trio.TaskStatus[None] | None = task_status
        self.link = Link(policy.settings(url), self)

    def describe(self, exc: BaseException) -> str:
        """Our own words, or the exception's type name (its text may echo the venue)."""
        return str(exc) if isinstance(exc, StreamFailure | HandshakeTimeout) else type(exc).__name__

    async def opened(self, ws: WebSocketConnection, session: Session) -> None:
        """Subscribe, *then* reconcile (events sent while we were away are not replayed)."""
        await _subscribe(ws, session, self._credentials, self._wall_ms, self._policy)
        self.link.delivered(session, trio.current_time())
        logs.info("live_user_stream_subscribed", attempt=session.attempt)
        records = await self._execution.reconcile()
        if records:
            await self._send.send(records)
        if self._ready is not None:
            self._ready.started()
            self._ready = None

    async def read(self, ws: WebSocketConnection, session: Session) -> None:
        """Book each ``executionReport``; every record is awaited into ``send`` (S6)."""
        while True:
            message = stream_decoder.decode(await _frame(ws, session))
            if not len(message.event):
                continue
            head = event_head_decoder.decode(message.event)
            if head.e == "executionReport":
                report = execution_report_decoder.decode(message.event)
                records = await self._execution.on_execution_report(report)
                if records:
                    await self._send.send(records)
            elif head.e == "eventStreamTerminated":
                raise StreamFailure("venue terminated the subscription")

    def watchers(self) -> Sequence[Watcher]:
        return ()  # an account without orders may rightly be silent for hours

    def connected_fields(self) -> Mapping[str, object]:
        return {}

    def ended_fields(self) -> Mapping[str, object]:
        return {}

    async def ended(self, session: Session) -> None:
        """Every lost session is a persisted ``VenueFailure`` (L4)."""
        record = self._execution.failure(
            "user_stream",
            "",
            FailureKind.NETWORK,
            f"user stream lost: {session.end_reason or 'closed'}",
            attempt=session.attempt,
        )
        await self._send.send([record])


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

    *Error handling:* ``NetworkBudgetExhausted`` (exit 10) once ``max_failures``
    consecutive attempts got no confirmed subscription; ``ConfigError`` (exit 12)
    when the venue refuses the key or the signature.
    """
    stream = _UserStream(
        execution, send, url=url, credentials=credentials, wall_ms=wall_ms, policy=policy,
        task_status=task_status,
    )  # fmt: skip
    with logs.bind(link="user_stream"):
        await stream.link.run()
