"""The exchange WebSocket source of the ``MarketDataStream`` port.

One ``WebSocketStream`` keeps one venue connection alive for the whole run and
turns its frames into ticks. Per connection ("session") three things run:

* **the reader** reads the socket continuously. trio-websocket buffers only one
  message (``WS_MESSAGE_QUEUE``) and stops reading the socket while it sits
  unread, so nothing slow may sit between ``get_message`` and the next call:
  each frame is stamped (``ts_recv``), recorded (optional), decoded, filtered
  for duplicates and appended, without waiting, to a bounded list of pending
  ticks. A **forwarder** task moves the pending ticks into the tick channel as
  one batch (``await send``): only the forwarder ever waits for the strategy.
  When the strategy lags, the channel fills, the pending list fills to
  ``LIVE_PENDING_TICKS``, and then the newest tick is dropped and counted in
  ``bp_drops_tick`` (SPEC S6). The reader never waits for the strategy or the
  disk, and memory stays bounded however fast the feed; a burst is coalesced
  into one batch instead of costing a channel operation per tick.
* **the keepalive** pings after ``keepalive_interval_s`` without a frame and
  forces a reconnect when no pong comes within ``pong_timeout_s`` (S4). A
  frame is proof of life too, so a feed that keeps delivering is never pinged,
  and one that delivers while a pong is late is not killed.
* **the recorder** (``[ingest] record_path``) appends every frame to a capture
  file through a bounded, non-blocking writer (``engine.adapters.recorder``).

Around the sessions, the reconnect loop (S3): exponential backoff with seeded
jitter (``engine.adapters.backoff``), reset once a connection stayed healthy;
the budget -- ``max_reconnect_failures`` consecutive failed attempts or
``max_downtime_s`` without a working connection -- ends the run with
``NetworkBudgetExhausted`` (exit 10). Every attempt, success and give-up is
logged with its delay and reason.

Input quality: malformed frames (and frames above ``max_message_size``, which
the library answers by closing with 1009) are counted, sampled into the log and
skipped; above ``max_parse_errors_per_min`` ingest stops with
``ParseRateExceeded`` (exit 11). Duplicate trades (same venue, symbol, trade
id -- e.g. resent after a reconnect) are dropped and counted, gaps in trade ids
counted per symbol and logged (``engine.adapters.dedup``).

*Error handling:* network failures never escape a session; they become a reason
for the next attempt. Only the budget (10), the parse rate (11), a closed tick
channel or a bug leave ``stream``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import trio
import trio_websocket
import wsproto.utilities

from engine import logs
from engine.adapters import coinbase
from engine.adapters.backoff import HEALTHY_AFTER_S, Backoff, BackoffPolicy, ReconnectBudget
from engine.adapters.decoding import Decoder, MalformedMessage, decoder_for
from engine.adapters.dedup import TradeDedup
from engine.adapters.parse_budget import ParseBudget
from engine.adapters.progress import Progress
from engine.adapters.recorder import CaptureRecorder, open_capture_recorder
from engine.config import IngestSection, Venue
from engine.core.events import Tick
from engine.counters import Counters
from engine.exits import ConfigError, NetworkBudgetExhausted
from engine.ports import TickBatch

BINANCE_DEFAULT_URL: Final = "wss://stream.binance.com:9443"
"""Base URL; the engine appends ``/stream?streams=<sym>@trade/...``."""

WS_MESSAGE_QUEUE: Final = 1
"""trio-websocket's own buffer. Kept at one on purpose: our reader never stops
reading, so a deeper library queue would only add latency, not absorb bursts."""

DISCONNECT_TIMEOUT_S: Final = 2.0
"""Upper bound on the closing handshake. A peer we are leaving because it went
deaf will not answer it; waiting longer only delays the reconnect."""

LIVE_PENDING_TICKS: Final = 1_000
"""Ticks read but not yet in the tick channel. Overload policy: while this many
wait (channel full, strategy lagging) the newest tick is dropped and counted in
``bp_drops_tick``. Memory bound: the runtime's tick channel (``TICK_QUEUE_BATCHES``
batches of at most this many ticks), one such batch in flight, and this list. It absorbs ~60 ms of a
16k trades/s burst; measured in ``bench/bench_live.py``."""

MESSAGE_TOO_BIG: Final = 1009
"""Close code trio-websocket uses when a frame exceeds ``max_message_size``."""


class TickForwarder:
    """Reader -> tick channel, the reader never waiting (see the module docstring).

    ``offer`` (sync) appends a tick or drops it when ``capacity`` ticks already
    wait. ``run`` sends everything pending as one batch whenever the channel
    takes it; ``ingest_processed`` counts ticks once the channel accepted them.

    *Cancellation* (the drain): whatever is still pending gets one last
    ``send_nowait``; if the channel is full it is dropped and counted, never
    silently lost.
    """

    def __init__(
        self,
        send: trio.MemorySendChannel[TickBatch],
        counters: Counters,
        capacity: int,
        progress: Progress | None = None,
    ) -> None:
        self._send = send
        self._counters = counters
        self._capacity = capacity
        self._progress = progress or Progress()
        self._pending: list[Tick] = []
        self._in_flight = 0
        self._wakeup: trio.Event | None = None

    @property
    def held(self) -> int:
        """Ticks read but not yet accepted by the channel (pending + the batch in flight)."""
        return len(self._pending) + self._in_flight

    def offer(self, tick: Tick) -> None:
        if len(self._pending) >= self._capacity:
            self._counters.bp_drops_tick += 1
            return
        self._pending.append(tick)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def run(self) -> None:
        batch: list[Tick] = []
        try:
            while True:
                if not self._pending:
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                batch, self._pending = self._pending, []
                self._in_flight = len(batch)
                await self._send.send(batch)
                self._counters.ingest_processed += len(batch)
                batch = []
                self._in_flight = 0
                self._progress.bump()
        finally:
            self._in_flight = 0
            self._flush_nowait(batch + self._pending)
            self._pending = []

    def _flush_nowait(self, ticks: list[Tick]) -> None:
        if not ticks:
            return
        try:
            self._send.send_nowait(ticks)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self._counters.bp_drops_tick += len(ticks)
            return
        self._counters.ingest_processed += len(ticks)


@dataclass
class LinkStats:
    """What the stream did on the wire since it started (beyond ``Counters``)."""

    attempts: int = 0
    sessions: int = 0
    pings: int = 0
    pongs: int = 0
    oversize_frames: int = 0


@dataclass
class _Session:
    """One connection's state, shared by its reader and keepalive tasks."""

    opened_at: float
    last_rx: float
    last_pong: float = -math.inf
    healthy_since: float | None = None
    frames: int = 0
    end_reason: str | None = None
    teardown_error: str | None = None  # what closing raised after the session had ended


