"""A fake exchange for ingest tests: a real trio-websocket server on 127.0.0.1, port 0.

It speaks the Binance combined-stream and the Coinbase ``matches`` shapes with
frames taken verbatim from real captures (``replays/btcusdt_20240808.gz``,
``tests/data/COINBASE.matches.ws.28.0``), and misbehaves on request. Each
accepted TCP connection plays the next ``Session`` of its script (the last one
repeats), so a test reads like the outage it reproduces::

    sessions = [Session(frames=50, then=End.ABORT), Session(resend=10)]

Per session: refuse the handshake (``reject``), skip trades (a gap), resend the
last K trades already sent (duplicates), send ``frames`` trades, interleave
malformed frames, send one frame larger than the client's limit, pace or flood,
then ``End``: stay silent but answer pings (HOLD), go silent *and* deaf -- stop
reading the socket so pings go unanswered (DEAF) --, close politely (CLOSE) or
drop the TCP connection (ABORT).

Deafness is real, not simulated: the server's streams come from a listener that
wraps each TCP stream, and a deaf stream withholds received bytes from the
WebSocket protocol, exactly like a peer whose process hangs.

The tape (the sequence of trades) is shared by all sessions: a reconnect resumes
where the previous session stopped, as a real market would have moved on.

Like a venue, the fake prints each trade *now*: a frame's event times (Binance
``E``/``T``, Coinbase ``time``) are set to the wall clock when it is sent
(``restamp``), so the engine's event-time admission window judges them as it
would a live feed's; ``sent`` holds the frames exactly as sent.
"""

from __future__ import annotations

import datetime as dt
import enum
import gzip
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import trio
import trio_websocket

from engine.adapters.market.ws.stream import WebSocketStream
from engine.adapters.progress import Progress
from engine.config.schema import IngestSection, Source, Venue
from engine.core.events import Tick
from engine.counters import Counters
from engine.ports import TickBatch

REPO = Path(__file__).resolve().parents[2]
BINANCE_CAPTURE = REPO / "replays" / "btcusdt_20240808.gz"
COINBASE_CAPTURE = REPO / "tests" / "data" / "COINBASE.matches.ws.28.0"
SUBSCRIBE_TIMEOUT_S = 5.0
"""Coinbase closes a connection that does not subscribe; so does the fake."""


class End(enum.Enum):
    HOLD = "hold"  # connected and silent; pings answered
    DEAF = "deaf"  # connected, silent, socket no longer read: pings unanswered
    CLOSE = "close"  # WebSocket close handshake, 1001 going away
    ABORT = "abort"  # TCP connection dropped, no close frame


@dataclass(frozen=True)
class Session:
    """What the fake does on one connection (see the module docstring)."""

    reject: int | None = None  # refuse the handshake with this HTTP status
    skip: int = 0  # trades printed while the client was away: never sent (a gap)
    resend: int = 0  # first resend the last K trades already sent (duplicates)
    frames: int | None = None  # trades to send; None: the rest of the tape
    then: End = End.HOLD
    malformed_every: int = 0  # after every n-th trade, one malformed frame
    oversize_after: int | None = None  # after this many trades, one frame above the limit
    pace_s: float = 0.0  # pause between trades (0: as fast as the socket takes them)
    deaf: bool = False  # from the start: frames still sent, but pings never answered
    ping_every_s: float | None = None  # the server pings the client this often (never waits)
    rate_per_s: float | None = None  # pace trades to this average rate (bursty: timer ~1 ms)
    venue_error: str | None = None  # Coinbase: answer the subscribe with this error, then hold
    error_after_frames: str | None = None  # Coinbase: send this error after the trades, then hold


@dataclass(frozen=True)
class TapeFrame:
    """One frame of the real capture: its text, and the trade it carries (if any)."""

    text: str
    symbol: str  # Binance: stream symbol (lower case); Coinbase: product_id
    trade_id: int | None  # None for a frame that is not a trade (Coinbase ticker)


