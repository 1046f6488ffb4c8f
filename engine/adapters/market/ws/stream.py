"""The exchange WebSocket source of the ``MarketDataStream`` port.

One ``WebSocketStream`` keeps one venue connection alive for the whole run and
turns its frames into ticks. Per connection ("session"), besides the link's keepalive:

* **the reader** reads the socket continuously. trio-websocket buffers only one
  message (``WS_MESSAGE_QUEUE``) and stops reading the socket while it sits
  unread, so nothing slow may sit between ``get_message`` and the next call:
  each frame is stamped (``ts_recv``), recorded (optional), decoded and
  filtered for duplicates (``ws.intake``) and offered, without waiting, to
  a bounded list of at most ``LIVE_PENDING_TICKS`` pending ticks that a
  forwarder task moves into the tick channel (``ws.forwarder``; when it is
  full the newest tick is dropped, docs/contract.md S6). The reader never waits for the
  strategy or the disk.
* **the silence watch** ends a connection that delivers no admitted tick --
  however many pongs, acks or heartbeats it sends (``ws.silence``).
* **the recorder** (``[ingest] record_path``) appends every frame to a capture
  file through a bounded, non-blocking writer (``engine.adapters.market.recorder``).

Everything else -- the bounded handshake and close, the keepalive (S4), the
reconnect loop with its backoff and budget (S3), what counts as a lost
connection, the log lines and counters of a reconnect -- is the one link both
the feed and the LIVE user stream run (``engine.adapters.link.reconnect``);
``WebSocketStream`` is its policy for the feed: after connecting it sends the
venue's subscribe message if any (``ws.endpoints``); *delivered* means an
admitted tick (nothing else resets the budget, which also has
``max_downtime_s``); the silence watch runs beside the reader; a venue refusing
the configured symbols *in answer to the subscribe* is fatal (exit 12), any
other venue ``error`` message a reason to reconnect. Why one link:
docs/architecture.md "Reconnecting"; the bounds: docs/ingest.md.

*Error handling:* only the budget (10), the parse rate (11), a refused
subscribe (12), a closed tick channel or a bug leave ``stream``.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final

import trio
import trio_websocket

from engine import logs
from engine.adapters.backoff import HEALTHY_AFTER_S, BackoffPolicy
from engine.adapters.link.failures import close_text, describe
from engine.adapters.link.reconnect import Link, LinkSettings, Watcher
from engine.adapters.link.session import LinkStats, Session
from engine.adapters.market.decoding import Decoder, MalformedMessage
from engine.adapters.market.dedup import TradeDedup
from engine.adapters.market.recorder import CaptureRecorder, open_capture_recorder
from engine.adapters.market.venues import decoder_for
from engine.adapters.market.ws.endpoints import feed_url, subscribe_frame
from engine.adapters.market.ws.forwarder import TickForwarder
from engine.adapters.market.ws.intake import FrameIntake, VenueErrorFrame
from engine.adapters.market.ws.silence import SilenceWatch
from engine.adapters.progress import Progress
from engine.config.schema import IngestSection
from engine.counters import Counters
from engine.exits import ConfigError
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
    """Live ticks from a venue's public WebSocket, and the feed's ``LinkPolicy``
    (see the module docstring).

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
        self._silence = SilenceWatch(
            max_downtime_s=section.max_downtime_s,
            stats=self.stats,
            progress=self.progress,
        )
        self._trade_decoder: Decoder = decoder_for(section.venue.value)
        settings = LinkSettings(
            url=self.url,
            connect_timeout_s=section.connect_timeout_s,
            keepalive_interval_s=section.keepalive_interval_s,
            pong_timeout_s=section.pong_timeout_s,
            backoff=BackoffPolicy.of(section, healthy_after_s=healthy_after_s),
            max_failures=section.max_reconnect_failures,
            max_downtime_s=section.max_downtime_s,
            message_queue_size=WS_MESSAGE_QUEUE,
            max_message_size=section.max_message_size,
        )
        self.name = f"{section.venue.value} feed"
        self._link = Link(
            settings, self, counters=counters, stats=self.stats, progress=self.progress
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
                        await self._link.run()
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

    # -- the feed's LinkPolicy (engine.adapters.link.reconnect) -----------------------

    lost_errors: tuple[type[BaseException], ...] = ()
    """Malformed frames are the intake's (counted, budgeted), never a lost connection."""

    def describe(self, exc: BaseException) -> str:
        return describe(exc)

    async def opened(self, ws: trio_websocket.WebSocketConnection, session: Session) -> None:
        if self._subscribe is not None:
            await ws.send_message(self._subscribe)

    async def read(self, ws: trio_websocket.WebSocketConnection, session: Session) -> None:
        await self._read(ws, session)

    def watchers(self) -> Sequence[Watcher]:
        return (self._watch_silence,)

    async def _watch_silence(self, session: Session, scope: trio.CancelScope) -> None:
        await self._silence.run(session, self._link.last_delivery, scope)

    def connected_fields(self) -> Mapping[str, object]:
        return {"subscribe": self._subscribe is not None}

    def ended_fields(self) -> Mapping[str, object]:
        return {"duplicates": self.counters.duplicates, "gaps": self.counters.gaps}

    async def ended(self, session: Session) -> None:
        """Nothing to book: the feed's losses are its log lines and counters."""

    def _mark_healthy(self, session: Session, now: float) -> None:
        """The session's first admitted tick: the connection works, the budget starts over."""
        self._link.delivered(session, now)

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
                session.last_delivery = now
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
