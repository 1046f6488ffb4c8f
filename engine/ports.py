"""Ports: the seams between the engine and the outside world -- and the strategy.

Adapters live in ``engine.adapters`` (market data, order execution) and
``engine.store`` (persistence); strategies are chosen by ``[strategy] kind``
(``engine.config.strategies``). The runtime depends only on these Protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, TypeVar

import trio

from engine.core.events import Record, Signal, Tick

TickBatch = list[Tick]
"""What ingest sends to strategy: ticks in arrival order."""

DecisionBatch = list[Tick | Signal]
"""What strategy sends to execution: every tick, each signal right after the tick that caused it."""

RecordBatch = list[Record]
"""What execution sends to persistence: everything to store, in causal order."""

T = TypeVar("T")


def queued_lists(
    receive: trio.MemoryReceiveChannel[list[T]], first: list[T], cap: int
) -> list[list[T]]:
    """``first`` and every list already queued behind it, in order, until they hold
    ``cap`` items. No checkpoint: what is not queued yet is left for the next
    ``receive``. The lists are returned as they came (never modified). How every hop
    between the tasks takes a burst at once (strategy, execution, persistence)."""
    lists = [first]
    held = len(first)
    while held < cap:
        try:
            more = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):  # EndOfChannel: the next receive ends
            break
        lists.append(more)
        held += len(more)
    return lists


class Strategy(Protocol):
    """Ticks in, signals out: pure and deterministic (docs/strategies.md).

    ``on_batch`` sees ticks in arrival order and returns every one of them, in
    order, each signal placed right after the tick that caused it (its
    ``cause_id``; ``signal_id`` = ``"sig:" + cause_id``). Its output depends only
    on the ticks fed so far -- never on how they were batched, the wall clock,
    randomness or I/O -- which ``hybrid-engine strategy check`` proves
    (``engine.proof.any_strategy``). Risk caps decide what a signal becomes.

    Built-ins: ``engine.core.strategy.SmaCross`` (``sma_cross``) and
    ``engine.core.donchian.DonchianBreakout`` (``donchian_breakout``). A trader's
    own class implements only ``on_tick(tick) -> Signal | None`` and runs behind
    ``engine.core.hosted.Hosted``, which admits each signal it returns.

    *Error handling:* an exception from ``on_batch`` stops the engine cleanly --
    intake stopped, everything accepted persisted, the traceback logged once,
    exit 1 (``engine.runtime.pipeline.strategy_task``).
    """

    def on_batch(self, ticks: Sequence[Tick]) -> DecisionBatch:
        ...

    def describe(self) -> str:
        """One phrase for the start line: what it is, and when its first signal can come."""
        ...


class MarketDataStream(Protocol):
    """A source of ticks (capture replay, synthetic walk, exchange WebSocket).

    *Resource handling:* the source does not close ``send``; the ingest task owns it.

    *Overload policy* belongs to the source: a replay awaits ``send`` (lossless
    backpressure); a live feed never lets its socket reader wait -- it drops the
    newest tick when its own bounded pending buffer is full, counting
    ``bp_drops_tick`` (see docs/ingest.md).
    """

    async def stream(self, send: trio.MemorySendChannel[TickBatch]) -> None:
        """Produce tick batches until the source ends (return) or fails (raise)."""
        ...


class OrderExecution(Protocol):
    """Where execution decisions go: SHADOW / PAPER simulators or a LIVE venue.

    Simulators are pure and synchronous: ``process`` takes the decision batch
    and returns every record it produced (orders, transitions, fills, vetoes),
    which the execution task forwards, together with the batch, to persistence.
    """

    def process(self, batch: DecisionBatch) -> list[Record]:
        ...

    @property
    def trading_state(self) -> str:
        """``ACTIVE`` or ``HALTED`` (drawdown guard): logged by the runtime when it changes."""
        ...

    @property
    def stale_ticks(self) -> int:
        """Ticks judged stale so far (the heartbeat's ``stale_ticks``)."""
        ...


class WriteResult(NamedTuple):
    """What one committed write did, returned from the worker thread.

    The worker thread touches no counter but ``persist_retries`` (through
    ``SqliteStore.on_lock_retry``, its only writer); the persistence task adds
    ``records`` to ``persist_count`` and ``lock_retries`` to ``persist_errors``.
    """

    inserted: int
    """Rows newly inserted (an id already stored is ignored, I3)."""
    records: int
    """Records committed, inserted or already present."""
    lock_retries: int
    """Times the batch met a locked database and was retried (S12)."""


class Persistence(Protocol):
    """The database, reached only from the persistence task's worker thread."""

    def write_records(self, records: Sequence[Record]) -> WriteResult:
        """Store records idempotently in one transaction; retry on lock, never drop."""
        ...


class VenueLink(Protocol):
    """The LIVE path's hooks into the pipeline (``engine.runtime.live.LiveVenue``);
    absent otherwise."""

    @property
    def persist_batch_age_s(self) -> float:
        """Persistence flush age: bounds how long an order waits to be committed, then sent."""
        ...

    def persistence(self, store: Persistence) -> Persistence:
        """The store the persistence task writes through (tells the link what is durable)."""
        ...

    def dispatch(self) -> None:
        """Hand the core's pending intents to the venue task; never waits (13 when full)."""
        ...

    def close(self) -> None:
        """No more intents: the venue task finishes, cancels resting orders, and ends."""
        ...

    async def run(
        self,
        records: trio.MemorySendChannel[RecordBatch],
        draining: Callable[[], bool],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Talk to the venue until ``close`` and the drain; started once it is ready."""
        ...
