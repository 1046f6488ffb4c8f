"""The LIVE execution path: the pure core decides, this shell talks to the venue.

Why a shell around the core rather than LIVE logic in it: the core stays pure and
identical across modes; this module only moves intents to the venue (after their
SUBMITTED records are durable) and the venue's answers back through the core.
Started only in ``mode = "live"`` after gate G1; never imported in SHADOW or PAPER
(I1). The picture, the write-ahead rule, start and drain: docs/architecture.md
("The LIVE path").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import httpx
import trio

from engine import logs
from engine.adapters.binance_spot.credentials import Credentials
from engine.adapters.binance_spot.execution import BinanceExecution, build_live_execution, wall_ms
from engine.adapters.binance_spot.signing import client_order_id
from engine.adapters.binance_spot.user_stream import StreamPolicy, run_user_stream
from engine.config.schema import Config
from engine.core.booking import order_record
from engine.core.events import Fill, Order, OrderEvent, Record, VenueFailure
from engine.core.execution import Execution
from engine.core.live_orders import CancelOrder, Intent, SubmitOrder
from engine.counters import Counters
from engine.exits import Overload
from engine.ports import Persistence, RecordBatch, WriteResult
from engine.runtime.pipeline import send_or_overload

INTENT_QUEUE_BATCHES: Final = 256
"""execution -> sender: one list of intents per decision batch that produced any.
Overload policy: intents are never dropped and never waited for -- ``dispatch``
uses ``send_nowait``, and a full queue (the venue hundreds of batches behind)
stops the engine with OVERLOAD (13) instead of losing an order or a cancel."""

RESULT_QUEUE_BATCHES: Final = 64
"""sender + user stream -> forwarder: lists of the records the core's book produced
from the venue's answers, and the adapter's ``VenueFailure``s. Never dropped: the
producers await ``send`` (they are venue-paced, and the forwarder only counts, logs
and queues them for persistence)."""

LIVE_PERSIST_BATCH_AGE_S: Final = 0.02
"""Persistence flush age in LIVE (SHADOW/PAPER: ``engine.store.task.PERSIST_BATCH_AGE_S``).
An order is sent once its SUBMITTED record is committed, so this bounds the
write-ahead delay to about 20 ms plus one commit."""

DRAIN_CANCEL_SHARE: Final = 0.5
"""Share of ``drain_timeout_s`` the drain may spend cancelling resting orders at the
venue; the rest is left for their records to reach the database before the
runtime's drain deadline (exit 13). Orders still open after it are logged
(``live_drain_cancel_incomplete``) and reconciled at the next start."""

NOT_SENT_REASON: Final = "live: engine stopping; never sent to the venue"


class WriteAhead:
    """The persistence port, plus which LIVE orders are durably SUBMITTED.

    Wraps the store the persistence task writes through. ``write_records``
    runs in the writer thread; after a batch commits, the ids of the orders
    whose SUBMITTED (seq 0) event it held are handed to the Trio thread
    (``trio.from_thread.run_sync``), which wakes a sender waiting in
    ``wait_durable``.

    *Resource handling:* only ever called by the persistence task's
    ``trio.to_thread.run_sync`` (that is what makes ``from_thread`` work).
    """

    def __init__(self, inner: Persistence) -> None:
        self._inner = inner
        self._durable: set[str] = set()
        self._waiting: dict[str, trio.Event] = {}

    def write_records(self, records: Sequence[Record]) -> WriteResult:
        result = self._inner.write_records(records)
        submitted = [r.order_id for r in records if type(r) is OrderEvent and r.seq == 0]
        if submitted:
            trio.from_thread.run_sync(self.mark_durable, submitted)
        return result

    def mark_durable(self, order_ids: Sequence[str]) -> None:
        """Trio thread: these orders' SUBMITTED records are committed."""
        for order_id in order_ids:
            event = self._waiting.pop(order_id, None)
            if event is None:
                self._durable.add(order_id)
            else:
                event.set()

    async def wait_durable(self, order_id: str) -> None:
        """Return once ``order_id``'s SUBMITTED record is committed (at once if it is)."""
        if order_id in self._durable:
            self._durable.discard(order_id)
            return
        event = self._waiting.setdefault(order_id, trio.Event())
        await event.wait()


