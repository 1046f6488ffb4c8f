"""The one nursery: four tasks, three bounded channels, one drain order, one exit code.

Why one nursery and channels closing in order: the drain then needs no flags --
when ingest ends its send side closes and each ``async for`` downstream ends in
turn. The tasks, channel sizes, drain and exit precedence are described once, in
docs/architecture.md ("Parts and arrows", "Channels, sizes and overload policy",
"Shutdown: the drain", "Exit codes").
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Final, TypeVar

import trio

from engine import logs
from engine.config.schema import Mode
from engine.core.events import Fill, Order, Record, RiskState, Veto, VetoReason
from engine.counters import Counters
from engine.exits import EngineError, ExitCode, Overload, StrategyFailed, exit_code_for
from engine.ports import (
    DecisionBatch,
    MarketDataStream,
    OrderExecution,
    Persistence,
    RecordBatch,
    Strategy,
    TickBatch,
    VenueLink,
    queued_lists,
)
from engine.runtime.console import failure_line
from engine.runtime.heartbeat import heartbeat_task, watchdog_task, write_heartbeat
from engine.runtime.shutdown import (
    arm_process_deadline,
    drain_deadline_task,
    signal_task,
    start_drain_clock,
    stop_on_fault,
)
from engine.runtime.state import RunState
from engine.store.sqlite_store import SqliteStore, StorageFailed, StorageFull
from engine.store.task import PERSIST_BATCH_AGE_S, Backlog, run_persistence

T = TypeVar("T")

COALESCE_ITEMS: Final = 4_096
"""The most ticks (decisions) the strategy (execution) task takes in one hop: after each
``receive`` it adds every list already queued behind it (``receive_nowait``, no
checkpoint per list) up to this size, so a burst costs one wake-up and one send per
channel instead of one per list (the strategy still sees each list as it was sent:
``on_batch`` per list; execution gets them as one ``process`` call). It also bounds
the lists those tasks send, and so the decision and record queues in items below."""

TICK_QUEUE_BATCHES: Final = 16
"""ingest -> strategy, in lists of at most 1,000 ticks (``REPLAY_BATCH_TICKS``,
``LIVE_PENDING_TICKS``): at most 16,000 ticks. Overload policy is the source's: a
replay awaits (lossless backpressure); a live feed drops the newest tick from its
bounded pending buffer and counts ``bp_drops_tick`` (its socket reader never waits)."""

DECISION_QUEUE_BATCHES: Final = 4
"""strategy -> execution, in lists of at most ``COALESCE_ITEMS`` ticks (with their
signals): at most 16,384 ticks. Never dropped: a full queue is lossless backpressure
(the tick queue fills behind it and the intake refuses at the edge: a live feed drops
and counts ``bp_drops_tick``, a replay reads more slowly). Full for
``enqueue_timeout_s``: the engine stops its intake and drains (``stop_on_fault``),
then exits 13."""

RECORD_QUEUE_BATCHES: Final = 4
"""execution -> persistence, in lists of the records of at most ``COALESCE_ITEMS``
decisions: the records of at most 16,384 ticks. Never dropped: same policy as
``DECISION_QUEUE_BATCHES``. Persistence keeps receiving while it writes
(``engine.store.task``), so this queue fills only when the writer is a whole batch
behind."""

ENQUEUE_TIMEOUT_S: Final = 30.0
"""Default of ``engine.enqueue_timeout_s``: how long a batch that must not be dropped
may wait for queue space (persistence behind: a lock held, a slow disk) before the
engine declares itself overloaded. It then stops the intake and keeps waiting -- the
drain deadline bounds that -- so what was accepted is still written if persistence
recovers within ``drain_timeout_s`` (exit 13 either way). 30 s + the 20 s drain stay
inside the unit's ``WatchdogSec=60``."""


@dataclass(frozen=True)
class EnqueuePolicy:
    """How a task queues a batch that must not be dropped (``send_or_overload``)."""

    timeout_s: float = ENQUEUE_TIMEOUT_S
    on_overload: Callable[[Overload], None] | None = None
    """Told once the queue stayed full for ``timeout_s``; the send then goes on waiting.
    ``None``: the ``Overload`` is raised instead (the batch is not queued)."""


async def send_or_overload(
    send: trio.MemorySendChannel[T],
    item: T,
    queue: str,
    policy: EnqueuePolicy = EnqueuePolicy(),
) -> None:
    """Queue a batch that must not be dropped; past ``policy.timeout_s`` declare overload.

    *Error handling:* with ``policy.on_overload`` the overload is reported and the
    send waits on (cancelled only by a forced stop: the drain deadline); without
    it ``Overload`` is raised and ``item`` is not queued.
    """
    try:
        send.send_nowait(item)
        return
    except trio.WouldBlock:
        pass
    with trio.move_on_after(policy.timeout_s):
        await send.send(item)
        return
    overload = Overload(
        f"{queue} queue stayed full for {policy.timeout_s:g}s (persistence behind);"
        " intake stopped, nothing accepted dropped"
    )
    if policy.on_overload is None:
        raise overload
    policy.on_overload(overload)
    await send.send(item)


