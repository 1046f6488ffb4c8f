"""The live floor: a bare trio-websocket client reading Binance trade frames over
loopback and decoding each with a msgspec Struct. No admission, no pipeline, no
strategy, no disk.

It connects to the same fake exchange (its own process, ``bench_live.start_server``)
with the same URL and the same library settings as the engine's reader
(``WS_MESSAGE_QUEUE``, ``max_message_size``), stamps each frame on receipt exactly as
the engine does (``time.time_ns()`` right after ``get_message``) and takes the
"decision" latency once the frame is decoded. ``bench_live.py`` runs it in the same
invocation as the engine, so the engine's figures are ratios to what its own socket
library delivers on this machine at that moment.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import trio
import trio_websocket
from floor import Envelope  # the replay floor's Struct: the same decode for both floors

from engine.adapters.market.ws.stream import WS_MESSAGE_QUEUE


def latency_figures(latencies_ns: list[int]) -> dict[str, float | None]:
    """p50/p99/max in ms of ``latencies_ns`` (the same definition for floor and engine)."""
    lat = sorted(latencies_ns)
    if not lat:
        return {"latency_ms_p50": None, "latency_ms_p99": None, "latency_ms_max": None}
    return {
        "latency_ms_p50": round(lat[(len(lat) - 1) // 2] / 1e6, 4),
        "latency_ms_p99": round(lat[int(0.99 * (len(lat) - 1))] / 1e6, 4),
        "latency_ms_max": round(lat[-1] / 1e6, 4),
    }


async def floor_step(url: str, frames: int, max_message_size: int) -> dict[str, Any]:
    """Read ``frames`` trade frames from ``url``, decode each; rate and latency."""
    decode = msgspec.json.Decoder(Envelope).decode
    clock = time.time_ns
    latencies: list[int] = []
    trades = 0
    first = last = 0.0
    with trio.fail_after(60 + frames / 1000):
        async with trio_websocket.open_websocket_url(
            url, message_queue_size=WS_MESSAGE_QUEUE, max_message_size=max_message_size
        ) as ws:
            while trades < frames:
                message = await ws.get_message()
                ts_recv = clock()
                raw = message.encode() if isinstance(message, str) else message
                trade = decode(raw).data
                latencies.append(clock() - ts_recv)
                trades += 1
                if trades == 1:
                    first = time.perf_counter()
                del trade
            last = time.perf_counter()
    seconds = last - first
    return {
        "frames": trades,
        "achieved_rate": round((trades - 1) / seconds) if seconds > 0 else None,
        **latency_figures(latencies),
    }
