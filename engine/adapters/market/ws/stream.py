"""The exchange WebSocket source of the ``MarketDataStream`` port.

One ``WebSocketStream`` keeps one venue connection alive for the whole run and
turns its frames into ticks. Per connection ("session") three things run:

* **the reader** reads the socket continuously. trio-websocket buffers only one
  message (``WS_MESSAGE_QUEUE``) and stops reading the socket while it sits
  unread, so nothing slow may sit between ``get_message`` and the next call:
  each frame is stamped (``ts_recv``), recorded (optional), decoded and
  filtered for duplicates (``ws.intake``) and offered, without waiting, to
  a bounded list of at most ``LIVE_PENDING_TICKS`` pending ticks that a
  forwarder task moves into the tick channel (``ws.forwarder``; when it is
  full the newest tick is dropped, docs/contract.md S6). The reader never waits for the
  strategy or the disk.
* **the keepalive** pings after ``keepalive_interval_s`` without a frame and
  forces a reconnect when no pong comes within ``pong_timeout_s`` (S4,
  ``ws.keepalive``).
* **the silence watch** ends a connection that delivers no admitted tick --
  however many pongs, acks or heartbeats it sends (``ws.silence``).
* **the recorder** (``[ingest] record_path``) appends every frame to a capture
  file through a bounded, non-blocking writer (``engine.adapters.market.recorder``).

Around the sessions, the reconnect loop (S3): exponential backoff with seeded
jitter (``engine.adapters.backoff``), reset once a connection stayed healthy;
the budget -- ``max_reconnect_failures`` consecutive attempts that delivered no
tick, or ``max_downtime_s`` without an admitted tick -- ends the run with
``NetworkBudgetExhausted`` (exit 10). A connection is healthy only once it
delivered market data (an admitted tick); nothing else resets the budget.
Every attempt, success and give-up is logged with its delay and reason. URLs
and subscribe messages per venue are in ``ws.endpoints``; which exceptions
count as a lost connection, in ``ws.failures``.

*Every wait on the network is bounded:* the handshake by ``connect_timeout_s`` (our
own scope: trio-websocket's timeout raises, then waits for its reader task, which
waits forever for a peer that accepted TCP and never answers the upgrade);
each receive by the keepalive (``keepalive_interval_s + pong_timeout_s``
without a frame or pong) and by the silence watch; the close -- our close frame
and the peer's answer -- by ``min(pong_timeout_s, DISCONNECT_TIMEOUT_S)``. A
session leaves trio-websocket's block by raising (``_SessionOver``), so the
library cancels its reader task instead of waiting for the peer's TCP close
(which a peer that violated the protocol and keeps TCP open never sends: the
stall of issue 10); the same bound on the whole teardown is a backstop.

*Error handling:* network failures -- a malformed handshake reply included --
never escape a session; they become a reason for the next attempt, and so does
a venue ``error`` message. Only the budget (10), the parse rate (11), a venue
refusing the configured symbols *in answer to the subscribe* (12), a closed
tick channel or a bug leave ``stream``.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import trio
import trio_websocket

from engine import logs
from engine.adapters.backoff import HEALTHY_AFTER_S, Backoff, BackoffPolicy, ReconnectBudget
from engine.adapters.market.decoding import Decoder, MalformedMessage
from engine.adapters.market.dedup import TradeDedup
from engine.adapters.market.progress import Progress
from engine.adapters.market.recorder import CaptureRecorder, open_capture_recorder
from engine.adapters.market.venues import decoder_for
from engine.adapters.market.ws.deadlines import ConnectionDeadlines
from engine.adapters.market.ws.endpoints import feed_url, subscribe_frame
from engine.adapters.market.ws.failures import (
    DISCONNECT_TIMEOUT_S,
    close_text,
    connection_failure,
    stray_cancel,
)
from engine.adapters.market.ws.forwarder import TickForwarder
from engine.adapters.market.ws.intake import FrameIntake, VenueErrorFrame
from engine.adapters.market.ws.keepalive import Keepalive
from engine.adapters.market.ws.session import LinkStats, Session
from engine.adapters.market.ws.silence import SilenceWatch
from engine.config.schema import IngestSection
from engine.counters import Counters
from engine.exits import ConfigError, NetworkBudgetExhausted
from engine.ports import TickBatch

WS_MESSAGE_QUEUE: Final = 1
"""trio-websocket's own buffer. Kept at one on purpose: our reader never stops
reading, so a deeper library queue would only add latency, not absorb bursts."""

LIVE_PENDING_TICKS: Final = 1_000
"""Ticks read but not yet in the tick channel. Overload policy: while this many
wait (channel full, strategy lagging) the newest tick is dropped and counted in
``bp_drops_tick``. Memory bound: the runtime's tick channel (``TICK_QUEUE_BATCHES``
batches of at most this many ticks), one such batch in flight, and this list. It absorbs ~60 ms of a
16k trades/s burst; measured in ``bench/bench_live.py``."""

MESSAGE_TOO_BIG: Final = 1009
"""Close code trio-websocket uses when a frame exceeds ``max_message_size``."""


class _SessionOver(Exception):
    """Raised out of trio-websocket's block once our side of a session is done.

    Leaving the block with an error makes the library cancel its reader task;
    leaving it normally makes it wait for that task, which waits for the peer's
    TCP close -- forever, from a peer that broke the protocol and keeps the
    connection open. Our close frame is still sent first (bounded by
    ``disconnect_timeout``).
    """


def _check_url(url: str) -> None:
    """Refuse a URL trio-websocket would reject on every attempt (a ``ValueError``
    there would end the run as a crash, exit 1, and be restarted forever).

    *Error handling:* ``ConfigError`` (exit 12) naming ``ingest.url``.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError when out of range
    except ValueError as exc:
        raise ConfigError(f"ingest.url: {url!r} is not a usable URL ({exc})") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(f"ingest.url: {url!r} must be a ws:// or wss:// URL with a host")


