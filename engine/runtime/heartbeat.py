"""Heartbeats (logged, stored, told to systemd) and the systemd watchdog."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import trio

from engine import logs
from engine.config.schema import Source
from engine.core.staleness import tick_silence_limit_s
from engine.runtime.console import progress_line, progress_wanted
from engine.runtime.state import RunState
from engine.store.sqlite_store import SqliteStore


async def heartbeat_task(
    state: RunState, store: SqliteStore, limiter: trio.CapacityLimiter
) -> None:
    """Every ``heartbeat_interval_s``: log and store the counters, tell systemd.

    When progress is wanted (``engine.progress``; by default when stderr is a
    terminal) each beat also prints ``console.progress_line`` on stderr.
    """
    interval = state.config.engine.heartbeat_interval_s
    show_progress = progress_wanted(state.config.engine.progress, sys.stderr)
    previous: dict[str, int] | None = None
    previous_at = trio.current_time()
    next_at = previous_at + interval
    while True:
        await trio.sleep_until(next_at)
        snapshot = await write_heartbeat(state, store, limiter, final=False)
        if show_progress:
            now = trio.current_time()
            logs.human(progress_line(previous, snapshot, now - previous_at, state.trading_state()))
            previous, previous_at = snapshot, now
        # Beats missed while a write was slow are skipped, not caught up in a burst:
        # the next beat is the next slot of the grid that is still in the future.
        next_at = next_beat(next_at, interval, trio.current_time())


def next_beat(due: float, interval: float, now: float) -> float:
    """The next slot of the grid ``due + k * interval`` (k >= 1) that lies after ``now``.

    Computed, not stepped: a loop adding ``interval`` until it passes ``now``
    would spin without a checkpoint for as many beats as were missed (and
    forever once ``interval`` is below the float's resolution at ``due``, as
    ``heartbeat_interval_s = 1e-300`` once did; its range now forbids that).
    """
    steps = max(1.0, (now - due) // interval + 1)
    beat = due + steps * interval
    return beat if beat > now else due + (steps + 1) * interval  # float rounding at the edge


async def write_heartbeat(
    state: RunState, store: SqliteStore, limiter: trio.CapacityLimiter, *, final: bool
) -> dict[str, int]:
    """Log, tell systemd and store one heartbeat; the counter snapshot it reported."""
    snapshot = state.counters.snapshot()
    trading_state = state.trading_state()
    logs.info(
        "heartbeat", run_id=state.run_id, final=final, trading_state=trading_state, **snapshot
    )
    state.notifier.status(
        f"ticks={snapshot['tick_count']} signals={snapshot['signal_count']} "
        f"fills={snapshot['trade_count']} persisted={snapshot['persist_count']} "
        f"state={trading_state}"
    )
    result = await trio.to_thread.run_sync(
        store.write_heartbeat,
        state.run_id,
        time.time_ns(),
        state.config.engine.heartbeat_interval_s,
        snapshot,
        final,
        str(state.config.engine.mode),
        trading_state,
        limiter=limiter,
    )
    state.counters.persist_errors += result.lock_retries
    return snapshot


async def watchdog_task(state: RunState, pending_batches: Callable[[], int]) -> None:
    """Ping systemd's watchdog only while the pipeline makes progress.

    Progress since the last check means: persistence wrote something, or the
    pipeline had nothing to do (every queue empty). Work waiting in a queue while
    nothing is persisted is a stall: no ping, and systemd restarts us after
    ``WatchdogSec``. A live feed (``source = "websocket"``) must also make
    progress of its own: a new admitted tick (``last_tick_wall_ns`` moved) within
    ``engine.dashboard.health.tick_silence_limit_s`` -- the bound ``health`` applies. The
    feed gives up by itself (exit 10) after ``max_downtime_s`` without a tick, so
    a feed silent past that bound is stuck, whatever ``connected`` says.
    """
    interval = state.notifier.watchdog_interval_s
    if interval is None:
        return
    config = state.config
    feed_limit = (
        tick_silence_limit_s(config.ingest.max_downtime_s, config.engine.heartbeat_interval_s)
        if config.ingest.source is Source.WEBSOCKET
        else None
    )
    last_persisted = -1
    last_tick = state.counters.last_tick_wall_ns
    tick_moved_at = trio.current_time()
    while True:
        now = trio.current_time()
        persisted = state.counters.persist_count
        pending = pending_batches()
        if state.counters.last_tick_wall_ns != last_tick:
            last_tick, tick_moved_at = state.counters.last_tick_wall_ns, now
        feed_quiet_s = now - tick_moved_at
        if feed_limit is not None and feed_quiet_s > feed_limit:
            logs.warning(
                "watchdog_withheld",
                reason="no admitted tick",
                feed_quiet_s=round(feed_quiet_s, 3),
                limit_s=feed_limit,
            )
        elif persisted != last_persisted or pending == 0:
            state.notifier.watchdog()
        else:
            logs.warning(
                "watchdog_withheld",
                reason="queued work not persisted",
                pending_batches=pending,
                persisted=persisted,
            )
        last_persisted = persisted
        await trio.sleep(interval)
