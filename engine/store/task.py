"""The persistence task: batches records by size and age, writes them in a worker thread.

It is the only task that touches the database (through ``Persistence``), and it
never makes another task await disk (I6): the write runs in
``trio.to_thread.run_sync`` while the Trio thread keeps scheduling ingest,
strategy and execution. Upstream only ever awaits ``send`` on the bounded
records channel -- that is backpressure, not disk.

*Batching:* incoming lists are accumulated and flushed when
``max_batch_records`` are pending, or when the oldest pending record has
waited ``max_batch_age_s`` (a timeout on ``receive``, so a lone batch is
flushed on time even if nothing else arrives).

*Resource handling:* owns ``receive`` (``async with``). When every sender has
closed (the drain), the rest is flushed and the task returns.

*Cancellation:* a write already handed to the worker thread always completes
(``abandon_on_cancel=False``), but records still pending in this task are lost
if it is cancelled. So the runtime must never cancel it during a drain --
only at the hard deadline (exit 13), when losing them is the documented outcome.

*Error handling:* lock contention is handled inside the store (retried
forever, counted in ``persist_errors``); any other database error is logged
and propagates (L4), failing the nursery.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from engine import logs
from engine.core.events import Record
from engine.counters import Counters
from engine.ports import Persistence

PERSIST_BATCH_RECORDS: Final = 2000
"""Flush when this many records are pending. Larger batches mean fewer commits;
overload policy: the task stops receiving while a batch is written, so the
records channel fills and upstream waits (lossless backpressure, S6)."""

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
) -> None:
    """Persist every record list received until the channel closes (see module docstring).

    ``limiter`` is the writer's ``CapacityLimiter(1)``, shared with every other
    caller of the store (heartbeats, run bookkeeping) so calls never overlap.
    """

    async def write(batch: list[Record]) -> None:
        try:
            result = await trio.to_thread.run_sync(store.write_records, batch, limiter=limiter)
        except Exception as exc:
            counters.persist_errors += 1
            logs.error("persist_failed", records=len(batch), error=repr(exc))
            raise
        counters.persist_count += result.records
        counters.persist_batches += 1
        counters.persist_errors += result.lock_retries

    await batch_records(
        receive, write, max_batch_records=max_batch_records, max_batch_age_s=max_batch_age_s
    )


async def batch_records(
    receive: trio.MemoryReceiveChannel[list[Record]],
    write: Callable[[list[Record]], Awaitable[None]],
    *,
    max_batch_records: int,
    max_batch_age_s: float,
) -> None:
    """The batching policy alone: call ``write`` with each due batch, in arrival order.

    A batch is due when it holds ``max_batch_records`` records, when its oldest
    record arrived ``max_batch_age_s`` ago (by ``trio.current_time()``), or when
    the channel has closed. Never calls ``write`` with an empty batch. Separate
    from the thread hop so it can be tested on the mock clock.
    """
    pending: list[Record] = []
    flush_at = math.inf

    async def flush() -> None:
        nonlocal pending, flush_at
        batch, pending, flush_at = pending, [], math.inf
        if batch:
            await write(batch)

    async with receive:
        while True:
            with trio.move_on_at(flush_at) as waiting:
                try:
                    incoming = await receive.receive()
                except trio.EndOfChannel:
                    break
            if waiting.cancelled_caught:  # the oldest pending record is due
                await flush()
                continue
            if not incoming:
                continue
            if not pending:
                flush_at = trio.current_time() + max_batch_age_s
            pending.extend(incoming)
            if len(pending) >= max_batch_records:
                await flush()
        await flush()  # drain: every sender closed