def feed_url(section: IngestSection) -> str:
    """The URL to connect to for the configured venue and symbols."""
    if section.venue is Venue.BINANCE:
        base = (section.url or BINANCE_DEFAULT_URL).rstrip("/")
        streams = "/".join(f"{symbol.lower()}@trade" for symbol in section.symbols)
        return f"{base}/stream?streams={streams}"
    return section.url or coinbase.DEFAULT_URL


def subscribe_frame(section: IngestSection) -> str | None:
    """The message to send after connecting, if the venue needs one (S2)."""
    if section.venue is Venue.COINBASE:
        return coinbase.subscribe_message(section.symbols)
    return None


_CONNECTION_ERRORS: Final = (
    trio_websocket.HandshakeError,  # refused, timed out, DNS/TCP/TLS failure
    trio_websocket.ConnectionClosed,  # e.g. closed while we sent the subscribe
    OSError,
    # trio-websocket #184: a pong sent while closing after a heartbeat timeout
    # raises LocalProtocolError out of the library's reader task.
    wsproto.utilities.LocalProtocolError,
    trio_websocket._impl.TrioWebsocketInternalError,
)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return f"handshake rejected with HTTP {exc.status_code}"
    if isinstance(exc, trio_websocket.ConnectionTimeout):
        return "connect timed out"
    if isinstance(exc, trio_websocket.DisconnectionTimeout):
        return "closing handshake timed out"
    if isinstance(exc, trio_websocket.ConnectionClosed):
        return _close_text(exc)
    if isinstance(exc, trio_websocket.HandshakeError) and exc.__cause__ is not None:
        return f"connect failed: {exc.__cause__!r}"
    return f"{type(exc).__name__}: {exc}"