def take_queued(receive: trio.MemoryReceiveChannel[list[T]], first: list[T], cap: int) -> list[T]:
    """``queued_lists`` as one list (``first`` itself when nothing else was queued)."""
    lists = queued_lists(receive, first, cap)
    if len(lists) == 1:
        return first
    return [item for batch in lists for item in batch]


async def ingest_task(
    source: MarketDataStream, send: trio.MemorySendChannel[TickBatch], state: RunState
) -> None:
    """Run the source until it ends, is cancelled (drain) or fails.

    *Error handling:* a failure of the source (network budget, parse rate, a
    bug) is kept in ``state.ingest_failure`` and ingest returns normally, so
    everything already accepted still drains to disk; the runtime raises the
    failure after the drain and it picks the exit code.

    However ingest ends, the drain clock starts (``start_drain_clock``): the rest
    of the stop is bounded by ``drain_timeout_s`` even when nobody sent a signal.
    """
    async with send:
        with state.ingest_scope:
            try:
                await source.stream(send)
            except Exception as exc:  # re-raised after the drain
                state.ingest_failure = exc
                logs.error("ingest_failed", error=repr(exc))
        ended = "source ended" if state.ingest_failure is None else "source failed"
        start_drain_clock(state, ended)
    logs.info("ingest_stopped", ingest_processed=state.counters.ingest_processed)


async def strategy_task(
    strategy: Strategy,
    receive: trio.MemoryReceiveChannel[TickBatch],
    send: trio.MemorySendChannel[DecisionBatch],
    counters: Counters,
    policy: EnqueuePolicy = EnqueuePolicy(),
    *,
    on_fault: Callable[[EngineError], None] | None = None,
) -> None:
    """Run each tick batch through the strategy; the time it takes is ``strategy_ns``.

    *Error handling:* when the strategy raises, its traceback is logged once
    (``strategy_failed``), the batch goes on as ticks only, ``on_fault`` stops
    the intake, and every batch still queued passes through as ticks: everything
    accepted is persisted, then ``StrategyFailed`` picks exit 1 (raised here
    after the drain when there is no ``on_fault``).
    """
    failure: StrategyFailed | None = None
    clock = time.perf_counter_ns
    async with receive, send:
        async for first in receive:
            # One hop for everything queued, but ``on_batch`` per list as it was sent:
            # which ticks a failing call takes down with it must not depend on timing.
            decided: DecisionBatch = []
            for ticks in queued_lists(receive, first, COALESCE_ITEMS):
                decisions: DecisionBatch
                if failure is None:
                    started = clock()
                    try:
                        decisions = strategy.on_batch(ticks)
                    except Exception as exc:  # the strategy's bug: drain, then exit 1
                        failure = StrategyFailed(f"strategy raised {type(exc).__name__}: {exc}")
                        logs.error(
                            "strategy_failed",
                            error=f"{type(exc).__name__}: {exc}",
                            traceback=traceback.format_exc(),
                        )
                        decisions = list(ticks)
                        if on_fault is not None:
                            on_fault(failure)
                    counters.strategy_ns += clock() - started
                else:
                    decisions = list(ticks)
                counters.tick_count += len(ticks)
                counters.signal_count += len(decisions) - len(ticks)
                decided.extend(decisions)
            await send_or_overload(send, decided, "decision", policy)
    if failure is not None and on_fault is None:
        raise failure


def count_records(records: list[Record], counters: Counters, mode: Mode) -> None:
    orders = 0
    for record in records:
        if isinstance(record, Order):
            orders += 1
        elif isinstance(record, Fill):
            counters.trade_count += 1
        elif isinstance(record, Veto):
            counters.risk_vetoes += 1
            if record.reason is VetoReason.STALE_DATA:
                counters.stale_vetoes += 1
    if not orders:
        return
    if mode is Mode.PAPER:
        counters.paper_orders += orders
    elif mode is Mode.LIVE:
        counters.live_orders += orders
    else:
        counters.shadow_orders += orders


def log_trading_state_change(before: str, after: str, produced: list[Record]) -> None:
    """ACTIVE <-> HALTED is logged once, with the equity that caused it."""
    states = [r for r in produced if isinstance(r, RiskState)]
    latest = states[-1] if states else None
    logs.warning(
        "trading_state_changed",
        before=before,
        after=after,
        equity=None if latest is None else str(latest.equity),
        peak_equity=None if latest is None else str(latest.peak_equity),
    )


