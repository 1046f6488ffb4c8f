"""Issue 14's batching policy: coalescing at every hop, persistence receiving while it writes.

Mock clock and in-memory channels; the live bench (bench/bench_live.py) is the judge of
speed, these tests only of the policy: how many batches a burst becomes, which bounds
hold in records under a stalled writer, and that the drain loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.adapters.market.ws.forwarder import TickForwarder
from engine.config.schema import Mode
from engine.core.events import Record, Signal, Tick
from engine.counters import Counters
from engine.ports import DecisionBatch, TickBatch
from engine.runtime.pipeline import COALESCE_ITEMS, execution_task, strategy_task, take_queued
from engine.store.task import Backlog, batch_records
from tests.fakes.records import tick, ticks


class BatchStrategy:
    """Passes ticks through; remembers the size of every batch it was given."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_batch(self, batch: Sequence[Tick]) -> list[Tick | Signal]:
        self.sizes.append(len(batch))
        return list(batch)


class BatchExecution:
    """Produces nothing; remembers every batch it was given."""

    trading_state = "ACTIVE"
    stale_ticks = 0

    def __init__(self) -> None:
        self.batches: list[DecisionBatch] = []

    def process(self, batch: DecisionBatch) -> list[Record]:
        self.batches.append(batch)
        return []


# -- the forwarder: a burst read frame by frame travels as few lists -------------------


async def test_forwarder_burst_read_one_frame_per_pass_reaches_the_channel_as_few_lists(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The reader offers one tick per scheduler pass, as it does while trio-websocket
    # hands it a burst frame by frame; the forwarder lets the burst join the list.
    counters = Counters()
    send, receive = trio.open_memory_channel[TickBatch](16)
    forwarder = TickForwarder(send, counters, capacity=1_000)
    burst = ticks(0, 200)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(forwarder.run)
        await trio.testing.wait_all_tasks_blocked()
        for t in burst:
            forwarder.offer(t)
            await trio.lowlevel.checkpoint()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    lists = []
    while True:
        try:
            lists.append(receive.receive_nowait())
        except trio.WouldBlock:
            break
    assert [t for batch in lists for t in batch] == burst  # every tick once, in order
    assert len(lists) <= 200 // 4  # was one list per tick
    assert counters.ingest_processed == 200
    assert counters.bp_drops_tick == 0


async def test_forwarder_lone_tick_is_sent_without_waiting_for_more(
    autojump_clock: trio.abc.Clock,
) -> None:
    send, receive = trio.open_memory_channel[TickBatch](16)
    forwarder = TickForwarder(send, Counters(), capacity=1_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(forwarder.run)
        await trio.testing.wait_all_tasks_blocked()
        forwarder.offer(tick(1))
        with trio.fail_after(1):  # on the mock clock: no timer stands between
            assert await receive.receive() == [tick(1)]
        assert trio.current_time() == 0.0
        nursery.cancel_scope.cancel()


# -- strategy and execution take everything queued in one hop --------------------------


async def test_strategy_and_execution_take_everything_queued_as_one_batch(
    autojump_clock: trio.abc.Clock,
) -> None:
    strategy, execution = BatchStrategy(), BatchExecution()
    tick_send, tick_recv = trio.open_memory_channel[TickBatch](16)
    decision_send, decision_recv = trio.open_memory_channel[DecisionBatch](4)
    record_send, record_recv = trio.open_memory_channel[list[Record]](4)
    for i in range(10):  # ten lists queued before the strategy runs
        tick_send.send_nowait(ticks(i * 3, 3))
    await tick_send.aclose()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(strategy_task, strategy, tick_recv, decision_send, Counters())
        nursery.start_soon(execution_task, execution, decision_recv, record_send, Counters(),
                           Mode.SHADOW)
    records: list[Record] = []
    async with record_recv:
        async for batch in record_recv:
            records.extend(batch)
    assert strategy.sizes == [3] * 10  # on_batch per list as sent (a failure's reach)...
    assert [len(b) for b in execution.batches] == [30]  # ...but one hop, one batch
    assert records == ticks(0, 30)


async def test_coalesced_batches_stop_at_the_cap(autojump_clock: trio.abc.Clock) -> None:
    strategy = BatchStrategy()
    tick_send, tick_recv = trio.open_memory_channel[TickBatch](16)
    decision_send, decision_recv = trio.open_memory_channel[DecisionBatch](16)
    size = COALESCE_ITEMS // 2 + 1
    for i in range(4):
        tick_send.send_nowait(ticks(i * size, size))
    await tick_send.aclose()
    await strategy_task(strategy, tick_recv, decision_send, Counters())
    assert strategy.sizes == [size] * 4
    sent = [decision_recv.receive_nowait() for _ in range(2)]
    assert [len(b) for b in sent] == [2 * size, 2 * size]  # 2 lists reach the cap
    got = [d for batch in sent for d in batch]
    assert got == ticks(0, 4 * size)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=30), st.integers(1, 64))
