"""The real engine (``python -m engine run``) against hostile venues: the exit codes.

Before these fixes: a protocol violation followed by a held TCP connection stalled
the engine forever (connected=1, health PASS); a malformed handshake reply crashed
it (exit 1); a venue that acks and drops kept it reconnecting forever (never 10);
a Coinbase ``error`` mid-stream containing "invalid" stopped it with 12 (no systemd
restart). Now: 10 when the budget is spent, 12 only for a refused subscribe.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from engine.adapters.market.recorder import RECORD_QUEUE_BYTES
from tests.fakes.engine_process import EngineProcess, run_engine
from tests.fakes.fake_exchange import End, Session, TapeFrame, binance_tape, open_fake_exchange
from tests.fakes.feed_cli import finish, interrupt_after, wait_log, write_config
from tests.fakes.hostile_venue import Handshake, Play, open_hostile_venue, ping_frame, text_frame
from tests.fakes.hostile_venue import trade_frames as trades

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


async def test_cli_venue_that_never_answers_the_upgrade_exits_network_10(tmp_path: Path) -> None:
    async with open_hostile_venue([Play(reply=b"")]) as venue:
        config = write_config(tmp_path, venue, connect_timeout_s=0.3, **FAST)
        engine = EngineProcess(["run", "--config", str(config)])
        code = await finish(engine)
    assert code == 10, engine.lines[-5:]
    assert venue.connections == 3
    assert all(e["reason"] == "connect timed out" for e in engine.events("ws_connect_failed"))


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


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def _drain(fd: int) -> int:
    total = 0
    while chunk := os.read(fd, 1 << 20):
        total += len(chunk)
    return total


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
async def test_cli_record_900kb_frames_stalled_disk_memory_bounded_in_bytes(
    tmp_path: Path,
) -> None:
    # The recording goes to a FIFO nobody reads -- a disk that stopped -- while the
    # venue sends 300 frames of 900 KB (270 MB). The recorder holds at most
    # RECORD_QUEUE_BYTES (32 MiB); the rest is dropped and counted, and the feed
    # keeps reading. Before: bounded by 100,000 *frames* -- all 270 MB held.
    fifo = tmp_path / "stalled.txt"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    pad = "x" * 900_000
    big = tuple(
        TapeFrame(f.text.replace('"e":"trade"', f'"e":"trade","pad":"{pad}"', 1),
                  f.symbol, f.trade_id)
        for f in binance_tape()[:300]
    )
    try:
        async with open_fake_exchange("binance", [Session(frames=300)], tape=big) as fake:
            config = write_config(tmp_path, fake)
            engine = EngineProcess(
                ["record", "--venue", "binance", "--symbols", "BTCUSDT", "--out", str(fifo),
                 "--url", fake.url, "--config", str(config)]
            )  # fmt: skip
            try:
                await wait_log(engine, lambda line: line.get("event") == "record_overflow")
                with trio.fail_after(60):
                    await fake.progress.wait_until(lambda: len(fake.sent) == 300)
                peak_mb = _peak_rss_mb(engine.proc.pid)
                engine.send_signal(signal.SIGINT)
                os.set_blocking(reader, True)
                drained = await trio.to_thread.run_sync(_drain, reader)  # the disk recovers
            finally:
                code = await finish(engine)
    finally:
        os.close(reader)
    assert code == 0, engine.lines[-5:]
    [done] = engine.events("record_finished")
    # the last frames may still be in flight when SIGINT lands; nothing read is unaccounted
    assert done["frames_received"] > 200
    assert done["frames_written"] + done["frames_dropped"] == done["frames_received"]
    print(f"900 KB frames, stalled disk: {done} peak RSS {peak_mb:.0f} MB")
    assert 0 < done["frames_written"] <= RECORD_QUEUE_BYTES // 900_000
    assert drained < RECORD_QUEUE_BYTES
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"
