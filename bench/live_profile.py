"""Stage timers for one live-bench step: where the time and the tail go.

Bench-only instrumentation: ``instrument(...)`` patches the live path's stage
boundaries for the duration of one step (and restores them), recording with
``time.perf_counter_ns``:

* ``reader_frame``: the reader's work per frame -- from ``get_message`` returning to
  the reader's next call (stamp, intake, admission, offer, progress);
  ``reader_wait``: the time inside ``get_message`` (the other tasks run then);
  ``intake_accept``: decode + admission alone, per frame.
* ``strategy_batch`` / ``execution_batch``: ``on_batch`` / ``process`` per batch, with
  the batch sizes and, for ticks, the age of the oldest tick on arrival
  (``tick_batch_age``: wall clock now - its ``ts_recv``).
* ``persist_write`` (in the writer thread): ``write_records`` per batch, split into
  ``persist_rows`` (Python row tuples built, the GIL held) and ``persist_sql``
  (parameters flattened + ``execute``); the oldest tick's age when its batch starts
  being written (``persist_batch_age``); ``handoff_in`` / ``handoff_out``: from
  ``to_thread.run_sync`` being called to the function starting in the thread, and
  from its end to the Trio task running again (the GIL and scheduler hand-off).
* ``loop_lag``: a 1 ms ``trio.sleep`` probe's oversleep (how long the Trio thread was
  unavailable: a long task step or the GIL held by the writer).
* the three queues' peak occupancy (``statistics().max_buffer_size`` and peak use).

The timers cost ~0.1-0.3 us each; figures from this step are for *where*, not for the
headline (the headline steps run uninstrumented). The row split materialises a
batch's rows at once instead of per statement (same rows, same SQL).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio
import trio_websocket

from engine.adapters.market.ws import intake
from engine.store import sqlite_store

Timers = dict[str, list[int]]


def summary(values: list[int], scale: float = 1e3, unit: str = "us") -> dict[str, Any]:
    """count, total and p50/p99/max of ``values`` (ns shown in us, or counts: scale=1)."""
    if not values:
        return {"count": 0}
    v = sorted(values)
    total = round(sum(v) / 1e6, 1) if unit == "us" else sum(v)
    return {
        "count": len(v),
        "total_ms" if unit == "us" else "total_n": total,
        f"p50_{unit}": round(v[(len(v) - 1) // 2] / scale, 1),
        f"p99_{unit}": round(v[int(0.99 * (len(v) - 1))] / scale, 1),
        f"max_{unit}": round(v[-1] / scale, 1),
    }


class _ChannelRecorder:
    """Stands in for ``trio.open_memory_channel`` and keeps every channel it opens."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.opened: list[tuple[Any, Any]] = []

    def __getitem__(self, _item: object) -> _ChannelRecorder:
        return self

    def __call__(self, size: float) -> tuple[Any, Any]:
        pair = self.real(size)
        self.opened.append(pair)
        return pair


@contextmanager
def instrument(t: Timers, store: Any, execution: Any) -> Iterator[None]:
    """Patch the stage boundaries (see the module docstring) for one step, into ``t``."""
    clock = time.perf_counter_ns
    wall = time.time_ns

    def add(name: str, value: int) -> None:
        t.setdefault(name, []).append(value)

    # --- reader ------------------------------------------------------------
    real_get = trio_websocket.WebSocketConnection.get_message
    last_return = [0]

    async def get_message(self: Any) -> Any:
        called = clock()
        if last_return[0]:
            add("reader_frame", called - last_return[0])
        message = await real_get(self)
        last_return[0] = clock()
        add("reader_wait", last_return[0] - called)
        return message

    real_accept = intake.FrameIntake.accept

    def accept(self: Any, raw: bytes, ts_recv: int, now: float) -> Any:
        started = clock()
        tick = real_accept(self, raw, ts_recv, now)
        add("intake_accept", clock() - started)
        return tick

    # --- execution ---------------------------------------------------------
    real_process = execution.process

    def process(decisions: Any) -> Any:
        started = clock()
        produced = real_process(decisions)
        add("execution_batch", clock() - started)
        add("execution_batch_size", len(decisions))
        return produced

    # --- persistence -------------------------------------------------------
    real_write = store.write_records

    def write_records(records: Any) -> Any:
        started = clock()
        oldest = min((r.ts_recv for r in records if hasattr(r, "ts_recv")), default=None)
        if oldest is not None:
            add("persist_batch_age", wall() - oldest)
        result = real_write(records)
        add("persist_write", clock() - started)
        add("persist_batch_size", len(records))
        return result

    real_insert_rows = sqlite_store.insert_rows

    def insert_rows(
        conn: Any,
        table: Any,
        items: Any,
        row: Callable[[Any], Any] | None = None,
        run_id: str | None = None,
    ) -> int:
        started = clock()
        rows = items if row is None else [row(item) for item in items]
        built = clock()
        inserted = real_insert_rows(conn, table, rows, None, run_id)
        add("persist_rows", built - started)
        add("persist_sql", clock() - built)
        return inserted

    real_run_sync = trio.to_thread.run_sync

    async def run_sync(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        marks: list[int] = []

        def timed(*a: Any) -> Any:
            marks.append(clock())
            try:
                return fn(*a)
            finally:
                marks.append(clock())

        called = clock()
        result = await real_run_sync(timed, *args, **kwargs)
        back = clock()
        if len(marks) == 2:
            add("handoff_in", marks[0] - called)
            add("handoff_out", back - marks[1])
        return result

    channels = _ChannelRecorder(trio.open_memory_channel)

    trio_websocket.WebSocketConnection.get_message = get_message  # type: ignore[method-assign]
    intake.FrameIntake.accept = accept  # type: ignore[method-assign]
    execution.process = process
    store.write_records = write_records
    sqlite_store.insert_rows = insert_rows  # type: ignore[assignment]
    trio.to_thread.run_sync = run_sync  # type: ignore[assignment]
    trio.open_memory_channel = channels  # type: ignore[assignment]
    try:
        yield
    finally:
        trio_websocket.WebSocketConnection.get_message = real_get  # type: ignore[method-assign]
        intake.FrameIntake.accept = real_accept  # type: ignore[method-assign]
        execution.process = real_process
        store.write_records = real_write
        sqlite_store.insert_rows = real_insert_rows
        trio.to_thread.run_sync = real_run_sync
        trio.open_memory_channel = channels.real
        for name, (send, _receive) in zip(
            ("tick", "decision", "record"), channels.opened, strict=False
        ):
            stats = send.statistics()
            t[f"queue_{name}_capacity"] = [int(stats.max_buffer_size)]
            t[f"queue_{name}_peak"] = [int(getattr(stats, "peak_buffer_used", -1))]


async def loop_lag_probe(timers: Timers, period_s: float = 0.001) -> None:
    """Record how late a ``period_s`` sleep wakes (the Trio thread busy or the GIL away)."""
    clock = time.perf_counter_ns
    want = int(period_s * 1e9)
    while True:
        started = clock()
        await trio.sleep(period_s)
        timers.setdefault("loop_lag", []).append(max(0, clock() - started - want))


def report(timers: Timers) -> dict[str, Any]:
    """The step's timers as summaries (sizes as counts, everything else in us)."""
    out: dict[str, Any] = {}
    for name, values in sorted(timers.items()):
        if name.startswith("queue_"):
            out[name] = values[0]
        elif name.endswith("_size"):
            out[name] = summary(values, scale=1, unit="n")
        else:
            out[name] = summary(values)
    return out
