"""The persistence task: size/age batching (mock clock), real writes off the Trio thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from engine.core.events import Record
from engine.counters import Counters
from engine.ports import WriteResult
from engine.store.rows import table_counts
from engine.store.sqlite_store import SqliteStore, StorageFull
from engine.store.task import batch_records, run_persistence
from tests.fakes.records import ticks


class Recorder:
    """An in-memory write target: which batches were written, and when."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, list[Record]]] = []

    async def write(self, batch: list[Record]) -> None:
        self.writes.append((trio.current_time(), batch))

    @property
    def sizes(self) -> list[int]:
        return [len(b) for _, b in self.writes]


async def test_batch_records_full_batch_flushed_at_once(autojump_clock: trio.abc.Clock) -> None:
    rec = Recorder()
    send, receive = trio.open_memory_channel[list[Record]](10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: batch_records(receive, rec.write, max_batch_records=5,
                                                 max_batch_age_s=1.0))
        async with send:
            await send.send(ticks(0, 3))
            await send.send(ticks(3, 3))  # 6 >= 5: flushed now, not after 1 s
            await trio.testing.wait_all_tasks_blocked()
            assert rec.writes == [(0.0, ticks(0, 6))]
            await send.send(ticks(6, 7))
            await trio.testing.wait_all_tasks_blocked()
            assert rec.sizes == [6, 7]
            assert trio.current_time() == 0.0


async def test_batch_records_lone_batch_flushed_after_age_without_new_input(
    autojump_clock: trio.abc.Clock,
) -> None:
    rec = Recorder()
    send, receive = trio.open_memory_channel[list[Record]](10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: batch_records(receive, rec.write, max_batch_records=100,
                                                 max_batch_age_s=0.25))
        async with send:
            await trio.sleep(1.0)
            await send.send(ticks(0, 2))
            await trio.sleep(0.1)
            await send.send(ticks(2, 2))  # joins the pending batch; age counts from the first
            await trio.sleep(0.14)
            assert rec.writes == []
            await trio.sleep(0.02)
            assert rec.writes == [(1.25, ticks(0, 4))]
            await trio.sleep(5.0)  # nothing pending: no empty writes
            assert rec.sizes == [4]


async def test_batch_records_channel_closed_flushes_rest_and_returns(
    autojump_clock: trio.abc.Clock,
) -> None:
    rec = Recorder()
    send, receive = trio.open_memory_channel[list[Record]](10)
    async with send:
        await send.send(ticks(0, 3))
        await send.send([])
        await send.send(ticks(3, 1))
    await batch_records(receive, rec.write, max_batch_records=100, max_batch_age_s=10.0)
    assert rec.writes == [(0.0, ticks(0, 4))]
    with pytest.raises(trio.ClosedResourceError):
        receive.receive_nowait()  # the task owned and closed its end


async def test_batch_records_every_record_once_in_order(autojump_clock: trio.abc.Clock) -> None:
    rec = Recorder()
    send, receive = trio.open_memory_channel[list[Record]](2)
    sent: list[Record] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: batch_records(receive, rec.write, max_batch_records=10,
                                                 max_batch_age_s=0.05))
        async with send:
            for i in range(40):
                batch = ticks(i * 10, i % 7)
                sent.extend(batch)
                await send.send(batch)
                await trio.sleep(0.01 * (i % 4))
    assert [r for _, b in rec.writes for r in b] == sent
    assert all(size > 0 for size in rec.sizes)


class FakeStore:
    """Persistence port double: scripted results or failures, called from the worker thread."""

    def __init__(self, lock_retries: int = 0, fail: BaseException | None = None) -> None:
        self.lock_retries = lock_retries
        self.fail = fail
        self.batches: list[list[Record]] = []
        self.threads: set[int] = set()

    def write_records(self, records: Sequence[Record]) -> WriteResult:
        self.threads.add(threading.get_ident())
        if self.fail is not None:
            raise self.fail
        self.batches.append(list(records))
        return WriteResult(inserted=len(records), records=len(records),
                           lock_retries=self.lock_retries)


async def test_run_persistence_counts_records_batches_and_lock_retries() -> None:
    store, counters = FakeStore(lock_retries=2), Counters()
    send, receive = trio.open_memory_channel[list[Record]](10)
    async with send:
        for i in range(5):
            await send.send(ticks(i * 4, 4))
    await run_persistence(store, receive, counters, trio.CapacityLimiter(1),
                          max_batch_records=8, max_batch_age_s=60.0)
    assert [len(b) for b in store.batches] == [8, 8, 4]
    assert (counters.persist_count, counters.persist_batches, counters.persist_errors) == (
        20, 3, 6)
    assert threading.get_ident() not in store.threads  # written in a worker thread


