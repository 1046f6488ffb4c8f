"""The persistence task: batches records by size and age, writes them in a worker thread.

It is the only task that touches the database (through ``Persistence``), and it
never makes another task await disk (I6): the write runs in
``trio.to_thread.run_sync`` while the Trio thread keeps scheduling ingest,
strategy and execution. Upstream only ever awaits ``send`` on the bounded
records channel -- that is backpressure, not disk.

*Batching:* incoming lists are accumulated and flushed when
``max_batch_records`` are pending, or when the oldest pending record has
waited ``max_batch_age_s`` (a deadline in the writer, so a lone batch is
flushed on time even if nothing else arrives). After each ``receive``, lists
already queued are taken with ``receive_nowait`` until the batch is full: a
Trio ``receive`` is a checkpoint, and while this task waits its turn for each
list the upstream tasks decode another batch each (measured: collecting 16
lists took ~38 ms, longer than writing them), so the writer sat idle.

*Receiving while a write is in flight:* a collector and a writer share the
pending list (``batch_records``). The writer takes the whole list when it is
due and awaits the write; meanwhile the collector keeps receiving, up to
``PERSIST_COLLECT_RECORDS`` records, and only then stops (the records channel
fills and upstream waits: backpressure, bounded in records). Before, the task
stopped receiving for the whole write (18 ms p50, 71 ms max at 10k ticks/s)
and the queues behind it, bounded in lists of one tick each, filled within
6 ms: the write's duration became the decision path's p99 (issue 14,
docs/performance.md "Live path").

*GIL hand-off:* the worker thread needs the GIL back after every step that
released it (its start, ``BEGIN``, each INSERT, ``COMMIT``). With the
default 5 ms switch interval it rarely gets it while the Trio thread is busy:
Trio releases and re-takes the GIL itself every few ms (``epoll`` with a zero
timeout), each release only wakes the waiting thread, which loses the race and
starts its 5 ms wait over -- so the writer crawled (5 us per record against
1.7 us alone) until the pipeline filled up and the Trio thread blocked, and the
two threads took turns instead of overlapping. A short interval makes CPython
hand the GIL over within ``GIL_SWITCH_INTERVAL_S``; the cost is more frequent
switches between busy threads, a few us each. Measured on the 1M-trade replay
benchmark: 0.77x -> 0.87x the floor together with the larger batches.

*Resource handling:* owns ``receive`` (``async with``). When every sender has
closed (the drain), the rest is flushed and the task returns.

*Cancellation:* a write already handed to the worker thread always completes
(``abandon_on_cancel=False``), but records still pending in this task are lost
if it is cancelled. So the runtime must never cancel it during a drain --
only at the hard deadline (exit 13) or when another pipeline task failed, when
losing them is the documented outcome. Being cancelled also calls ``abandon``
(``SqliteStore.abandon``): a write retrying on a locked database would otherwise
keep the cancelled nursery -- and the process -- waiting for as long as the
lock is held, instead of exiting with the failure's code.

*Error handling:* lock contention is handled inside the store (retried
forever, counted in ``persist_errors`` and, live, in ``persist_retries``). A
resource fault (``StorageFull``, ``StorageFailed``: disk full, an I/O error) does
not drop the batch: it is counted in ``persist_errors``, reported once to
``on_fault`` (the runtime stops the intake and drains, exit 13) and the *same*
batch is retried with backoff until it lands or the drain deadline cancels the
task -- so what was accepted is still written if space frees in time. Any other
database error (a file replaced or read-only, a corrupt page, a broken
constraint) is logged and propagates (L4), failing the nursery.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Final, NamedTuple

import trio
from trio_util import AsyncValue

from engine import logs
from engine.core.events import Record
from engine.counters import Counters
from engine.exits import EngineError
from engine.ports import Persistence, WriteResult, queued_lists
from engine.store.sqlite_store import (
    RETRY_BACKOFF_FIRST_S,
    RETRY_BACKOFF_MAX_S,
    StorageFailed,
    StorageFull,
    backoff_s,
)

PERSIST_BATCH_RECORDS: Final = 16384
"""Flush when this many records are pending. Larger batches mean fewer commits
and fewer GIL hand-offs per record (measured, 1M-trade replay: 2,000 -> 16,384
took the engine from 0.87x to 0.94x the floor with the switch interval below);
memory: one batch of records and its parameters, a few MB. Overload policy: past
this many pending records (``PERSIST_COLLECT_RECORDS`` while a write is in flight)
the task stops receiving, so the records channel fills and upstream waits (lossless
backpressure, S6)."""

PERSIST_COLLECT_RECORDS: Final = 4096
"""While a write is in flight, the task goes on receiving until this many records are
pending, then waits for the write (see *Receiving while a write is in flight*). A
write of a live feed's 0.2 s batch takes ~20-100 ms (docs/performance.md), so at
20k ticks/s a write leaves at most ~2,000 pending: the decisions never wait for disk.
Smaller than ``PERSIST_BATCH_RECORDS`` so that a writer stuck on a lock or a full disk
holds the intake back after a few thousand records, not after two whole batches."""

GIL_SWITCH_INTERVAL_S: Final = 0.0002
"""The interpreter's switch interval while this task runs (``sys.setswitchinterval``;
Python's default is 0.005), restored when it returns. See *GIL hand-off* above."""

