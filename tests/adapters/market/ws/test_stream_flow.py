"""WebSocketStream under load and on the record: backpressure drops (S6), recording -> replay."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from engine.adapters.market.capture import iter_capture
from engine.adapters.market.replay import ReplayStream
from engine.adapters.market.ws.stream import LIVE_PENDING_TICKS, WebSocketStream
from engine.adapters.progress import Progress
from engine.core.events import Tick
from engine.counters import Counters
from engine.ports import TickBatch
from tests.fakes.fake_exchange import (
    End,
    Session,
    extended_binance_tape,
    ingest_section,
    open_fake_exchange,
    running_stream,
    take,
    until,
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

FLOOD_FRAMES = 20_000
SLOW_QUEUE = 4


async def test_flood_stalled_strategy_newest_dropped_counted_reader_never_blocks() -> None:
    tape = extended_binance_tape(FLOOD_FRAMES)
    async with open_fake_exchange("binance", [Session()], tape=tape) as fake:
        stream = WebSocketStream(ingest_section(fake), Counters())
        send, receive = trio.open_memory_channel[TickBatch](SLOW_QUEUE)
        consumed: list[Tick] = []
        strategy_progress = Progress()
        unstall = trio.Event()

        async def stalled_strategy() -> None:
            await unstall.wait()  # a strategy stuck for the whole flood
            async for batch in receive:
                consumed.extend(batch)
                strategy_progress.bump()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.stream, send)
            nursery.start_soon(stalled_strategy)
            counters = stream.counters
            # the reader takes every frame off the socket although nothing is consumed
            await until(stream.progress, lambda: counters.ingest_received == FLOOD_FRAMES)
            assert stream.forwarder is not None
            held = counters.ingest_processed + stream.forwarder.held
            # memory bound: the queue's batches, one in flight and the pending list;
            # everything else was dropped
            assert held <= (SLOW_QUEUE + 2) * LIVE_PENDING_TICKS
            assert counters.bp_drops_tick == FLOOD_FRAMES - held
            unstall.set()
            await until(strategy_progress, lambda: len(consumed) == held)
            nursery.cancel_scope.cancel()
    assert len(fake.sent) == FLOOD_FRAMES
    assert counters.bp_drops_tick >= FLOOD_FRAMES - (SLOW_QUEUE + 2) * LIVE_PENDING_TICKS
    assert counters.ingest_processed == len(consumed)
    assert send.statistics().max_buffer_size == SLOW_QUEUE
    assert stream._dedup.remembered() == 0
    # drop-newest: what got through is the oldest, in order, never repeated
    assert [t.trade_id for t in consumed] == [f.trade_id for f in tape[: len(consumed)]]
    assert counters.reconnects == 0


async def test_burst_coalesced_into_batches_nothing_dropped() -> None:
    # 2,000 trades at once into a 4-batch queue: the pending list absorbs the burst
    tape = extended_binance_tape(2_000)
    async with open_fake_exchange("binance", [Session()], tape=tape) as fake:
        section = ingest_section(fake)
        async with running_stream(section, capacity=SLOW_QUEUE) as (stream, receive):
            ticks = await take(receive, 2_000)
    assert [t.trade_id for t in ticks] == [f.trade_id for f in tape]
    assert stream.counters.bp_drops_tick == 0


async def test_recorded_capture_replays_to_the_same_ticks(tmp_path: Path) -> None:
    capture = tmp_path / "live.gz"
    sessions = [
        Session(frames=40, malformed_every=10, then=End.ABORT),
        Session(resend=5, frames=40, malformed_every=10),
    ]
    async with open_fake_exchange("binance", sessions) as fake:
        section = ingest_section(fake, record_path=str(capture))
        async with running_stream(section) as (stream, receive):
            live = await take(receive, 80)
            await until(stream.progress, lambda: stream.counters.parse_errors == 8)
    assert stream.counters.duplicates == 5
    # every frame received is on disk, in order, with its receive time
    lines = [line for line in iter_capture(capture) if line.ts_recv >= 0]
    assert len(lines) == stream.counters.ingest_received == 40 + 4 + 5 + 40 + 4
    ts_by_id = {t.trade_id: t.ts_recv for t in live}
    sent = {f.text.encode() for f in fake.sent}  # the tape as printed (restamped) by the fake
    recorded_trades = [ln for ln in lines if ln.payload in sent]
    assert len(recorded_trades) == 85
    # the replay of the recording meets the same input: same parse errors, same ticks
    counters = Counters()
    send, replay_receive = trio.open_memory_channel[TickBatch](1000)
    await ReplayStream([capture], counters).stream(send)
    send.close()
    replayed = [t async for batch in replay_receive for t in batch]
    assert counters.parse_errors == 8
    first_seen: dict[str, Tick] = {}
    for tick in replayed:
        first_seen.setdefault(tick.event_id, tick)
    assert list(first_seen.values()) == live
    assert all(ts_by_id[t.trade_id] == t.ts_recv for t in first_seen.values())


async def test_record_only_mode_records_without_decoding(tmp_path: Path) -> None:
    capture = tmp_path / "raw.txt"
    async with open_fake_exchange("binance", [Session(frames=30, malformed_every=3)]) as fake:
        section = ingest_section(fake, record_path=str(capture), max_parse_errors_per_min=0)
        async with running_stream(section, decode=False) as (stream, receive):
            await until(stream.progress, lambda: stream.counters.ingest_received == 40)
            assert receive.statistics().current_buffer_used == 0
    assert stream.counters.parse_errors == 0  # nothing decoded, so no budget to spend
    assert stream.counters.ingest_processed == 0
    assert len([ln for ln in iter_capture(capture) if ln.ts_recv >= 0]) == 40