async def execution_task(
    execution: OrderExecution,
    receive: trio.MemoryReceiveChannel[DecisionBatch],
    send: trio.MemorySendChannel[RecordBatch],
    counters: Counters,
    mode: Mode,
    *,
    venue: VenueLink | None = None,
    policy: EnqueuePolicy = EnqueuePolicy(),
) -> None:
    async with receive, send:
        try:
            async for first in receive:
                decisions = take_queued(receive, first, COALESCE_ITEMS)
                before = execution.trading_state
                produced = execution.process(decisions)
                count_records(produced, counters, mode)
                counters.stale_ticks = execution.stale_ticks
                if execution.trading_state != before:
                    log_trading_state_change(before, execution.trading_state, produced)
                records: RecordBatch = list(decisions)
                records.extend(produced)
                await send_or_overload(send, records, "record", policy)
                if venue is not None:  # after the records are queued: write-ahead
                    venue.dispatch()
        finally:
            if venue is not None:
                venue.close()


@dataclass
class Components:
    """What the composition root hands the runtime (real adapters or test fakes)."""

    source: MarketDataStream
    strategy: Strategy
    execution: OrderExecution
    store: SqliteStore
    venue: VenueLink | None = None
    """LIVE only: the link to the real venue (``engine.runtime.live``). Never set in
    SHADOW/PAPER (I1)."""
    record_start: Callable[[], object] | None = None
    """Writes the run's row (blocking; run in the writer thread once signals are handled,
    so a database locked at start-up is waited on *and* a stop request is still heard)."""


async def run_pipeline(components: Components, state: RunState) -> None:
    """Run the four tasks to completion and drain; raise what must pick the exit code."""
    counters = state.counters
    limiter = trio.CapacityLimiter(1)
    tick_send, tick_recv = trio.open_memory_channel[TickBatch](TICK_QUEUE_BATCHES)
    decision_send, decision_recv = trio.open_memory_channel[DecisionBatch](DECISION_QUEUE_BATCHES)
    record_send, record_recv = trio.open_memory_channel[RecordBatch](RECORD_QUEUE_BATCHES)
    mode = state.config.engine.mode
    venue = components.venue
    persistence: Persistence = components.store
    persist_age_s = PERSIST_BATCH_AGE_S
    if venue is not None:
        persistence = venue.persistence(components.store)
        persist_age_s = venue.persist_batch_age_s
    on_fault = partial(stop_on_fault, state)
    policy = EnqueuePolicy(timeout_s=state.config.engine.enqueue_timeout_s, on_overload=on_fault)

    async with trio.open_nursery() as services:
        services.start_soon(drain_deadline_task, state)
        services.start_soon(_heartbeats, state, components.store, limiter)
        queues = (tick_send, decision_send, record_send)
        backlog = Backlog()  # lists persistence holds: pending work too
        services.start_soon(
            watchdog_task,
            state,
            lambda: sum(q.statistics().current_buffer_used for q in queues) + backlog.lists,
        )
        with state.pipeline_scope:
            async with trio.open_nursery() as pipeline:
                # Started downstream first, so every consumer exists before its producer.
                pipeline.start_soon(
                    partial(
                        run_persistence,
                        persistence,
                        record_recv,
                        counters,
                        limiter,
                        max_batch_age_s=persist_age_s,
                        abandon=state.abandon_writes,
                        on_fault=on_fault,
                        backlog=backlog,
                    )
                )
                if venue is not None:  # LIVE: trades only once the venue's view is reconciled
                    await pipeline.start(venue.run, record_send.clone(), lambda: state.draining)
                pipeline.start_soon(
                    partial(
                        execution_task,
                        components.execution,
                        decision_recv,
                        record_send,
                        counters,
                        mode,
                        venue=venue,
                        policy=policy,
                    )
                )
                pipeline.start_soon(
                    partial(
                        strategy_task,
                        components.strategy,
                        tick_recv,
                        decision_send,
                        counters,
                        policy,
                        on_fault=on_fault,
                    )
                )
                pipeline.start_soon(ingest_task, components.source, tick_send, state)
                state.notifier.ready()
                logs.info(
                    "pipeline_started", run_id=state.run_id, mode=str(state.config.engine.mode)
                )
        services.cancel_scope.cancel()

    if state.pipeline_scope.cancelled_caught:
        cause = "" if state.stop_failure is None else f" (the stop began on: {state.stop_failure})"
        raise Overload(
            f"drain did not finish within drain_timeout_s={state.config.engine.drain_timeout_s}"
            f" or a second signal forced the stop; the last batches may be lost{cause}"
        )
    if state.stop_failure is not None:
        raise state.stop_failure
    if state.ingest_failure is not None:
        raise state.ingest_failure