async def test_run_persistence_write_failure_counted_and_raised() -> None:
    store, counters = FakeStore(fail=sqlite3.OperationalError("disk I/O error")), Counters()
    send, receive = trio.open_memory_channel[list[Record]](10)
    async with send:
        await send.send(ticks(0, 3))
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        await run_persistence(store, receive, counters, trio.CapacityLimiter(1))
    assert counters.persist_errors == 1
    assert counters.persist_count == 0


async def test_run_persistence_other_tasks_run_while_write_blocks() -> None:
    """I6: while the worker thread is stuck in a write, the Trio thread keeps scheduling."""
    started, gate = threading.Event(), threading.Event()

    class SlowStore(FakeStore):
        def write_records(self, records: Sequence[Record]) -> WriteResult:
            started.set()
            assert gate.wait(10), "the Trio thread was blocked"
            return super().write_records(records)

    store, counters = SlowStore(), Counters()
    send, receive = trio.open_memory_channel[list[Record]](10)
    ticks_seen = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_persistence, store, receive, counters, trio.CapacityLimiter(1))
        async with send:
            await send.send(ticks(0, 5000))
        assert await trio.to_thread.run_sync(started.wait, 10)
        for _ in range(100):  # another task makes progress during the write
            await trio.lowlevel.checkpoint()
            ticks_seen += 1
        assert store.batches == []
        gate.set()
    assert ticks_seen == 100
    assert counters.persist_count == 5000


async def test_run_persistence_cancelled_during_write_write_still_completes() -> None:
    started, gate = threading.Event(), threading.Event()

    class SlowStore(FakeStore):
        def write_records(self, records: Sequence[Record]) -> WriteResult:
            started.set()
            gate.wait(10)
            return super().write_records(records)

    store, counters = SlowStore(), Counters()
    send, receive = trio.open_memory_channel[list[Record]](10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_persistence, store, receive, counters, trio.CapacityLimiter(1))
        await send.send(ticks(0, 5000))
        assert await trio.to_thread.run_sync(started.wait, 10)
        nursery.cancel_scope.cancel()
        gate.set()
    assert [len(b) for b in store.batches] == [5000]  # not abandoned by the cancel
    await send.aclose()


async def test_run_persistence_real_store_every_record_lands(tmp_path: Path) -> None:
    store, counters = SqliteStore.open(tmp_path / "e.db"), Counters()
    send, receive = trio.open_memory_channel[list[Record]](4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_persistence(store, receive, counters,
                                                   trio.CapacityLimiter(1),
                                                   max_batch_records=700, max_batch_age_s=0.05))
        async with send:
            for i in range(30):
                await send.send(ticks(i * 100, 100))
    assert table_counts(store.connection)["ticks"] == 3000
    assert counters.persist_count == 3000
    assert counters.persist_batches >= 5
    assert counters.persist_errors == 0
    store.close()


class FullDiskStore:
    """Refuses the first ``failures`` writes as a full disk would, then stores."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[int] = []
        self.stored: list[Record] = []

    def write_records(self, records: Sequence[Record]) -> WriteResult:
        self.attempts.append(len(records))
        if len(self.attempts) <= self.failures:
            raise StorageFull("disk full while writing: database or disk is full")
        self.stored.extend(records)
        return WriteResult(inserted=len(records), records=len(records), lock_retries=0)


@pytest.mark.parametrize("with_abandon", [False, True])
async def test_run_persistence_disk_full_reported_once_and_same_batch_retried_until_stored(
    with_abandon: bool,
) -> None:
    store, counters = FullDiskStore(failures=3), Counters()
    faults: list[Exception] = []
    send, receive = trio.open_memory_channel[list[Record]](10)
    async with send:
        await send.send(ticks(0, 5))
    await run_persistence(store, receive, counters, trio.CapacityLimiter(1),
                          abandon=(lambda: None) if with_abandon else None,
                          on_fault=faults.append)
    assert store.attempts == [5, 5, 5, 5]  # the same batch, never dropped
    assert store.stored == ticks(0, 5)
    assert [type(f) for f in faults] == [StorageFull]  # told once, then retried quietly
    assert (counters.persist_errors, counters.persist_count) == (3, 5)


async def test_run_persistence_disk_full_without_fault_handler_raises() -> None:
    store, counters = FullDiskStore(failures=1), Counters()
    send, receive = trio.open_memory_channel[list[Record]](10)
    async with send:
        await send.send(ticks(0, 2))
    with pytest.raises(StorageFull):
        await run_persistence(store, receive, counters, trio.CapacityLimiter(1),
                              abandon=lambda: None)
    assert counters.persist_errors == 1