class LiveVenue:
    """The runtime's ``VenueLink`` in LIVE mode (see module docstring).

    *Resource handling:* ``run`` owns the HTTP client (opened and closed inside
    it), the intent channel's receive side, the result channel and the clone of
    the records channel it is given; ``close`` (called by the execution task
    when it ends) closes the intent channel's send side.
    """

    def __init__(
        self,
        *,
        config: Config,
        core: Execution,
        credentials: Credentials,
        counters: Counters,
        stream_policy: StreamPolicy | None = None,
    ) -> None:
        self._config = config
        self._core = core
        self._credentials = credentials
        self._counters = counters
        self._stream_policy = StreamPolicy() if stream_policy is None else stream_policy
        self._intent_send, self._intent_recv = trio.open_memory_channel[list[Intent]](
            INTENT_QUEUE_BATCHES
        )
        self._write_ahead: WriteAhead | None = None

    # -- hooks the runtime calls --------------------------------------------------

    @property
    def persist_batch_age_s(self) -> float:
        return LIVE_PERSIST_BATCH_AGE_S

    def persistence(self, store: Persistence) -> Persistence:
        self._write_ahead = WriteAhead(store)
        return self._write_ahead

    def dispatch(self) -> None:
        """Queue the core's pending intents for the sender; never waits.

        *Error handling:* ``Overload`` (exit 13) when the intent queue is full --
        an intent is never dropped silently.
        """
        intents = self._core.take_intents()
        if not intents:
            return
        try:
            self._intent_send.send_nowait(intents)
        except trio.WouldBlock:
            raise Overload(
                f"venue intent queue full ({INTENT_QUEUE_BATCHES} batches): the venue is not "
                "keeping up; refusing to drop an order intent"
            ) from None

    def close(self) -> None:
        self._intent_send.close()

    async def run(
        self,
        records: trio.MemorySendChannel[RecordBatch],
        draining: Callable[[], bool],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the venue until the intents end and the drain is done (module docstring).

        ``task_status.started()`` fires once the user stream is subscribed and
        open orders from earlier runs are reconciled.
        """
        async with records, self._intent_recv, httpx.AsyncClient() as client:
            adapter = build_live_execution(
                self._config, client, book=self._core.venue_book, credentials=self._credentials
            )
            self._restore(adapter)
            result_send, result_recv = trio.open_memory_channel[list[Record]](RESULT_QUEUE_BATCHES)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward, result_recv, records)
                stream_scope = trio.CancelScope()
                await nursery.start(self._stream, adapter, result_send.clone(), stream_scope)
                logs.info(
                    "live_venue_ready",
                    rest_url=self._config.live.rest_url,
                    ws_url=self._config.live.ws_url,
                    open_orders=adapter.open_order_ids(),
                )
                task_status.started()
                async with result_send:
                    await self._send_intents(adapter, result_send, draining)
                    await self._cancel_resting(adapter, result_send)
                stream_scope.cancel()
        logs.info("live_venue_closed", venue_failures=self._counters.venue_failures)

    # -- tasks ---------------------------------------------------------------------

    def _restore(self, adapter: BinanceExecution) -> None:
        """Map the LIVE orders the core resumed (``Execution.restore`` chose them; the
        book holds them and the venue trades already booked) for ``reconcile``."""
        mode = self._core.mode
        for order in self._core.open_orders.values():
            adapter.track(order_record(order, mode))

    async def _stream(
        self,
        adapter: BinanceExecution,
        send: trio.MemorySendChannel[list[Record]],
        scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            async with send:
                await run_user_stream(
                    adapter,
                    send,
                    url=self._config.live.ws_url,
                    credentials=self._credentials,
                    wall_ms=wall_ms,
                    policy=self._stream_policy,
                    task_status=task_status,
                )

    async def _forward(
        self,
        results: trio.MemoryReceiveChannel[list[Record]],
        records: trio.MemorySendChannel[RecordBatch],
    ) -> None:
        """What the core's book produced from the venue's answers -> persistence.

        The adapter reported each answer into the book as it came (the book changed
        the order and the ledger together, I2); this only counts, logs and persists.
        """
        async with results:
            async for batch in results:
                self._note(batch)
                await send_or_overload(records, list(batch), "record")

    def _note(self, batch: list[Record]) -> None:
        for record in batch:
            if type(record) is VenueFailure:
                self._counters.venue_failures += 1
            elif type(record) is OrderEvent:
                logs.info(
                    "live_order_event",
                    order_id=record.order_id,
                    seq=record.seq,
                    state=str(record.state),
                    filled_qty=str(record.filled_qty),
                    leaves_qty=str(record.leaves_qty),
                    reason=record.reason,
                )
            elif type(record) is Fill:
                self._counters.trade_count += 1
                logs.info(
                    "live_fill",
                    fill_id=record.fill_id,
                    order_id=record.order_id,
                    side=str(record.side),
                    qty=str(record.qty),
                    price=str(record.price),
                    fee=str(record.fee),
                )

    async def _send_intents(
        self,
        adapter: BinanceExecution,
        results: trio.MemorySendChannel[list[Record]],
        draining: Callable[[], bool],
    ) -> None:
        async for intents in self._intent_recv:
            for intent in intents:
                if isinstance(intent, SubmitOrder):
                    out = await self._submit(adapter, intent.order, stopping=draining())
                else:
                    out = await self._cancel(adapter, intent)
                if out:
                    await results.send(out)

    async def _submit(
        self, adapter: BinanceExecution, order: Order, *, stopping: bool
    ) -> list[Record]:
        # The core recorded Order + SUBMITTED and holds the order; the adapter maps it.
        adapter.track(order)
        if stopping:
            logs.warning("live_order_not_sent", order_id=order.order_id, reason="draining")
            return adapter.give_up(order.order_id, NOT_SENT_REASON)
        assert self._write_ahead is not None, "persistence() is called before run()"
        await self._write_ahead.wait_durable(order.order_id)
        logs.info(
            "live_order_sending",
            order_id=order.order_id,
            client_order_id=client_order_id(order.order_id),
            symbol=order.symbol,
            side=str(order.side),
            order_type=str(order.order_type),
            qty=str(order.qty),
            price=str(order.price),
        )
        return await adapter.submit(order.order_id)

    async def _cancel(self, adapter: BinanceExecution, intent: CancelOrder) -> list[Record]:
        if not adapter.is_open(intent.order_id):
            logs.info("live_cancel_skipped", order_id=intent.order_id, reason="no longer open")
            return []
        logs.info("live_order_cancelling", order_id=intent.order_id, reason=intent.reason)
        return await adapter.cancel(intent.order_id)

    async def _cancel_resting(
        self, adapter: BinanceExecution, results: trio.MemorySendChannel[list[Record]]
    ) -> None:
        """Drain: cancel every order still open at the venue (bounded, see DRAIN_CANCEL_SHARE)."""
        open_ids = adapter.open_order_ids()
        if not open_ids:
            return
        bound_s = self._config.engine.drain_timeout_s * DRAIN_CANCEL_SHARE
        logs.info("live_drain_cancelling", orders=open_ids, bound_s=bound_s)
        with trio.move_on_after(bound_s) as bounded:
            for order_id in open_ids:
                out = await adapter.cancel(order_id)
                if out:
                    await results.send(out)
        if bounded.cancelled_caught:
            logs.error(
                "live_drain_cancel_incomplete",
                still_open=adapter.open_order_ids(),
                bound_s=bound_s,
            )
