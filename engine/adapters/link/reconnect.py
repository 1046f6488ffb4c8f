"""The one reconnect loop and the one connection session of every WebSocket the engine keeps.

The market feed (``engine.adapters.market.ws.stream``) and the LIVE user stream
(``engine.adapters.binance_spot.user_stream``) both run a ``Link``: connect
under a bounded handshake (``link.deadlines``), keep the connection alive
(``link.keepalive``: ping after ``keepalive_interval_s`` without a frame, a pong
missing for ``pong_timeout_s`` while no frame arrives is a lost connection),
close it bounded, judge what was lost (``link.failures``), and reconnect on the
seeded, jittered backoff schedule under the budget (``engine.adapters.backoff``:
``max_failures`` consecutive attempts that delivered nothing, or
``max_downtime_s`` without a delivery, end the run with exit 10). Every attempt,
connection, loss, reconnect and give-up is logged (``ws_connect``,
``ws_connected``, ``ws_connect_failed``, ``ws_disconnected``, ``ws_reconnect``,
``ws_give_up``, docs/ingest.md) and, when the stream has ``Counters``, counted.

What differs between the two streams is a small policy object (``LinkPolicy``):
what to send after connecting, how to read frames (the reader calls
``Link.delivered`` on what counts as delivered: an admitted tick, a confirmed
subscription), extra watchers of a session (the feed's silence watch), which
further exceptions mean "lost" and how a loss is worded, what happens after a
session ended (the user stream persists a ``VenueFailure``). Why one loop and
not two: docs/architecture.md "Reconnecting".

*Error handling:* network failures -- a malformed handshake reply included --
never escape a session; they become the reason for the next attempt. What the
policy raises that is not a loss (a refused configuration, the parse rate, a
closed channel, a bug) is raised only after the connection was closed
(bounded), so a slow close can neither swallow it nor delay it; the budget
raises ``NetworkBudgetExhausted``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import trio
import trio_websocket

from engine import logs
from engine.adapters.backoff import Backoff, BackoffPolicy, ReconnectBudget
from engine.adapters.link.deadlines import ConnectionDeadlines
from engine.adapters.link.failures import (
    CONNECTION_ERRORS,
    DISCONNECT_TIMEOUT_S,
    HandshakeTimeout,
    connection_failure,
    stray_cancel,
)
from engine.adapters.link.keepalive import Keepalive
from engine.adapters.link.session import LinkStats, Session
from engine.adapters.progress import Progress
from engine.counters import Counters
from engine.exits import NetworkBudgetExhausted

DEFAULT_MAX_MESSAGE_SIZE: Final = 2**20
"""trio-websocket's own default (1 MiB); the feed sets ``[ingest] max_message_size``."""

