"""A hostile venue on raw sockets: 127.0.0.1, port 0, bytes written by hand.

``tests/fakes/fake_exchange.py`` is a well-behaved trio-websocket server that misbehaves
politely; some attacks cannot be made through a correct WebSocket library at all --
a broken opening handshake, a frame that violates RFC 6455, a close that is never
answered. This server speaks HTTP and WebSocket framing itself, so each connection
can do exactly what a broken or malicious peer would.

Each accepted TCP connection runs the next ``Play`` of the script (the last one
repeats). A play reads the client's HTTP upgrade request (bounded), answers it
(``handshake``), then writes its ``frames`` (raw bytes: use ``text_frame``,
``ping_frame``, ...) and ends with ``then``: hold the TCP connection open while
reading and discarding whatever the client sends -- a close frame is never
answered (HOLD) --, or drop it (DROP).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import struct
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from engine.adapters.progress import Progress
from tests.fakes.fake_exchange import binance_tape, restamp, serving

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_REQUEST_BYTES = 64 * 1024
"""The client's upgrade request must fit in this (it is a few hundred bytes)."""


class Handshake(enum.Enum):
    OK = "ok"  # a correct 101 Switching Protocols
    BAD_ACCEPT = "bad_accept"  # 101 with a wrong Sec-WebSocket-Accept
    NO_UPGRADE = "no_upgrade"  # 101 without Upgrade / Connection headers
    HUGE_HEADERS = "huge_headers"  # 101 followed by megabytes of headers
    GARBAGE = "garbage"  # not HTTP at all


class Then(enum.Enum):
    HOLD = "hold"  # keep TCP open, read and discard: a close frame is never answered
    DROP = "drop"  # close the TCP connection


@dataclass(frozen=True)
class Play:
    """What the venue does on one connection (see the module docstring)."""

    handshake: Handshake = Handshake.OK
    frames: tuple[bytes, ...] = ()
    then: Then = Then.HOLD
    await_subscribe: bool = False  # Coinbase style: read one client frame before sending
    reply: bytes | None = None  # sent instead of the handshake reply (raw HTTP, or anything)


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One unmasked server frame (RFC 6455 §5.2); no size check, on purpose."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


def text_frame(payload: bytes | str) -> bytes:
    """A text frame; ``payload`` as given, so it may be invalid UTF-8."""
    return frame(0x1, payload.encode() if isinstance(payload, str) else payload)


def ping_frame(payload: bytes) -> bytes:
    """A ping; RFC 6455 caps control payloads at 125 bytes, this does not."""
    return frame(0x9, payload)


def trade_frames(count: int, start: int = 0) -> tuple[bytes, ...]:
    """``count`` real Binance trade frames from the shared capture, as text frames,
    stamped with the wall clock now (as a venue printing them now would: the
    engine's event-time admission window judges them against their receive time)."""
    now = time.time_ns()
    return tuple(
        text_frame(restamp("binance", f.text, now)) for f in binance_tape()[start : start + count]
    )


def coinbase_ack(products: Sequence[str]) -> bytes:
    channel = {"name": "matches", "product_ids": list(products)}
    ack = {"type": "subscriptions", "channels": [channel]}
    return text_frame(json.dumps(ack, separators=(",", ":")))


def accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())  # RFC 6455 says SHA-1


def handshake_reply(kind: Handshake, key: bytes) -> bytes:
    if kind is Handshake.GARBAGE:
        return b"\x00\xff not http at all\r\n\r\n"
    lines = [b"HTTP/1.1 101 Switching Protocols"]
    if kind is not Handshake.NO_UPGRADE:
        lines += [b"Upgrade: websocket", b"Connection: Upgrade"]
    token = b"d3JvbmcgYWNjZXB0IHRva2VuIQ==" if kind is Handshake.BAD_ACCEPT else accept_token(key)
    lines.append(b"Sec-WebSocket-Accept: " + token)
    if kind is Handshake.HUGE_HEADERS:
        filler = b"X-Filler: " + b"a" * 1000
        lines += [filler] * 2048  # ~2 MB of headers
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _websocket_key(request: bytes) -> bytes:
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return value.strip()
    return b""


@dataclass
class HostileVenue:
    """The server and what it saw; see the module docstring."""

    plays: Sequence[Play]
    venue: str = "binance"  # what the engine is configured for (the URL and symbols)
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    received_bytes: int = 0  # everything the client wrote after the handshake
    progress: Progress = field(default_factory=Progress)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[None]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        play = self.plays[min(self.connections, len(self.plays) - 1)]
        self.connections += 1
        self.progress.bump()
        try:
            async with stream:
                await self._play(stream, play)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client left: that is its right
        finally:
            self.progress.bump()

    async def _play(self, stream: trio.SocketStream, play: Play) -> None:
        request = await self._read_request(stream)
        if request is None:
            return
        self.requests.append(request)
        reply = play.reply
        if reply is None:
            reply = handshake_reply(play.handshake, _websocket_key(request))
        await stream.send_all(reply)
        if play.await_subscribe:
            data = await stream.receive_some()
            self.received_bytes += len(data)
            if not data:
                return
        for raw in play.frames:
            await stream.send_all(raw)
        self.progress.bump()
        if play.then is Then.DROP:
            return
        while data := await stream.receive_some():  # HOLD: never answer, never close
            self.received_bytes += len(data)
            self.progress.bump()

    async def _read_request(self, stream: trio.SocketStream) -> bytes | None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > MAX_REQUEST_BYTES:
                return None
            data = await stream.receive_some()
            if not data:
                return None
            buffer += data
        return buffer


@asynccontextmanager
async def open_hostile_venue(plays: Sequence[Play]) -> AsyncIterator[HostileVenue]:
    """Serve ``plays`` for the duration of the block (stopped on exit)."""
    venue = HostileVenue(plays)
    async with serving(venue.serve):
        yield venue