@lru_cache(maxsize=1)
def binance_tape() -> tuple[TapeFrame, ...]:
    """The 9,757 real ``btcusdt@trade`` frames, verbatim, in capture order."""
    frames = []
    with gzip.open(BINANCE_CAPTURE, "rb") as capture:
        for line in capture:
            _, _, payload = line.rstrip(b"\n").partition(b" ")
            if payload.startswith(b'{"stream":"btcusdt@trade"'):
                data = json.loads(payload)["data"]
                frames.append(TapeFrame(payload.decode(), "btcusdt", data["t"]))
    return tuple(frames)


@lru_cache(maxsize=1)
def coinbase_tape() -> tuple[TapeFrame, ...]:
    """The real ``match``/``last_match``/``ticker`` frames, verbatim, in capture order."""
    frames = []
    for line in COINBASE_CAPTURE.read_bytes().splitlines():
        if line.startswith(b"wss://"):
            continue
        _, _, payload = line.partition(b": ")
        message = json.loads(payload)
        kind = message["type"]
        if kind in ("match", "last_match"):
            frames.append(TapeFrame(payload.decode(), message["product_id"], message["trade_id"]))
        elif kind == "ticker":
            frames.append(TapeFrame(payload.decode(), message["product_id"], None))
    return tuple(frames)


def extended_binance_tape(count: int, first_id: int = 5_000_000_000) -> tuple[TapeFrame, ...]:
    """``count`` real-shaped trade frames: the real ones in a loop, trade ids renumbered
    ``first_id, first_id + 1, ...`` (everything else verbatim). For floods and benchmarks."""
    real = binance_tape()
    frames = []
    for i in range(count):
        base = real[i % len(real)]
        assert base.trade_id is not None
        new_id = first_id + i
        text = base.text.replace(f'"t":{base.trade_id},', f'"t":{new_id},', 1)
        frames.append(TapeFrame(text, base.symbol, new_id))
    return tuple(frames)


def coinbase_products() -> list[str]:
    return sorted({f.symbol for f in coinbase_tape()})