PERSIST_BATCH_AGE_S: Final = 0.2
"""Flush when the oldest pending record is this old, so the database (and the
dashboard reading it) trails the pipeline by at most about this much."""


async def run_persistence(
    store: Persistence,
    receive: trio.MemoryReceiveChannel[list[Record]],
    counters: Counters,
    limiter: trio.CapacityLimiter,
    *,
    max_batch_records: int = PERSIST_BATCH_RECORDS,
    max_batch_age_s: float = PERSIST_BATCH_AGE_S,
    abandon: Callable[[], None] | None = None,
    on_fault: Callable[[EngineError], None] | None = None,
    backlog: Backlog | None = None,
) -> None:
    """Persist every record list received until the channel closes (see module docstring).

    ``abandon`` is called if this task is cancelled while a write is in the
    worker thread (see *Cancellation*). ``on_fault`` is told of a resource fault
    that is being retried (see *Error handling*); without it such a fault propagates.

    ``limiter`` is the writer's ``CapacityLimiter(1)``, shared with every other
    caller of the store (heartbeats, run bookkeeping) so calls never overlap.
    While it runs, the interpreter's switch interval is ``GIL_SWITCH_INTERVAL_S``
    (process-wide; the previous value is restored on return, also on failure).
    """

    async def write_once(batch: list[Record]) -> WriteResult:
        if abandon is None:
            return await trio.to_thread.run_sync(store.write_records, batch, limiter=limiter)
        in_thread = threading.Event()

        def write_in_thread() -> WriteResult:
            in_thread.set()
            return store.write_records(batch)

        with _single_error():  # the nursery wraps the write's own failure
            async with trio.open_nursery() as nursery:
                done = await nursery.start(_abandon_if_cancelled, abandon, in_thread.is_set)
                try:
                    return await trio.to_thread.run_sync(write_in_thread, limiter=limiter)
                finally:
                    done.cancel()

    async def write(batch: list[Record]) -> None:
        attempt = 0
        while True:
            try:
                result = await write_once(batch)
                break
            except (StorageFull, StorageFailed) as exc:
                counters.persist_errors += 1
                if on_fault is None:
                    logs.error("persist_failed", records=len(batch), error=repr(exc))
                    raise
                attempt += 1
                delay = backoff_s(attempt, RETRY_BACKOFF_FIRST_S, RETRY_BACKOFF_MAX_S)
                logs.error(
                    "persist_fault_retry",
                    records=len(batch),
                    attempt=attempt,
                    delay_s=delay,
                    error=str(exc),
                )
                if attempt == 1:
                    on_fault(exc)
                await trio.sleep(delay)
            except Exception as exc:
                counters.persist_errors += 1
                logs.error("persist_failed", records=len(batch), error=repr(exc))
                raise
        if attempt:
            logs.info("persist_fault_recovered", records=len(batch), attempts=attempt + 1)
        counters.persist_count += result.records
        counters.persist_batches += 1
        counters.persist_errors += result.lock_retries

    before = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        await batch_records(
            receive,
            write,
            max_batch_records=max_batch_records,
            max_batch_age_s=max_batch_age_s,
            backlog=backlog,
        )
    finally:
        sys.setswitchinterval(before)


async def _abandon_if_cancelled(
    abandon: Callable[[], None],
    started: Callable[[], bool],
    *,
    task_status: trio.TaskStatus[trio.CancelScope],
) -> None:
    """Wait; call ``abandon`` if cancelled from outside (not through the scope it hands
    back) once the write ``started`` in the worker thread. A write still waiting for the
    writer's ``CapacityLimiter`` is simply not started (Trio cancels that wait), so
    nothing is abandoned: ``abandon`` is for a write stuck *in* SQLite, and it has a
    cost -- after it the final checkpoint is ``PASSIVE`` and leaves the WAL in place
    (``SqliteStore.checkpoint``)."""
    with trio.CancelScope() as done:
        task_status.started(done)
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            if not done.cancel_called and started():
                abandon()
            raise