def _close_text(exc: trio_websocket.ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "connection closed"
    text = f"closed {reason.code} {reason.name}"
    return f"{text}: {reason.reason}" if reason.reason else text


def _connection_failure(exc: BaseException) -> str | None:
    """A reason if ``exc`` (or every leaf of a group) is a network failure, else None."""
    if isinstance(exc, BaseExceptionGroup):
        match, rest = exc.split(_CONNECTION_ERRORS)
        if rest is None and match is not None:
            return "; ".join(_describe(e) for e in match.exceptions)
        return None
    if isinstance(exc, _CONNECTION_ERRORS):
        return _describe(exc)
    return None


def _stray_cancel(exc: BaseException) -> str | None:
    """A reason if ``exc`` is a ``Cancelled`` that no scope of ours asked for.

    trio-websocket #184: after a keepalive timeout we close; a ping arriving
    meanwhile makes the library's reader task try to pong in CLOSING state and
    die with ``LocalProtocolError``. That cancels the library's own nursery, and
    the ``Cancelled`` it put into the closing handshake can then escape
    ``open_websocket`` in place of the error. Let through, it would cancel
    whatever nursery it reaches next; when no enclosing scope of this task is
    cancelled it is the library's, and the session simply ended.
    """
    if not isinstance(exc, trio.Cancelled) or trio.current_effective_deadline() == -math.inf:
        return None
    hidden = exc.__context__
    return _describe(hidden) if hidden is not None else "cancelled by trio-websocket"


class WebSocketStream:
    """Live ticks from a venue's public WebSocket (see the module docstring).

    ``clock`` gives ``ts_recv`` (wall-clock ns: it is compared with the
    exchange's event time); pacing and timeouts use ``trio.current_time()``.
    ``decode=False`` only records frames (the ``record`` command): no ticks,
    no parse budget.
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
        self.stats = LinkStats()
        self.progress = Progress()
        self.recorder: CaptureRecorder | None = None
        self.forwarder: TickForwarder | None = None
        self._clock = clock
        self._decode = decode
        self._decoder: Decoder = decoder_for(section.venue.value)
        self._subscribe = subscribe_frame(section)
        self._dedup = TradeDedup()
        self._parse_budget = ParseBudget(section.max_parse_errors_per_min)
        self._backoff = Backoff(
            BackoffPolicy(
                initial_s=section.initial_backoff_s,
                max_s=section.max_backoff_s,
                factor=section.backoff_factor,
                seed=section.backoff_seed,
                healthy_after_s=healthy_after_s,
            )
        )
        self._budget = ReconnectBudget(
            max_failures=section.max_reconnect_failures, max_downtime_s=section.max_downtime_s
        )

    async def stream(self, send: trio.MemorySendChannel[TickBatch]) -> None:
        """Connect, read, reconnect -- until cancelled or the budget is spent.

        *Error handling:* raises ``NetworkBudgetExhausted`` (exit 10) or
        ``ParseRateExceeded`` (exit 11); network errors are retried.
        """
        forwarder = self.forwarder = TickForwarder(
            send, self.counters, LIVE_PENDING_TICKS, self.progress
        )
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
        self._budget.lost(trio.current_time())
        while True:
            if self.stats.attempts > 0:
                now = trio.current_time()
                spent = self._budget.exhausted(now)
                if spent is not None:
                    logs.error(
                        "ws_give_up",
                        venue=self.section.venue.value,
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
                    venue=self.section.venue.value,
                    attempt=self.stats.attempts + 1,
                    delay_s=round(delay, 3),
                    reason=last_reason,
                    failures=self._budget.failures,
                    downtime_s=round(self._budget.downtime(now), 3),
                )
                self.progress.bump()
                await trio.sleep(delay)
            else:
                logs.info("ws_connect", venue=self.section.venue.value, url=self.url)
            self.stats.attempts += 1
            session = await self._run_session()
            now = trio.current_time()
            if session.healthy_since is None:
                self._budget.failed(now)
            else:
                self._budget.lost(now)
            self._backoff.connection_ended(session.healthy_since, now)
            last_reason = session.end_reason or "closed"

    async def _run_session(self) -> _Session:
        """One connection from handshake to loss; returns why it ended."""
        now = trio.current_time()
        session = _Session(opened_at=now, last_rx=now)
        section = self.section
        try:
            async with trio_websocket.open_websocket_url(
                self.url,
                message_queue_size=WS_MESSAGE_QUEUE,
                max_message_size=section.max_message_size,
                connect_timeout=section.connect_timeout_s,
                disconnect_timeout=min(section.pong_timeout_s, DISCONNECT_TIMEOUT_S),
            ) as ws:
                await self._on_connected(ws, session)
                fatal: Exception | None = None
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._keepalive, ws, session, nursery.cancel_scope)
                    try:
                        await self._read(ws, session)
                    except Exception as exc:  # raised below, not wrapped in a group
                        fatal = exc
                    nursery.cancel_scope.cancel()
                if fatal is not None:
                    raise fatal
        except BaseException as exc:
            reason = _connection_failure(exc) or _stray_cancel(exc)
            if reason is None:
                raise
            if session.end_reason is None:
                session.end_reason = reason
            else:
                session.teardown_error = reason
        self._on_ended(session)
        return session

    async def _on_connected(
        self, ws: trio_websocket.WebSocketConnection, session: _Session
    ) -> None:
        self.stats.sessions += 1
        self.counters.connected = 1
        self.counters.backoff_ms = 0
        logs.info(
            "ws_connected",
            venue=self.section.venue.value,
            url=self.url,
            attempt=self.stats.attempts,
            subscribe=self._subscribe is not None,
        )
        self.progress.bump()
        if self._subscribe is not None:
            await ws.send_message(self._subscribe)

    def _on_ended(self, session: _Session) -> None:
        connected = self.counters.connected
        self.counters.connected = 0
        now = trio.current_time()
        if connected:
            logs.warning(
                "ws_disconnected",
                venue=self.section.venue.value,
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
                venue=self.section.venue.value,
                url=self.url,
                attempt=self.stats.attempts,
                reason=session.end_reason or "unknown",
            )
        self.progress.bump()

    def _mark_healthy(self, session: _Session, now: float) -> None:
        session.healthy_since = now
        self._budget.working()

    async def _read(self, ws: trio_websocket.WebSocketConnection, session: _Session) -> None:
        """Read frames until the connection closes; hand each on without waiting."""
        counters = self.counters
        recorder = self.recorder
        clock = self._clock
        decode = self._decode
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
            if session.healthy_since is None:
                self._mark_healthy(session, now)
            if recorder is not None:
                recorder.record_nowait(ts_recv, raw)
            if decode:
                self._accept(raw, ts_recv, now)
            self.progress.bump()

    def _on_closed(self, exc: trio_websocket.ConnectionClosed, session: _Session) -> None:
        session.end_reason = session.end_reason or _close_text(exc)
        reason = exc.reason
        if reason is not None and reason.code == MESSAGE_TOO_BIG:
            # The library refused a frame above max_message_size and closed the
            # connection: a malformed message like any other, then a reconnect.
            self.stats.oversize_frames += 1
            self._reject(
                f"frame larger than max_message_size={self.section.max_message_size}",
                b"",
                trio.current_time(),
            )

    def _accept(self, raw: bytes, ts_recv: int, now: float) -> None:
        counters = self.counters
        try:
            tick = self._decoder(raw, ts_recv)
        except MalformedMessage as exc:
            self._reject(exc.reason, raw, now)
            return
        except ValueError as exc:  # e.g. a codec error a decoder let through: still just bad input
            self._reject(f"{type(exc).__name__}: {exc}", raw, now)
            return
        if tick is None:
            counters.skipped_messages += 1
            if self.section.venue is Venue.COINBASE:
                self._check_venue_error(raw)
            return
        self._admit(tick)

    def _admit(self, tick: Tick) -> None:
        counters = self.counters
        new, gap = self._dedup.admit(tick.venue, tick.symbol, tick.trade_id)
        if not new:
            counters.duplicates += 1
            return
        if gap is not None:
            counters.gaps += 1
            logs.warning(
                "trade_gap",
                venue=gap.venue,
                symbol=gap.symbol,
                first_missing=gap.first,
                last_missing=gap.last,
                missing=gap.missing,
                gaps_for_symbol=self._dedup.gaps_by_symbol()[f"{gap.venue}:{gap.symbol}"],
            )
        assert self.forwarder is not None
        self.forwarder.offer(tick)

    def _reject(self, reason: str, raw: bytes, now: float) -> None:
        self.counters.parse_errors += 1
        sample = logs.sample(raw)
        logs.warning(
            "malformed_message",
            venue=self.section.venue.value,
            reason=reason,
            sample=sample,
            parse_errors=self.counters.parse_errors,
        )
        self._parse_budget.record(now, sample)

    def _check_venue_error(self, raw: bytes) -> None:
        error = coinbase.decode_coinbase_error(raw)
        if error is not None:
            logs.error("venue_error", venue=self.section.venue.value, message=error)

    async def _keepalive(
        self,
        ws: trio_websocket.WebSocketConnection,
        session: _Session,
        scope: trio.CancelScope,
    ) -> None:
        """Ping after silence; cancel the session when the pong does not come."""
        interval = self.section.keepalive_interval_s
        pong_timeout = self.section.pong_timeout_s
        while True:
            quiet_since = max(session.last_rx, session.last_pong)
            wake_at = quiet_since + interval
            if trio.current_time() < wake_at:
                await trio.sleep_until(wake_at)
                continue
            sent_at = trio.current_time()
            self.stats.pings += 1
            with trio.move_on_after(pong_timeout) as timer:
                try:
                    await ws.ping()
                except (trio_websocket.ConnectionClosed, wsproto.utilities.LocalProtocolError):
                    return  # closing: the reader sees the close and ends the session
            now = trio.current_time()
            if not timer.cancelled_caught:
                self.stats.pongs += 1
                session.last_pong = now
                if session.healthy_since is None:
                    self._mark_healthy(session, now)
                self.progress.bump()
                continue
            if session.last_rx > sent_at:
                continue  # frames kept arriving: alive, the pong is just queued behind them
            session.end_reason = (
                f"no pong within {pong_timeout:g}s after {interval:g}s without a frame"
            )
            logs.warning(
                "ws_pong_timeout",
                venue=self.section.venue.value,
                keepalive_interval_s=interval,
                pong_timeout_s=pong_timeout,
            )
            scope.cancel()
            return