Watcher = Callable[[Session, trio.CancelScope], Awaitable[None]]
"""A task run beside the reader for each session; it ends the session by cancelling the scope."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSettings:
    """The numbers of one link: where, the bounds, the keepalive rule, the schedule, the budget.

    ``delivery`` and ``failures_key`` only word the give-up ("3 consecutive
    attempts without market data (max_reconnect_failures)").
    """

    url: str
    connect_timeout_s: float
    keepalive_interval_s: float
    pong_timeout_s: float
    backoff: BackoffPolicy
    max_failures: int
    max_downtime_s: float = math.inf
    message_queue_size: int = 1
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    delivery: str = "market data"
    failures_key: str = "max_reconnect_failures"

    @property
    def disconnect_timeout_s(self) -> float:
        """The bound on closing a connection: our close frame and the peer's answer."""
        return min(self.pong_timeout_s, DISCONNECT_TIMEOUT_S)


class LinkPolicy(Protocol):
    """What one stream decides on a ``Link`` (docs/architecture.md "Reconnecting")."""

    @property
    def name(self) -> str:
        """The stream in the give-up's message, e.g. ``binance feed``."""
        ...

    @property
    def lost_errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions out of ``opened``/``read`` that are a lost connection, not fatal."""
        ...

    def describe(self, exc: BaseException) -> str:
        """One lost connection's reason, in words."""
        ...

    async def opened(self, ws: trio_websocket.WebSocketConnection, session: Session) -> None:
        """What to send (and wait for) right after the handshake."""
        ...

    async def read(self, ws: trio_websocket.WebSocketConnection, session: Session) -> None:
        """Read frames until the connection ends (return, or raise a lost error)."""
        ...

    def watchers(self) -> Sequence[Watcher]:
        """Tasks to run beside the reader and the keepalive, per session."""
        ...

    def connected_fields(self) -> Mapping[str, object]:
        """Extra fields of ``ws_connected``."""
        ...

    def ended_fields(self) -> Mapping[str, object]:
        """Extra fields of ``ws_disconnected``."""
        ...

    async def ended(self, session: Session) -> None:
        """After each session, with its reason (``session.end_reason``) set."""
        ...


class _SessionOver(Exception):
    """Raised out of trio-websocket's block once our side of a session is done.

    Leaving the block with an error makes the library cancel its reader task;
    leaving it normally makes it wait for that task, which waits for the peer's
    TCP close -- forever, from a peer that broke the protocol and keeps the
    connection open. Our close frame is still sent first (bounded by
    ``disconnect_timeout``).
    """


class Link:
    """One WebSocket kept alive for a stream's whole run (see the module docstring).

    ``stats`` and ``progress`` may be the stream's own (it bumps and reads them
    too); ``counters`` gets ``connected``, ``backoff_ms`` and ``reconnects``.
    Pacing and timeouts use ``trio.current_time()``.
    """

    def __init__(
        self,
        settings: LinkSettings,
        policy: LinkPolicy,
        *,
        counters: Counters | None = None,
        stats: LinkStats | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.counters = counters
        self.stats = LinkStats() if stats is None else stats
        self.progress = Progress() if progress is None else progress
        self.backoff = Backoff(settings.backoff)
        self.budget = ReconnectBudget(
            max_failures=settings.max_failures,
            max_downtime_s=settings.max_downtime_s,
            delivery=settings.delivery,
            failures_key=settings.failures_key,
        )
        self.keepalive = Keepalive(
            interval_s=settings.keepalive_interval_s,
            pong_timeout_s=settings.pong_timeout_s,
            stats=self.stats,
            progress=self.progress,
        )
        self._lost = (*CONNECTION_ERRORS, *policy.lost_errors)

    def delivered(self, session: Session, now: float) -> None:
        """The session delivered at ``now``: it works, and the budget starts over.

        The reader calls it on its first delivery (at least); later deliveries
        may just set ``session.last_delivery``, which the loop books at the end.
        """
        session.last_delivery = now
        if session.healthy_since is None:
            session.healthy_since = now
        self.budget.delivered(now)

    def last_delivery(self) -> float:
        """When the link last delivered (or started)."""
        last = self.budget.last_data
        return trio.current_time() if last is None else last

    async def run(self) -> None:
        """Connect, serve, reconnect -- until cancelled, a fatal error, or the budget is spent.

        *Error handling:* raises ``NetworkBudgetExhausted`` (exit 10) and whatever
        the policy raised that is not a loss.
        """
        settings, stats, budget = self.settings, self.stats, self.budget
        last_reason = ""
        budget.start(trio.current_time())
        while True:
            if stats.attempts > 0:
                now = trio.current_time()
                spent = budget.exhausted(now)
                if spent is not None:
                    logs.error(
                        "ws_give_up",
                        url=settings.url,
                        reason=spent,
                        last_error=last_reason,
                        attempts=stats.attempts,
                    )
                    raise NetworkBudgetExhausted(
                        f"{self.policy.name}: {spent}; last error: {last_reason}"
                    )
                remaining = settings.max_downtime_s - budget.downtime(now)
                delay = min(self.backoff.next_delay(), max(remaining, 0.0))
                if self.counters is not None:
                    self.counters.backoff_ms = round(delay * 1000)
                    self.counters.reconnects += 1
                logs.warning(
                    "ws_reconnect",
                    attempt=stats.attempts + 1,
                    delay_s=round(delay, 3),
                    reason=last_reason,
                    failures=budget.failures,
                    downtime_s=round(budget.downtime(now), 3),
                )
                self.progress.bump()
                await trio.sleep(delay)
            else:
                logs.info("ws_connect", url=settings.url)
            stats.attempts += 1
            session = await self._run_session()
            now = trio.current_time()
            if session.last_delivery is None:
                budget.failed()
            else:
                budget.delivered(session.last_delivery)
            self.backoff.connection_ended(session.healthy_since, now)
            last_reason = session.end_reason or "closed"
            await self.policy.ended(session)

    def _reason(self, exc: BaseException) -> str | None:
        return connection_failure(exc, self._lost, self.policy.describe)

    async def _run_session(self) -> Session:
        """One connection from handshake to loss; returns it with why it ended."""
        now = trio.current_time()
        session = Session(opened_at=now, last_rx=now, attempt=self.stats.attempts)
        settings, policy = self.settings, self.policy
        fatal: Exception | None = None
        bounded = ConnectionDeadlines(settings.connect_timeout_s, settings.disconnect_timeout_s)
        with bounded.scope:
            try:
                async with trio_websocket.open_websocket_url(
                    settings.url,
                    message_queue_size=settings.message_queue_size,
                    max_message_size=settings.max_message_size,
                    connect_timeout=settings.connect_timeout_s,
                    disconnect_timeout=settings.disconnect_timeout_s,
                ) as ws:
                    bounded.opened()
                    self._on_connected(session)
                    async with trio.open_nursery() as nursery:
                        scope = nursery.cancel_scope
                        nursery.start_soon(self.keepalive.run, ws, session, scope)
                        for watch in policy.watchers():
                            nursery.start_soon(watch, session, scope)
                        try:
                            await policy.opened(ws, session)
                            await policy.read(ws, session)
                        except Exception as exc:  # fatal: raised after the close, not in a group
                            lost = self._reason(exc)  # e.g. closed while subscribing
                            if lost is None:
                                fatal = exc
                            session.end_reason = session.end_reason or lost
                        scope.cancel()
                    bounded.closing()
                    raise _SessionOver
            except _SessionOver as over:
                hidden = over.__context__  # what the library's own tasks raised meanwhile
                if hidden is not None and not isinstance(hidden, trio.Cancelled):
                    session.teardown_error = connection_failure(hidden) or repr(hidden)
            except BaseException as exc:
                reason = self._reason(exc) or stray_cancel(exc)
                if reason is None:
                    raise
                if session.end_reason is None:
                    session.end_reason = reason
                else:
                    session.teardown_error = reason
        if bounded.handshake_timed_out:
            late = HandshakeTimeout(f"no handshake reply within {settings.connect_timeout_s:g} s")
            session.end_reason = policy.describe(late)
        elif bounded.close_timed_out:
            self.stats.teardown_timeouts += 1
            session.teardown_error = (
                f"close not finished within {settings.disconnect_timeout_s:g}s:"
                " connection abandoned"
            )
            session.end_reason = session.end_reason or "closed"
        self._on_ended(session)
        if fatal is not None:
            raise fatal
        return session

    def _on_connected(self, session: Session) -> None:
        session.connected = True
        self.stats.sessions += 1
        if self.counters is not None:
            self.counters.connected = 1
            self.counters.backoff_ms = 0
        logs.info(
            "ws_connected",
            url=self.settings.url,
            attempt=self.stats.attempts,
            **self.policy.connected_fields(),
        )
        self.progress.bump()

    def _on_ended(self, session: Session) -> None:
        if self.counters is not None:
            self.counters.connected = 0
        if session.connected:
            logs.warning(
                "ws_disconnected",
                reason=session.end_reason or "closed",
                teardown_error=session.teardown_error,
                up_s=round(trio.current_time() - session.opened_at, 3),
                frames=session.frames,
                worked=session.healthy_since is not None,
                **self.policy.ended_fields(),
            )
        else:
            logs.warning(
                "ws_connect_failed",
                url=self.settings.url,
                attempt=self.stats.attempts,
                reason=session.end_reason or "unknown",
            )
        self.progress.bump()