async def _heartbeats(state: RunState, store: SqliteStore, limiter: trio.CapacityLimiter) -> None:
    """``heartbeat_task``; a heartbeat that meets a full disk (or an I/O error) stops the
    engine the way persistence does -- intake stopped, the accepted drained, exit 13 --
    instead of failing the run at once, and the beats go on being logged."""
    while True:
        try:
            await heartbeat_task(state, store, limiter)
        except (StorageFull, StorageFailed) as exc:
            logs.error("heartbeat_write_failed", error=str(exc))
            stop_on_fault(state, exc)


def new_run_id() -> str:
    """Runs are the one place wall-clock ids are fine: they label an operator's session."""
    return f"run-{time.time_ns()}-{os.getpid()}"


async def run_engine(components: Components, state: RunState) -> ExitCode:
    """Run, drain, record the outcome; return the exit code (never raises).

    SIGINT/SIGTERM are handled (``engine.runtime.shutdown.signal_task``) until the end of
    the run is recorded, not only while the pipeline runs: a signal during the
    final bookkeeping must neither kill the process (SIGTERM's default action) nor
    go unheard, and a second one abandons a write stuck on a locked database.
    """
    components.store.on_lock_retry = partial(_count_lock_retry, state.counters)
    async with trio.open_nursery() as signals:
        await signals.start(signal_task, state)
        code, failure, recorded = await _run_and_record(components, state)
        signals.cancel_scope.cancel()
    if failure is not None:
        logs.error(
            "engine_stopped",
            exit_code=int(code),
            exit_name=code.name,
            error=_describe_failure(failure),
        )
        logs.human(failure_line(code, _describe_failure(failure)))
    else:
        # Everything drained; ``recorded`` says whether the marker also reached the
        # database (a forced stop during the final bookkeeping can prevent that).
        logs.info(
            "clean_shutdown",
            run_id=state.run_id,
            exit_code=0,
            recorded=recorded,
            **state.counters.snapshot(),
        )
    return code


def _count_lock_retry(counters: Counters) -> None:
    """Runs in the writer thread, the only writer of ``persist_retries`` (no lock needed)."""
    counters.persist_retries += 1


async def _run_and_record(
    components: Components, state: RunState
) -> tuple[ExitCode, BaseException | None, bool]:
    """Run the pipeline, then record how it ended: (code, failure, end recorded?)."""
    store = components.store
    failure: BaseException | None = None
    try:
        if components.record_start is not None:
            await trio.to_thread.run_sync(components.record_start)
        await run_pipeline(components, state)
    except BaseException as exc:  # every failure picks an exit code below
        failure = Overload("interrupted") if isinstance(exc, KeyboardInterrupt) else exc
    code = exit_code_for(failure)
    clean = code is ExitCode.COMPLETE
    # A pipeline that failed without a drain: the bookkeeping below is bounded too.
    arm_process_deadline(state, f"stopping with exit code {int(code)}")
    # Always try to record the end of the run, each step on its own (disk full may
    # refuse the heartbeat's row yet take the run's update). The final heartbeat
    # carries the counters a clean shutdown is checked against (persisted ticks ==
    # ingest_processed; it is logged even when it cannot be stored), so without it
    # the run is not marked clean.
    heartbeat_ok = await _shutdown_step(
        "heartbeat", partial(write_heartbeat, state, store, trio.CapacityLimiter(1), final=True)
    )
    marked_clean = clean and heartbeat_ok
    end_ok = await _shutdown_step(
        "end_run",
        partial(
            trio.to_thread.run_sync,
            lambda: store.end_run(
                run_id=state.run_id,
                ended_wall_ns=time.time_ns(),
                exit_code=int(code),
                clean_shutdown=marked_clean,
            ),
        ),
    )
    checkpoint_ok = await _shutdown_step("checkpoint", partial(_checkpoint, store))
    recorded = heartbeat_ok and end_ok and checkpoint_ok
    return code, failure, recorded


async def _shutdown_step(step: str, run: Callable[[], Awaitable[object]]) -> bool:
    try:
        await run()
    except Exception as exc:  # the exit code already says what failed first
        logs.error("shutdown_record_failed", step=step, error=repr(exc))
        return False
    return True


async def _checkpoint(store: SqliteStore) -> None:
    busy, wal_frames, checkpointed = await trio.to_thread.run_sync(store.checkpoint)
    logs.info("wal_checkpointed", busy=busy, wal_frames=wal_frames, checkpointed=checkpointed)


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe_failure(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