class WebSocketStream:
    """Live ticks from a venue's public WebSocket (see the module docstring).

    ``clock`` gives ``ts_recv`` (wall-clock ns: it is compared with the
    exchange's event time); pacing and timeouts use ``trio.current_time()``.
    ``decode=False`` only records frames (the ``record`` command): no ticks,
    no parse budget; a venue ``error`` frame is still acted on (exit 12 or a
    reconnect).
    """

    def __init__(
        self,
        section: IngestSection,
        counters: Counters,
        *,
        clock: Callable[[], int] = time.time_ns,
        decode: bool = True,
        healthy_after_s: float = HEALTHY_AFTER_S,
    ) -> None:
        if not section.symbols or not all(s.strip() for s in section.symbols):
            raise ConfigError("ingest.symbols: the websocket source needs non-empty symbols")
        self.section = section
        self.counters = counters
        self.url = feed_url(section)
        _check_url(self.url)
        self.stats = LinkStats()
        self.progress = Progress()
        self.recorder: CaptureRecorder | None = None
        self.forwarder: TickForwarder | None = None
        self._clock = clock
        self._decode = decode
        self._dedup = TradeDedup()
        self._intake = FrameIntake(section, counters, self._dedup)
        self._subscribe = subscribe_frame(section)
        self._keepalive = Keepalive(
            interval_s=section.keepalive_interval_s,
            pong_timeout_s=section.pong_timeout_s,
            stats=self.stats,
            progress=self.progress,
        )
        self._silence = SilenceWatch(
            max_downtime_s=section.max_downtime_s,
            stats=self.stats,
            progress=self.progress,
        )
        self._disconnect_timeout = min(section.pong_timeout_s, DISCONNECT_TIMEOUT_S)
        self._trade_decoder: Decoder = decoder_for(section.venue.value)
        self._backoff = Backoff(BackoffPolicy.of(section, healthy_after_s=healthy_after_s))
        self._budget = ReconnectBudget(
            max_failures=section.max_reconnect_failures, max_downtime_s=section.max_downtime_s
        )

    async def stream(self, send: trio.MemorySendChannel[TickBatch]) -> None:
        """Connect, read, reconnect -- until cancelled or the budget is spent.

        *Error handling:* raises ``NetworkBudgetExhausted`` (exit 10),
        ``ParseRateExceeded`` (exit 11) or ``ConfigError`` (exit 12, the venue
        refused the configured symbols); network and other venue errors are retried.
        """
        forwarder = self.forwarder = TickForwarder(
            send, self.counters, LIVE_PENDING_TICKS, self.progress
        )
        # every line the feed's tasks log names the venue (engine.logs.bind)
        with logs.bind(venue=self.section.venue.value):
            await self._stream(forwarder)

    async def _stream(self, forwarder: TickForwarder) -> None:
        failure: Exception | None = None
        async with self._recording():
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(forwarder.run)
                    try:
                        await self._connect_loop()
                    except Exception as exc:  # raised below, after the forwarder flushed
                        failure = exc
                    nursery.cancel_scope.cancel()
            finally:
                self.counters.connected = 0
                self.progress.bump()
        if failure is not None:
            raise failure

    @asynccontextmanager
    async def _recording(self) -> AsyncIterator[None]:
        if not self.section.record_path:
            yield
            return
        async with open_capture_recorder(self.section.record_path) as recorder:
            self.recorder = recorder
            yield

    async def _connect_loop(self) -> None:
        counters = self.counters
        last_reason = ""
        self._budget.start(trio.current_time())
        while True:
            if self.stats.attempts > 0:
                now = trio.current_time()
                spent = self._budget.exhausted(now)
                if spent is not None:
                    logs.error(
                        "ws_give_up",
                        url=self.url,
                        reason=spent,
                        last_error=last_reason,
                        attempts=self.stats.attempts,
                    )
                    raise NetworkBudgetExhausted(
                        f"{self.section.venue.value} feed: {spent}; last error: {last_reason}"
                    )
                remaining = self.section.max_downtime_s - self._budget.downtime(now)
                delay = min(self._backoff.next_delay(), max(remaining, 0.0))
                counters.backoff_ms = round(delay * 1000)
                counters.reconnects += 1
                logs.warning(
                    "ws_reconnect",
                    attempt=self.stats.attempts + 1,
                    delay_s=round(delay, 3),
                    reason=last_reason,
                    failures=self._budget.failures,
                    downtime_s=round(self._budget.downtime(now), 3),
                )
                self.progress.bump()
                await trio.sleep(delay)
            else:
                logs.info("ws_connect", url=self.url)
            self.stats.attempts += 1
            session = await self._run_session()
            now = trio.current_time()
            if session.last_tick is None:
                self._budget.failed()
            else:
                self._budget.delivered(session.last_tick)
            self._backoff.connection_ended(session.healthy_since, now)
            last_reason = session.end_reason or "closed"

    async def _run_session(self) -> Session:
        """One connection from handshake to loss; returns why it ended.

        *Error handling:* what must stop the stream (``fatal``: parse rate, a
        refused subscribe, a bug in the reader) is raised only after the
        connection was closed (bounded, see the module docstring), so a slow
        close can neither swallow it nor delay it.
        """
        now = trio.current_time()
        session = Session(opened_at=now, last_rx=now)
        section = self.section
        fatal: Exception | None = None
        bounded = ConnectionDeadlines(section.connect_timeout_s, self._disconnect_timeout)
        with bounded.scope:
            try:
                async with trio_websocket.open_websocket_url(
                    self.url,
                    message_queue_size=WS_MESSAGE_QUEUE,
                    max_message_size=section.max_message_size,
                    connect_timeout=section.connect_timeout_s,
                    disconnect_timeout=self._disconnect_timeout,
                ) as ws:
                    bounded.opened()
                    self._on_connected(session)
                    async with trio.open_nursery() as nursery:
                        scope = nursery.cancel_scope
                        nursery.start_soon(self._keepalive.run, ws, session, scope)
                        nursery.start_soon(self._silence.run, session, self._last_data, scope)
                        try:
                            if self._subscribe is not None:
                                await ws.send_message(self._subscribe)
                            await self._read(ws, session)
                        except Exception as exc:  # fatal: raised after the close, not in a group
                            lost = connection_failure(exc)  # e.g. closed while subscribing
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
                reason = connection_failure(exc) or stray_cancel(exc)
                if reason is None:
                    raise
                if session.end_reason is None:
                    session.end_reason = reason
                else:
                    session.teardown_error = reason
        if bounded.handshake_timed_out:
            session.end_reason = "connect timed out"
        elif bounded.close_timed_out:
            self.stats.teardown_timeouts += 1
            session.teardown_error = (
                f"close not finished within {self._disconnect_timeout:g}s: connection abandoned"
            )
            session.end_reason = session.end_reason or "closed"
        self._on_ended(session)
        if fatal is not None:
            raise fatal
        return session

    def _last_data(self) -> float:
        """When the feed last delivered market data (or started)."""
        last = self._budget.last_data
        return trio.current_time() if last is None else last

    def _on_connected(self, session: Session) -> None:
        self.stats.sessions += 1
        self.counters.connected = 1
        self.counters.backoff_ms = 0
        logs.info(
            "ws_connected",
            url=self.url,
            attempt=self.stats.attempts,
            subscribe=self._subscribe is not None,
        )
        self.progress.bump()

    def _on_ended(self, session: Session) -> None:
        connected = self.counters.connected
        self.counters.connected = 0
        now = trio.current_time()
        if connected:
            logs.warning(
                "ws_disconnected",
                reason=session.end_reason or "closed",
                teardown_error=session.teardown_error,
                up_s=round(now - session.opened_at, 3),
                frames=session.frames,
                worked=session.healthy_since is not None,
                duplicates=self.counters.duplicates,
                gaps=self.counters.gaps,
            )
        else:
            logs.warning(
                "ws_connect_failed",
                url=self.url,
                attempt=self.stats.attempts,
                reason=session.end_reason or "unknown",
            )
        self.progress.bump()

    def _mark_healthy(self, session: Session, now: float) -> None:
        """The session's first admitted tick: the connection works, the budget starts over."""
        session.healthy_since = now
        self._budget.delivered(now)

    def _is_trade(self, raw: bytes, ts_recv: int) -> bool:
        """Record-only mode: whether a frame carries a trade (the proof a connection works)."""
        try:
            return self._trade_decoder(raw, ts_recv) is not None
        except (MalformedMessage, ValueError, RecursionError):
            return False

    def _venue_error(self, exc: VenueErrorFrame, session: Session) -> None:
        """A venue ``error`` frame: exit 12 if it refuses the subscribe, else end the session.

        Only the *answer* to the subscribe (no other frame arrived before it on
        this connection) can mean "your symbols are refused": an ``error`` later
        in the stream -- whatever its words -- is the venue's trouble, and a
        reconnect under the budget is the cure (exit 12 would stop systemd from
        ever restarting the engine).

        *Error handling:* ``ConfigError`` for a refused subscribe.
        """
        venue = self.section.venue.value
        if exc.refuses_config and not session.answered:
            logs.error("venue_error", venue=venue, message=exc.text, action="stop_config")
            session.end_reason = f"venue refused the subscription: {exc.text}"
            raise ConfigError(
                f"ingest: {venue} refused the subscription for symbols "
                f"{list(self.section.symbols)}: {exc.text}"
            )
        logs.error(
            "venue_error",
            venue=venue,
            message=exc.text,
            action="reconnect",
            answered_subscribe=not session.answered,
        )
        # This connection delivers nothing more; an error is no proof it worked.
        session.end_reason = f"venue error: {exc.text}"
        self.progress.bump()

    async def _read(self, ws: trio_websocket.WebSocketConnection, session: Session) -> None:
        """Read frames until the connection closes; hand each on without waiting."""
        counters = self.counters
        recorder = self.recorder
        forwarder = self.forwarder
        assert forwarder is not None  # stream() starts it before the first session
        clock = self._clock
        decode = self._decode
        accept = self._intake.accept
        screen = self._intake.screen
        while True:
            try:
                message = await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                self._on_closed(exc, session)
                return
            ts_recv = clock()
            now = trio.current_time()
            raw = message.encode() if isinstance(message, str) else message
            counters.ingest_received += 1
            session.frames += 1
            session.last_rx = now
            if recorder is not None:
                recorder.record_nowait(ts_recv, raw)
            try:
                tick = accept(raw, ts_recv, now) if decode else screen(raw)
            except VenueErrorFrame as exc:
                self._venue_error(exc, session)
                return
            session.answered = True
            if tick is not None:
                forwarder.offer(tick)
            if tick is not None or (not decode and self._is_trade(raw, ts_recv)):
                # progress: the connection delivers market data
                session.last_tick = now
                counters.last_tick_wall_ns = ts_recv
                if session.healthy_since is None:
                    self._mark_healthy(session, now)
            self.progress.bump()

    def _on_closed(self, exc: trio_websocket.ConnectionClosed, session: Session) -> None:
        session.end_reason = session.end_reason or close_text(exc)
        reason = exc.reason
        if reason is not None and reason.code == MESSAGE_TOO_BIG:
            # The library refused a frame above max_message_size and closed the
            # connection: a malformed message like any other, then a reconnect.
            self.stats.oversize_frames += 1
            self._intake.reject(
                f"frame larger than max_message_size={self.section.max_message_size}",
                b"",
                trio.current_time(),
            )
