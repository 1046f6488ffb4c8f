"""The live feed against each hostile venue of issue 10: exit code and reconnect times.

Each scenario runs the real engine (``python -m engine run``, a fresh process) against
a hostile venue on 127.0.0.1 (``tests/fakes/hostile_venue.py`` raw sockets, or the fake
exchange of ``tests/fakes/fake_exchange.py``) with ``max_reconnect_failures = 3`` and the test
timeouts of ``tests/e2e/test_ws_feed.py``; scenarios that must *not* end the engine
send SIGINT once it reconnected. Per scenario, one JSON line: the exit code, the
wall time, the attempts, each session's ``up_s``, the gap from a loss to the next
``ws_connected`` (the reconnect time), the first loss reason and the give-up reason.

Usage: python bench/hostile_venues.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.engine_process import EngineProcess, LogLine
from tests.fakes.fake_exchange import End, Endpoint, Session, open_fake_exchange
from tests.fakes.feed_cli import finish, interrupt_after, write_config
from tests.fakes.hostile_venue import (
    Handshake,
    Play,
    open_hostile_venue,
    ping_frame,
    text_frame,
    trade_frames,
)

INVALID_UTF8 = text_frame(b'{"stream":"btcusdt@trade","data":{"e":"\xff"}}')
BASE = {"max_reconnect_failures": 3}


def reconnected(line: LogLine) -> bool:
    return line.get("event") == "ws_connected" and line.get("attempt") == 2


def summary(name: str, engine: EngineProcess, code: int, wall_s: float) -> dict[str, Any]:
    lines = engine.lines
    connected = [e["ts"] for e in lines if e.get("event") == "ws_connected"]
    lost = [e for e in lines if e.get("event") in ("ws_disconnected", "ws_connect_failed")]
    gaps = []
    for loss in lost:
        later = [ts for ts in connected if ts > loss["ts"]]
        if later:
            gaps.append(round((later[0] - loss["ts"]) * 1000, 1))
    give_up = [e["reason"] for e in lines if e.get("event") == "ws_give_up"]
    return {
        "scenario": name,
        "exit": code,
        "wall_s": round(wall_s, 2),
        "attempts": len(lost),
        "session_up_s": [e["up_s"] for e in lost if "up_s" in e],
        "reconnect_ms": gaps,
        "first_reason": lost[0].get("reason") if lost else None,
        "give_up": give_up[0] if give_up else None,
    }


async def scenario(
    name: str,
    server: AbstractAsyncContextManager[Endpoint],
    ingest: dict[str, Any],
    stop_after: Callable[[LogLine], bool] | None = None,
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    async with server as venue:
        config = write_config(tmp, venue, **ingest)
        started = time.monotonic()
        engine = EngineProcess(["run", "--config", str(config)])
        if stop_after is None:
            code = await finish(engine)
        else:
            code = await interrupt_after(engine, stop_after)
        wall_s = time.monotonic() - started
    print(json.dumps(summary(name, engine, code, wall_s)), flush=True)


async def main() -> None:
    violation = (*trade_frames(3), INVALID_UTF8)
    await scenario("invalid UTF-8 text frame, TCP held, forever",
                   open_hostile_venue([Play(frames=violation)]), BASE)
    await scenario("200-byte ping, TCP held, forever",
                   open_hostile_venue([Play(frames=(*trade_frames(3), ping_frame(b"p" * 200)))]),
                   BASE)
    await scenario("invalid UTF-8 once, then a good venue",
                   open_hostile_venue([Play(frames=violation), Play(frames=trade_frames(3, 3))]),
                   BASE, reconnected)
    for kind in (Handshake.BAD_ACCEPT, Handshake.NO_UPGRADE, Handshake.HUGE_HEADERS,
                 Handshake.GARBAGE):
        await scenario(f"handshake {kind.value}, forever",
                       open_hostile_venue([Play(handshake=kind)]), BASE)
    await scenario("upgrade never answered, TCP held, forever (connect_timeout_s 2)",
                   open_hostile_venue([Play(reply=b"")]), {**BASE, "connect_timeout_s": 2.0})
    await scenario("Coinbase: ack then drop, forever",
                   open_fake_exchange("coinbase", [Session(frames=0, then=End.ABORT)]),
                   {**BASE, "symbols": ["SKL-USD"]})
    await scenario("trades, then silence with pings answered (max_downtime_s 5)",
                   open_fake_exchange("binance", [Session(frames=5, then=End.HOLD),
                                                  Session(frames=0, then=End.HOLD)]),
                   {**BASE, "max_downtime_s": 5.0, "keepalive_interval_s": 1.0})
    await scenario("Coinbase: error saying 'invalid' mid-stream",
                   open_fake_exchange("coinbase", [
                       Session(frames=10, error_after_frames="invalid relay state"),
                       Session(frames=10)]),
                   {"symbols": ["SKL-USD", "BAND-GBP"]}, reconnected)
    await scenario("Coinbase: refusal answering the subscribe",
                   open_fake_exchange("coinbase"), {"symbols": ["BTC-XYZ"]})


if __name__ == "__main__":
    trio.run(main)