def test_take_queued_every_item_once_in_order_and_bounded(sizes: list[int], cap: int) -> None:
    async def main() -> tuple[list[list[int]], list[int]]:
        send, receive = trio.open_memory_channel[list[int]](len(sizes) + 1)
        sent: list[int] = []
        for n, size in enumerate(sizes):
            batch = list(range(n * 100, n * 100 + size))
            sent.extend(batch)
            send.send_nowait(batch)
        await send.aclose()
        taken = []
        async for first in receive:
            before = list(first)
            batch = take_queued(receive, first, cap)
            assert first == before  # the producer's list is never modified
            taken.append(batch)
        return taken, sent

    taken, sent = trio.run(main)
    assert [x for batch in taken for x in batch] == sent
    biggest = max(sizes, default=0)
    for batch in taken:
        assert len(batch) < cap + biggest or len(batch) <= biggest  # stops once it reaches cap


# -- persistence: receiving while a write is in flight ---------------------------------


class GatedWriter:
    """A write target that blocks until ``gate`` is set; records what it wrote."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.started = trio.Event()
        self.batches: list[list[Record]] = []

    async def write(self, batch: list[Record]) -> None:
        self.started.set()
        await self.gate.wait()
        self.batches.append(batch)


async def test_write_in_flight_does_not_stop_the_record_channel_being_received(
    autojump_clock: trio.abc.Clock,
) -> None:
    writer = GatedWriter()
    send, receive = trio.open_memory_channel[list[Record]](4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: batch_records(receive, writer.write, max_batch_records=100,
                                                 max_batch_age_s=0.2, max_collect_records=50))
        async with send:
            await send.send(ticks(0, 10))  # due after 0.2 s: the write starts and blocks
            await writer.started.wait()
            for i in range(1, 5):  # 40 more records while the write is in flight
                await send.send(ticks(i * 10, 10))
                await trio.testing.wait_all_tasks_blocked()
                assert send.statistics().current_buffer_used == 0  # taken, not queued
            writer.gate.set()
    assert [r for batch in writer.batches for r in batch] == ticks(0, 50)
    assert [len(b) for b in writer.batches] == [10, 40]


async def test_stalled_writer_bound_in_records_holds_then_drain_writes_everything(
    autojump_clock: trio.abc.Clock,
) -> None:
    writer = GatedWriter()
    send, receive = trio.open_memory_channel[list[Record]](4)
    sent: list[Record] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: batch_records(receive, writer.write, max_batch_records=100,
                                                 max_batch_age_s=0.2, max_collect_records=30))
        async with send:
            first = ticks(0, 5)
            sent.extend(first)
            await send.send(first)
            await writer.started.wait()  # the lone list came due after 0.2 s; stuck
            n = 5
            blocked = False
            for _ in range(40):  # lists of 7: the collector stops past 30 pending
                batch = ticks(n, 7)
                n += 7
                with trio.move_on_after(1.0) as waited:
                    await send.send(batch)
                if waited.cancelled_caught:
                    blocked = True
                    break
                sent.extend(batch)
            assert blocked  # upstream waits: backpressure, not a drop
            # held: 30 pending (+ one list of 7 over the line) and the 4 queued lists
            assert len(sent) - 5 <= 30 + 7 + 4 * 7
            writer.gate.set()
            await send.send(ticks(n, 3))  # room again once the write ended
            sent.extend(ticks(n, 3))
    # the drain (every sender closed) wrote everything accepted, once, in order
    assert [r for batch in writer.batches for r in batch] == sent


async def test_drain_while_a_write_is_in_flight_persists_every_record(
    autojump_clock: trio.abc.Clock,
) -> None:
    writer = GatedWriter()
    send, receive = trio.open_memory_channel[list[Record]](4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: batch_records(receive, writer.write, max_batch_records=8,
                                                 max_batch_age_s=10.0))
        await send.send(ticks(0, 8))
        await writer.started.wait()
        await send.send(ticks(8, 3))
        await send.aclose()  # the drain: every sender closed, a write still in flight
        await trio.testing.wait_all_tasks_blocked()
        writer.gate.set()
    assert [len(b) for b in writer.batches] == [8, 3]
    assert [r for b in writer.batches for r in b] == ticks(0, 11)


@pytest.mark.parametrize("failing_write", [0, 1])
async def test_write_failure_propagates_unwrapped(failing_write: int) -> None:
    calls = 0

    async def write(batch: list[Record]) -> None:
        nonlocal calls
        calls += 1
        if calls > failing_write:
            raise OSError("disk gone")

    send, receive = trio.open_memory_channel[list[Record]](4)
    async with send:
        for i in range(3):
            await send.send(ticks(i * 4, 4))
    with pytest.raises(OSError, match="disk gone"):
        await batch_records(receive, write, max_batch_records=4, max_batch_age_s=1.0)


async def test_backlog_counts_lists_held_until_written(autojump_clock: trio.abc.Clock) -> None:
    # The watchdog adds these to the queues: work waiting in persistence is pending work.
    writer = GatedWriter()
    backlog = Backlog()
    send, receive = trio.open_memory_channel[list[Record]](4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: batch_records(receive, writer.write, max_batch_records=100,
                                                 max_batch_age_s=0.2, backlog=backlog))
        async with send:
            await send.send(ticks(0, 3))
            await writer.started.wait()  # one list in the write in flight
            await send.send(ticks(3, 3))
            await send.send([])  # an empty list is no work
            await trio.testing.wait_all_tasks_blocked()
            assert backlog.lists == 2
            writer.gate.set()
    assert backlog.lists == 0
    assert [r for b in writer.batches for r in b] == ticks(0, 6)