async def batch_records(
    receive: trio.MemoryReceiveChannel[list[Record]],
    write: Callable[[list[Record]], Awaitable[None]],
    *,
    max_batch_records: int,
    max_batch_age_s: float,
    max_collect_records: int = PERSIST_COLLECT_RECORDS,
    backlog: Backlog | None = None,
) -> None:
    """The batching policy alone: call ``write`` with each due batch, in arrival order.

    A batch is due when it holds ``max_batch_records`` records, when its oldest
    record arrived ``max_batch_age_s`` ago (by ``trio.current_time()``), or when
    the channel has closed. Never calls ``write`` with an empty batch. Separate
    from the thread hop so it can be tested on the mock clock.

    Two tasks share the pending list (*Receiving while a write is in flight* in
    the module docstring): the collector receives into it, the writer takes it
    whole when due and awaits ``write``. The collector stops receiving -- and
    upstream waits: backpressure counted in records, not lists -- only while
    ``max_batch_records`` are pending, or ``max_collect_records`` while a write
    is in flight. Records held: the batch being written plus the pending list,
    each bounded by its limit plus one incoming list.
    """
    pending = _Pending(Backlog() if backlog is None else backlog)
    async with receive:
        with _single_error():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_when_due, pending, write, max_batch_records,
                                   max_batch_age_s)
                await _collect(receive, pending, max_batch_records, max_collect_records)
                pending.close()


class Backlog:
    """How many record lists the persistence task holds that are not yet written (pending
    or in the write in flight). The watchdog counts them with the queues: work waiting
    while nothing is persisted is a stall, wherever it waits (``watchdog_task``)."""

    def __init__(self) -> None:
        self.lists = 0


class _Held(NamedTuple):
    """What the two tasks of ``batch_records`` wait on (a tuple: it is rebuilt for every
    list received)."""

    records: int
    """Records pending (received, not yet taken by the writer)."""
    closed: bool
    """The channel ended: nothing more will be added."""
    writing: bool
    """A write is in flight."""


class _Pending:
    """Records received and not yet handed to ``write``; ``held`` wakes the other task."""

    def __init__(self, backlog: Backlog) -> None:
        self.backlog = backlog
        self.lists = 0
        """Non-empty lists in ``records``."""
        self.records: list[Record] = []
        self.since = math.inf
        """``trio.current_time()`` when the oldest pending record arrived."""
        self.held = AsyncValue(_Held(0, False, False))

    def add(self, incoming: list[Record]) -> None:
        if not incoming:
            return
        if not self.records:
            self.since = trio.current_time()
        self.records.extend(incoming)
        self.lists += 1
        self.backlog.lists += 1
        held = self.held.value
        self.held.value = _Held(len(self.records), held.closed, held.writing)

    def take(self) -> tuple[list[Record], int]:
        """Everything pending and how many lists it was, for a write that starts now."""
        batch, self.records, self.since = self.records, [], math.inf
        lists, self.lists = self.lists, 0
        self.held.value = _Held(0, self.held.value.closed, True)
        return batch, lists

    def written(self, lists: int) -> None:
        self.backlog.lists -= lists
        held = self.held.value
        self.held.value = _Held(held.records, held.closed, False)

    def close(self) -> None:
        held = self.held.value
        self.held.value = _Held(held.records, True, held.writing)


async def _collect(
    receive: trio.MemoryReceiveChannel[list[Record]],
    pending: _Pending,
    max_records: int,
    max_while_writing: int,
) -> None:
    """Receive into ``pending`` until the channel ends, waiting while it is full."""
    held = pending.held

    def room(h: _Held) -> int:
        return (min(max_records, max_while_writing) if h.writing else max_records) - h.records

    while True:
        if room(held.value) <= 0:  # the writer is behind: backpressure
            await held.wait_value(lambda h: room(h) > 0)
        cap = room(held.value)
        try:
            first = await receive.receive()
        except trio.EndOfChannel:
            return
        for incoming in queued_lists(receive, first, cap):  # what is queued, no checkpoint
            pending.add(incoming)


async def _write_when_due(
    pending: _Pending,
    write: Callable[[list[Record]], Awaitable[None]],
    max_records: int,
    max_age_s: float,
) -> None:
    """Take ``pending`` whenever it is due and write it; return once closed and empty."""
    held = pending.held
    while True:
        now = await held.wait_value(lambda h: h.records > 0 or h.closed)
        if not now.records:  # closed, nothing left
            return
        if now.records < max_records and not now.closed:
            with trio.move_on_at(pending.since + max_age_s):
                await held.wait_value(lambda h: h.records >= max_records or h.closed)
        batch, lists = pending.take()
        try:
            await write(batch)
        finally:
            pending.written(lists)


@contextmanager
def _single_error() -> Iterator[None]:
    """Re-raise a nursery's lone ``Exception`` unwrapped (the caller's error types stay
    catchable: ``StorageFull``, ``StorageFailed``); anything else passes as it came."""
    try:
        yield
    except BaseExceptionGroup as group:
        inner = group.exceptions[0] if len(group.exceptions) == 1 else None
        if isinstance(inner, Exception):
            raise inner from None
        raise
