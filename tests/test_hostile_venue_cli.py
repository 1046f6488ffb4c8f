"""The real engine (``python -m engine run``) against hostile venues: the exit codes.

Before these fixes: a protocol violation followed by a held TCP connection stalled
the engine forever (connected=1, health PASS); a malformed handshake reply crashed
it (exit 1); a venue that acks and drops kept it reconnecting forever (never 10);
a Coinbase ``error`` mid-stream containing "invalid" stopped it with 12 (no systemd
restart). Now: 10 when the budget is spent, 12 only for a refused subscribe.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.engine_process import EngineProcess, run_engine
from tests.fake_exchange import End, Session, open_fake_exchange
from tests.hostile_venue import Handshake, Play, open_hostile_venue, ping_frame, text_frame
from tests.hostile_venue import trade_frames as trades
from tests.test_feed_ws_cli import finish, interrupt_after, write_config

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::ResourceWarning")]

INVALID_UTF8 = text_frame(b'{"stream":"btcusdt@trade","data":{"e":"\xff"}}')
FAST = {"pong_timeout_s": 0.5, "max_reconnect_failures": 3}
"""A 0.5 s close bound (``min(pong_timeout_s, 2 s)``) and a small failure budget."""


def _stopped_with(engine: EngineProcess) -> list[int]:
    return [e["exit_code"] for e in engine.events("engine_stopped")]


@pytest.mark.parametrize(
    "violation", [INVALID_UTF8, ping_frame(b"p" * 200)], ids=["invalid-utf8", "ping-200-bytes"]
)
async def test_cli_protocol_violation_then_held_tcp_forever_exits_network_10(
    tmp_path: Path, violation: bytes
) -> None:
    async with open_hostile_venue([Play(frames=(*trades(3), violation))]) as venue:
        config = write_config(tmp_path, venue, max_downtime_s=30.0, **FAST)
        engine = EngineProcess(["run", "--config", str(config)])
        code = await finish(engine)
    assert code == 10, engine.lines[-5:]
    assert _stopped_with(engine) == [10]
    lost = engine.events("ws_disconnected")
    assert len(lost) == 4  # the first delivered 3 trades; 3 more without new data
    assert all(e["reason"].startswith("closed 100") and e["teardown_error"] is None for e in lost)
    [give_up] = engine.events("ws_give_up")
    assert "3 consecutive attempts without market data" in give_up["reason"]


@pytest.mark.parametrize("handshake", [Handshake.BAD_ACCEPT, Handshake.HUGE_HEADERS])
async def test_cli_bad_handshake_forever_exits_network_10_not_crash(
    tmp_path: Path, handshake: Handshake
) -> None:
    async with open_hostile_venue([Play(handshake=handshake)]) as venue:
        config = write_config(tmp_path, venue, **FAST)
        engine = EngineProcess(["run", "--config", str(config)])
        code = await finish(engine)
    assert code == 10, engine.lines[-5:]
    assert venue.connections == 3
    assert all(e["reason"].startswith("protocol error") for e in engine.events("ws_connect_failed"))


async def test_cli_coinbase_ack_and_drop_forever_exits_network_10(tmp_path: Path) -> None:
    async with open_fake_exchange("coinbase", [Session(frames=0, then=End.ABORT)]) as fake:
        config = write_config(tmp_path, fake, symbols=["SKL-USD"], **FAST)
        engine = EngineProcess(["run", "--config", str(config)])
        code = await finish(engine)
    assert code == 10, engine.lines[-5:]
    assert fake.accepted == 3


async def test_cli_silent_feed_answering_pings_exits_network_10_then_health_fails(
    tmp_path: Path,
) -> None:
    # trades, then silence with every ping answered: connected, yet no progress
    sessions = [Session(frames=5, then=End.HOLD), Session(frames=0, then=End.HOLD)]
    async with open_fake_exchange("binance", sessions) as fake:
        config = write_config(
            tmp_path, fake, keepalive_interval_s=0.2, max_downtime_s=2.0, **FAST
        )
        engine = EngineProcess(["run", "--config", str(config)])
        code = await finish(engine)
    assert code == 10, engine.lines[-5:]
    assert fake.accepted == 2
    assert len(engine.events("ws_no_market_data")) == 2
    [give_up] = engine.events("ws_give_up")
    assert "no market data for" in give_up["reason"]
    result = await trio.to_thread.run_sync(
        lambda: run_engine(["health", "--db", str(tmp_path / "engine.db"), "--url", ""])
    )
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: engine stopped")


async def test_cli_coinbase_error_mid_stream_saying_invalid_reconnects_not_config_12(
    tmp_path: Path,
) -> None:
    sessions = [
        Session(frames=10, error_after_frames="invalid request on the relay"),
        Session(frames=10),
    ]
    async with open_fake_exchange("coinbase", sessions) as fake:
        config = write_config(tmp_path, fake, symbols=["SKL-USD", "BAND-GBP"])
        engine = EngineProcess(["run", "--config", str(config)])
        code = await interrupt_after(
            engine,
            lambda line: line.get("event") == "venue_error",
            lambda line: line.get("event") == "ws_connected" and line.get("attempt") == 2,
        )
    assert code == 0, engine.lines[-5:]
    [error] = engine.events("venue_error")
    assert error["action"] == "reconnect"
    assert fake.accepted == 2
