"""Reader -> tick channel without the reader ever waiting: a bounded pending list.

trio-websocket buffers one message and stops reading the socket while it sits
unread, so the WebSocket reader must never block on the strategy. It appends
each tick, without waiting, to a bounded list of pending ticks; the forwarder
task moves them into the tick channel as one batch (``await send``): only the
forwarder ever waits for the strategy. When the strategy lags, the channel
fills, the pending list fills to its capacity, and then the newest tick is
dropped and counted in ``bp_drops_tick`` (docs/contract.md S6). Memory stays bounded however
fast the feed, and a burst is coalesced into one batch instead of costing a
channel operation per tick.

*Coalescing* (issue 14): woken by the first tick of a burst, the forwarder waits
scheduler passes -- not time -- while the reader is still adding ticks
(``QUIET_PASSES``, at most ``COALESCE_PASSES``), so a burst read frame by frame
travels as one list and costs the strategy, execution and persistence tasks one
wake-up each instead of one per tick. A lone tick waits two passes (microseconds);
measured at 10k frames/s the Trio thread's cost per frame fell by ~30 %
(docs/performance.md, "Live path").
"""

from __future__ import annotations

from typing import Final

import trio

from engine.adapters.progress import Progress
from engine.core.events import Tick
from engine.counters import Counters
from engine.ports import TickBatch

COALESCE_PASSES: Final = 16
"""The most scheduler passes the forwarder waits for a burst to join its list. Each
pass carries at most about one frame through the reader (trio-websocket hands frames
over one at a time), so this caps the list at roughly 16 frames of a burst and the
first tick's extra wait at 16 passes (~0.4 ms with the Trio thread saturated)."""

QUIET_PASSES: Final = 2
"""Passes in a row without a new tick that end the wait. Two, not one: Trio runs a
pass's tasks in either order, so the reader may run twice between two looks of the
forwarder and not at all between the next two, while the burst is still arriving."""


class TickForwarder:
    """Reader -> tick channel, the reader never waiting (see the module docstring).

    ``offer`` (sync) appends a tick or drops it when ``capacity`` ticks already
    wait. ``run`` sends everything pending as one batch whenever the channel
    takes it; ``ingest_processed`` counts ticks once the channel accepted them.

    *Cancellation* (the drain): whatever is still pending gets one last
    ``send_nowait``; if the channel is full it is dropped and counted, never
    silently lost.
    """

    def __init__(
        self,
        send: trio.MemorySendChannel[TickBatch],
        counters: Counters,
        capacity: int,
        progress: Progress | None = None,
    ) -> None:
        self._send = send
        self._counters = counters
        self._capacity = capacity
        self._progress = progress or Progress()
        self._pending: list[Tick] = []
        self._in_flight = 0
        self._wakeup: trio.Event | None = None

    @property
    def held(self) -> int:
        """Ticks read but not yet accepted by the channel (pending + the batch in flight)."""
        return len(self._pending) + self._in_flight

    def offer(self, tick: Tick) -> None:
        if len(self._pending) >= self._capacity:
            self._counters.bp_drops_tick += 1
            return
        self._pending.append(tick)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def run(self) -> None:
        batch: list[Tick] = []
        try:
            while True:
                if not self._pending:
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                await self._coalesce()
                batch, self._pending = self._pending, []
                self._in_flight = len(batch)
                try:  # the coalescing passes were the checkpoint; no second one
                    self._send.send_nowait(batch)
                except trio.WouldBlock:
                    await self._send.send(batch)
                self._counters.ingest_processed += len(batch)
                batch = []
                self._in_flight = 0
                self._progress.bump()
        finally:
            self._in_flight = 0
            self._flush_nowait(batch + self._pending)
            self._pending = []

    async def _coalesce(self) -> None:
        """Let a burst still being read join the list: wait one scheduler pass at a
        time until ``QUIET_PASSES`` passes in a row added no tick (the reader waits
        for the socket), at most ``COALESCE_PASSES`` passes."""
        quiet = 0
        for _ in range(COALESCE_PASSES):
            held = len(self._pending)
            if held >= self._capacity:  # full: send now, do not drop while waiting
                return
            await trio.lowlevel.cancel_shielded_checkpoint()
            if len(self._pending) != held:
                quiet = 0
            else:
                quiet += 1
                if quiet == QUIET_PASSES:
                    return

    def _flush_nowait(self, ticks: list[Tick]) -> None:
        if not ticks:
            return
        try:
            self._send.send_nowait(ticks)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self._counters.bp_drops_tick += len(ticks)
            return
        self._counters.ingest_processed += len(ticks)