def malformed_frames(venue: str, good: str) -> list[str]:
    """Three kinds of bad frame made from a real one: not JSON, wrong shape, bad decimal."""
    truncated = good[: len(good) // 2]
    if venue == "binance":
        wrong_shape = good.replace('"p":', '"x":', 1)
        bad_decimal = _replace_value(good, '"p":"', "12.3.4")
    else:
        wrong_shape = good.replace('"trade_id":', '"trade_idx":', 1)
        bad_decimal = _replace_value(good, '"price":"', "not-a-number")
    return [truncated, wrong_shape, bad_decimal]


def _coinbase_error(reason: str, message: str = "error") -> str:
    error = {"type": "error", "message": message, "reason": reason}
    return json.dumps(error, separators=(",", ":"))


def _replace_value(text: str, key_prefix: str, value: str) -> str:
    start = text.index(key_prefix) + len(key_prefix)
    end = text.index('"', start)
    return text[:start] + value + text[end:]


def oversize_frame(venue: str, size: int) -> str:
    """A well-formed JSON frame of exactly ``size`` characters."""
    head = (
        '{"stream":"btcusdt@trade","data":{"e":"trade","pad":"'
        if venue == "binance"
        else ('{"type":"match","pad":"')
    )
    tail = '"}}' if venue == "binance" else '"}'
    return head + "x" * (size - len(head) - len(tail)) + tail


_BINANCE_TIMES = re.compile(r'"([ET])":[0-9]+')
_COINBASE_TIME = re.compile(r'"time":"[^"]*"')
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def restamp(venue: str, text: str, now_ns: int) -> str:
    """``text`` with its event times set to ``now_ns`` (what a venue printing it now sends)."""
    if venue == "binance":
        ms = now_ns // 1_000_000
        return _BINANCE_TIMES.sub(lambda m: f'"{m.group(1)}":{ms}', text)
    when = _EPOCH + dt.timedelta(microseconds=now_ns // 1000)
    return _COINBASE_TIME.sub(f'"time":"{when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}"', text)


class _ControlledStream(trio.abc.Stream):
    """A server-side TCP stream that can go deaf: received bytes are withheld."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.deaf = False
        self.peer_port: int = inner.socket.getpeername()[1]

    def __repr__(self) -> str:
        # trio-websocket reports a non-socket stream's endpoint as its repr: the
        # handler finds its stream by it.
        return f"<controlled stream from port {self.peer_port}>"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if self.deaf:
            await trio.sleep_forever()  # a hung peer: the ping in `data` is never processed
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


class _ControlledListener(trio.abc.Listener[trio.abc.Stream]):
    def __init__(self, inner: trio.SocketListener, streams: dict[str, _ControlledStream]) -> None:
        self.inner = inner
        self.streams = streams

    async def accept(self) -> trio.abc.Stream:
        stream = _ControlledStream(await self.inner.accept())
        self.streams[repr(stream)] = stream
        return stream

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class FakeExchange:
    """The server and what it did; see the module docstring."""

    venue: str = "binance"
    sessions: Sequence[Session] = (Session(),)
    tape: Sequence[TapeFrame] = ()
    max_message_size: int = 1 << 20
    port: int = 0
    handshakes: int = 0  # connection attempts that reached the WebSocket handshake
    accepted: int = 0
    rejected: int = 0
    sent: list[TapeFrame] = field(default_factory=list)  # every trade frame sent, resends too
    bad_sent: int = 0  # malformed + oversize frames sent
    paths: list[str] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    finished_sessions: int = 0
    restamp: bool = True  # event times = the wall clock at sending (see the module docstring)
    progress: Progress = field(default_factory=Progress)
    _cursor: int = 0
    _streams: dict[str, _ControlledStream] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tape:
            self.tape = binance_tape() if self.venue == "binance" else coinbase_tape()
        if not self.sessions:
            self.sessions = (Session(),)

    @property
    def url(self) -> str:
        """The base URL to configure as ``[ingest] url``."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def sent_trade_ids(self) -> list[tuple[str, int]]:
        return [(f.symbol, f.trade_id) for f in self.sent if f.trade_id is not None]

    async def serve(self, *, task_status: trio.TaskStatus[trio_websocket.WebSocketServer]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        controlled = [_ControlledListener(listener, self._streams) for listener in listeners]
        server = trio_websocket.WebSocketServer(
            self._handle,
            controlled,  # type: ignore[arg-type]
            connect_timeout=5.0,
            disconnect_timeout=1.0,
        )
        await server.run(task_status=task_status)

    def _script(self) -> Session:
        index = min(self.handshakes, len(self.sessions)) - 1
        return self.sessions[max(index, 0)]

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        self.handshakes += 1
        script = self._script()
        self.paths.append(request.path)
        self.progress.bump()
        if script.reject is not None or not self._path_ok(request.path):
            self.rejected += 1
            await request.reject(script.reject or 400, body=b"fake exchange says no")
            self.progress.bump()
            return
        ws = await request.accept()
        self.accepted += 1
        stream = self._streams.pop(str(request.remote), None)
        try:
            async with trio.open_nursery() as nursery:
                if script.ping_every_s is not None:
                    nursery.start_soon(self._ping_forever, ws, script.ping_every_s)
                symbols = await self._subscribed(ws)
                if symbols is None:
                    return
                if script.deaf and stream is not None:
                    stream.deaf = True
                await self._play(ws, script, symbols)
                if script.error_after_frames is not None:
                    await ws.send_message(_coinbase_error(script.error_after_frames))
                await self._end(ws, script.then, stream)
        except* trio_websocket.ConnectionClosed:
            pass
        finally:
            self.finished_sessions += 1
            self.progress.bump()

    async def _ping_forever(self, ws: trio_websocket.WebSocketConnection, every_s: float) -> None:
        """Ping without waiting for the pong (a deaf server would never see it)."""
        async with trio.open_nursery() as pings:
            for n in range(1_000_000):
                pings.start_soon(ws.ping, b"fake-%d" % n)
                await trio.sleep(every_s)

    def _path_ok(self, path: str) -> bool:
        if self.venue != "binance":
            return True
        return path.startswith("/stream?streams=") and "@trade" in path

    async def _subscribed(self, ws: trio_websocket.WebSocketConnection) -> set[str] | None:
        """The symbols this connection asked for (Binance: the URL; Coinbase: a message)."""
        if self.venue == "binance":
            streams = ws.path.partition("streams=")[2].split("/") if ws.path else []
            return {s.removesuffix("@trade") for s in streams if s.endswith("@trade")}
        with trio.move_on_after(SUBSCRIBE_TIMEOUT_S):
            message = json.loads(await ws.get_message())
            self.subscriptions.append(message)
            if message.get("type") != "subscribe" or "matches" not in message.get("channels", []):
                await ws.aclose(1008, "expected a subscribe to matches")
                return None
            products = list(message.get("product_ids", []))
            known = {f.symbol for f in self.tape}
            unknown = [p for p in products if p not in known]
            error = self._script().venue_error
            if unknown:  # what Coinbase answers for a product id it does not list
                error = f"{unknown[0]} is not a valid product"
            if error is not None:
                await ws.send_message(_coinbase_error(error, "Failed to subscribe"))
                while True:  # no data, connection left open (the engine must act)
                    await ws.get_message()
            channel = {"name": "matches", "product_ids": products}
            ack = {"type": "subscriptions", "channels": [channel]}
            await ws.send_message(json.dumps(ack, separators=(",", ":")))
            return set(products)
        await ws.aclose(1008, "no subscribe received")
        return None

    def _next_frames(self, script: Session, symbols: set[str]) -> Iterable[TapeFrame]:
        self._cursor += script.skip
        sent = 0
        while self._cursor < len(self.tape) and (script.frames is None or sent < script.frames):
            frame = self.tape[self._cursor]
            self._cursor += 1
            if frame.symbol in symbols:
                sent += 1
                yield frame

    async def _play(
        self, ws: trio_websocket.WebSocketConnection, script: Session, symbols: set[str]
    ) -> None:
        if script.resend:
            already = [f for f in self.sent if f.trade_id is not None]
            for frame in already[-script.resend :]:
                await self._send(ws, frame)
        start = trio.current_time()
        for count, frame in enumerate(self._next_frames(script, symbols), start=1):
            if script.rate_per_s is not None:
                due = start + (count - 1) / script.rate_per_s
                if trio.current_time() < due:
                    await trio.sleep_until(due)
            await self._send(ws, frame)
            if script.malformed_every and count % script.malformed_every == 0:
                kinds = malformed_frames(self.venue, frame.text)
                await ws.send_message(kinds[(count // script.malformed_every - 1) % len(kinds)])
                self.bad_sent += 1
            if script.oversize_after is not None and count == script.oversize_after:
                self.bad_sent += 1
                await ws.send_message(oversize_frame(self.venue, self.max_message_size + 1))
                # the client closes with 1009: whatever follows is not read
            if script.pace_s:
                await trio.sleep(script.pace_s)

    async def _send(self, ws: trio_websocket.WebSocketConnection, frame: TapeFrame) -> None:
        if self.restamp:
            frame = TapeFrame(restamp(self.venue, frame.text, time.time_ns()), frame.symbol,
                              frame.trade_id)  # fmt: skip
        await ws.send_message(frame.text)
        self.sent.append(frame)
        self.progress.bump()

    async def _end(
        self, ws: trio_websocket.WebSocketConnection, then: End, stream: _ControlledStream | None
    ) -> None:
        if then is End.CLOSE:
            await ws.aclose(1001, "going away")
        elif then is End.ABORT:
            if stream is not None:
                await stream.inner.aclose()
        elif then is End.DEAF:
            if stream is not None:
                stream.deaf = True
            await trio.sleep_forever()
        else:  # HOLD: keep reading so pings are answered, until the client leaves
            while True:
                await ws.get_message()


@asynccontextmanager
async def open_fake_exchange(
    venue: str = "binance",
    sessions: Sequence[Session] = (Session(),),
    *,
    tape: Sequence[TapeFrame] = (),
    max_message_size: int = 1 << 20,
) -> AsyncIterator[FakeExchange]:
    """Serve a fake exchange for the duration of the block (stopped on exit)."""
    fake = FakeExchange(venue, sessions, tape, max_message_size)
    async with serving(fake.serve):
        yield fake


@asynccontextmanager
async def serving(serve: Callable[..., Awaitable[object]]) -> AsyncIterator[None]:
    """Run a server task (``nursery.start(serve)``) for the block; cancelled when it ends.

    An error in the block is re-raised as itself, not wrapped in the nursery's group.
    """
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        try:
            yield
        except BaseException as exc:  # re-raised below, not wrapped in the nursery's group
            body_error = exc
        nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


# --- helpers for the tests that fight the fake -----------------------------------------

WAIT_S = 10.0
"""Upper bound on any wait in these tests: a hang fails instead of blocking the suite."""


class Endpoint(Protocol):
    """A server the tests point the engine at (``FakeExchange``, ``HostileVenue``)."""

    venue: str

    @property
    def url(self) -> str: ...


def ingest_section(fake: Endpoint, **overrides: Any) -> IngestSection:
    """An ``[ingest]`` section pointed at ``fake``, with timeouts small enough for tests."""
    values: dict[str, Any] = {
        "source": Source.WEBSOCKET,
        "venue": Venue(fake.venue),
        "url": fake.url,
        "symbols": ("BTCUSDT",) if fake.venue == "binance" else tuple(coinbase_products()),
        "connect_timeout_s": 2.0,
        "keepalive_interval_s": 5.0,
        "pong_timeout_s": 2.0,
        "initial_backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "backoff_factor": 2.0,
        "max_reconnect_failures": 10,
        "max_downtime_s": 30.0,
        "max_parse_errors_per_min": 1000,
    }
    values.update(overrides)
    return IngestSection(**values)


@asynccontextmanager
async def running_stream(
    section: IngestSection, *, capacity: int = 100_000, **kwargs: Any
) -> AsyncIterator[tuple[WebSocketStream, trio.MemoryReceiveChannel[TickBatch]]]:
    """A ``WebSocketStream`` running in the background; cancelled when the block ends."""
    stream = WebSocketStream(section, Counters(), **kwargs)
    send, receive = trio.open_memory_channel[TickBatch](capacity)
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.stream, send)
        try:
            yield stream, receive
        except BaseException as exc:  # re-raised below, not wrapped in the nursery's group
            body_error = exc
        nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


async def take(receive: trio.MemoryReceiveChannel[TickBatch], count: int) -> list[Tick]:
    """The next ``count`` ticks from the channel (fails after ``WAIT_S``). A burst may
    arrive as one list (the forwarder coalesces it): ticks past ``count`` in the last
    list are not returned."""
    ticks: list[Tick] = []
    with trio.fail_after(WAIT_S):
        while len(ticks) < count:
            ticks.extend(await receive.receive())
    return ticks[:count]


async def until(progress: Progress, predicate: Callable[[], bool]) -> None:
    """Wait for ``predicate`` to hold, re-checked whenever ``progress`` is bumped."""
    with trio.fail_after(WAIT_S):
        await progress.wait_until(predicate)
