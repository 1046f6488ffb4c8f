"""Execution: risk checks, then orders to a simulated venue (SHADOW, PAPER) or a real one (LIVE).

``Execution`` implements the ``OrderExecution`` port. It is pure and
synchronous: ``process`` takes the strategy's decision batch (ticks and
signals in arrival order) and returns the *new* records it produced --
``Veto``, ``Order``, ``OrderEvent``, ``Fill`` -- in causal order. It has no way
to reach a network: it imports nothing that could, and no venue adapter is
ever constructed here (I1). LIVE is the same decision logic with the venue
outside (``engine.core.live_orders``).

Per tick: the symbol's mark price and the staleness estimate are updated (and,
in PAPER, resting orders are worked against the tape). Per signal: the risk
chain (``engine.core.risk``) either vetoes it or an order is created.

Idempotency (I3): a signal whose id already led to an order or a veto -- in
this run or, after ``restore``, in an earlier one -- produces nothing, so a
duplicate, a re-delivery or a replay into the same database cannot create a
second order (the order id is ``"ord:" + signal_id``).

SHADOW: the order is filled at once at the assumed price (signal price plus
slippage), so its records are SUBMITTED -> ACCEPTED -> FILLED and one ``Fill``.

PAPER: the order rests in ``engine.core.paper``'s simulated venue and fills
against later trades (latency, slippage, partial fills capped by each trade's
size, cancellation of the remainder after ``order_timeout_s``), worked tick by
tick in ``engine.core.paper``.

Signals on a symbol with open orders of the *opposite* side cancel those first
("superseded"): a SELL means "be flat", so a resting BUY must not re-enter; a
BUY means "be long", so a resting SELL must not empty the position. A SELL's
cancellations happen even when the SELL itself is then vetoed NO_POSITION (the
intent to exit stands); a vetoed BUY changes nothing; a STALE_DATA veto never
acts on anything.

Duplicate ticks: a trade whose id is not above the highest already processed
for its ``venue:symbol`` in this process, by at most ``TRADE_ID_WINDOW``, is
ignored entirely (venues number trades in increasing order per symbol). An id
further below is a stream that ingest re-anchored there (``engine.adapters.market.dedup``:
the previous high was a bogus id), so it is processed and becomes the new high --
one bogus id can never silence a symbol here either.

LIVE: orders are recorded SUBMITTED and stay open; submissions and
cancellations are intents for the shell (``take_intents``), and the venue's
answers come back through ``apply_venue`` (``engine.core.live_orders``). The
drawdown guard is judged on ticks only in LIVE (a fill moves equity by at most
its fee and price difference; the next tick judges it).

Restarts: ``restore`` resumes from what earlier runs persisted
(``engine.core.restored``). A tick whose trade id is among the *persisted*
ones (``RestoredState.tape_islands``, ranges of ids actually in the ``ticks``
table) only updates the mark and the staleness estimate -- its effects are in
the database; every other tick, however far below the highest persisted id,
works orders, expires them and is judged by the drawdown guard.

The names other modules import from here -- ``RestoredState``,
``RestoredOrder``, the intents, the id functions -- are re-exported from the
modules that define them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from engine.core import exposure
from engine.core.booking import (
    book_fill,
    cancel_remainder,
    order_id_for,
    order_record,
    veto_id_for,
)
from engine.core.events import OrderType, Record, Side, Signal, Tick, TradingState, Veto
from engine.core.ledger import Ledger
from engine.core.live_orders import Intent, LiveOrders
from engine.core.orders import OrderAction, WorkingOrder
from engine.core.paper import NS_PER_S, PaperVenue, work_orders
from engine.core.restored import RestoredState
from engine.core.risk import DrawdownGuard, Limits, Proposal, available_cash, evaluate
from engine.core.sizing import ZERO, offset_price, qty_for_notional, slipped_price
from engine.core.staleness import Lag, StalenessEstimator

if TYPE_CHECKING:  # engine.config reads the environment: the core only needs its types
    from engine.config.schema import Config


SIMULATED_MODES: Final = ("shadow", "paper")
"""``config.engine.mode`` values whose venue this class simulates."""

MODES: Final = (*SIMULATED_MODES, "live")
"""Every ``config.engine.mode`` this class runs; in LIVE the venue is the shell's (G1)."""

TRADE_ID_WINDOW: Final = 50_000
"""How far below the highest id processed a trade id is still a duplicate; further
below, ingest re-anchored the stream. Equal to ``engine.adapters.market.dedup.DEDUP_WINDOW``
(a test pins it; the core cannot import the adapter)."""


class PersistedIds:
    """The trade ids of one ``venue:symbol`` already in the database, as sorted ranges.

    ``in`` costs one comparison for an id above every persisted one (a live feed's
    new trades, the common case) and a binary search otherwise.
    """

    __slots__ = ("_ends", "_starts", "top")

    def __init__(self, islands: Sequence[tuple[int, int]]) -> None:
        ordered = sorted(islands)
        self._starts = [lo for lo, _ in ordered]
        self._ends = [hi for _, hi in ordered]
        self.top = self._ends[-1] if ordered else -1

    def __contains__(self, trade_id: object) -> bool:
        if not isinstance(trade_id, int) or trade_id > self.top:
            return False
        i = bisect_right(self._starts, trade_id) - 1
        return i >= 0 and trade_id <= self._ends[i]


class Execution:
    """SHADOW / PAPER / LIVE execution over decision batches (see module docstring)."""

    def __init__(self, config: Config) -> None:
        mode = str(config.engine.mode.value)
        if mode not in MODES:
            raise ValueError(f"Execution runs {', '.join(MODES)}, not {mode!r}")
        self._mode_name = mode.upper()
        self._live = mode == "live"
        self._timeout_ns = round(config.execution.order_timeout_s * NS_PER_S)
        self._live_orders = LiveOrders()
        """LIVE: the intents outbox and the venue's records adopted."""
        self._exec = config.execution
        self._limit_orders = str(config.execution.order_type.value) == "limit"
        self._limits = Limits(
            max_exposure_usd=config.risk.max_exposure_usd,
            max_symbol_exposure_usd=config.risk.max_symbol_exposure_usd,
            max_open_orders=config.risk.max_open_orders,
            fee_bps=config.execution.fee_bps,
        )
        self._starting_cash = None if self._live else config.execution.starting_cash
        self._venue: PaperVenue | None = None
        if mode == "paper":
            self._venue = PaperVenue.from_settings(
                config.execution.latency_ms,
                config.execution.order_timeout_s,
                config.execution.slippage_bps,
            )
        self._staleness = StalenessEstimator(config.risk.max_staleness_ms)
        self._guard = DrawdownGuard(config.risk.max_drawdown_usd)
        self.ledger = Ledger() if self._starting_cash is None else Ledger(cash=self._starting_cash)
        self.marks: dict[str, Decimal] = {}
        self.open_orders: dict[str, WorkingOrder] = {}
        self._decided: set[str] = set()
        self._persisted: dict[tuple[str, str], PersistedIds] = {}
        """Restored: the trade ids per ``(venue, symbol)`` whose effects are persisted."""
        self._seen: dict[tuple[str, str], int] = {}
        """Highest trade id per ``(venue, symbol)`` processed by this process."""
        self._last_tick_id: str | None = None
        """The last tick added to the staleness window (a signal follows its cause tick)."""

    # -- port -------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"SHADOW"``, ``"PAPER"`` or ``"LIVE"`` (the ``mode`` column of ``orders``)."""
        return self._mode_name

    @property
    def trading_state(self) -> str:
        """``"ACTIVE"`` or ``"HALTED"`` (the drawdown guard's state)."""
        return str(self._guard.state)

    @property
    def stale_ticks(self) -> int:
        """Ticks seen so far that lagged more than ``max_staleness_ms`` beyond normal."""
        return self._staleness.stale_ticks

    def restore(self, state: RestoredState) -> None:
        """Resume from what earlier runs persisted; call once, before the first batch.

        Open orders of another mode (a PAPER order in a SHADOW run) are not
        resumed: no venue here could work them. LIVE orders are resumed as open;
        the shell reconciles them with the venue before trading.
        """
        for fill in state.fills:
            self.ledger.apply(fill)
            if self._live:
                self._live_orders.fill_ids.add(fill.fill_id)
        for restored in state.open_orders:
            if restored.order.mode != self._mode_name or (self._venue is None and not self._live):
                continue
            order = restored.working()
            if self._venue is not None:
                self._venue.schedule(order)
            else:
                order.expires_at = order.ts_submitted + self._timeout_ns
            self.open_orders[order.order_id] = order
        for symbol, price in state.marks.items():
            self.marks.setdefault(symbol, price)
        self._decided |= state.decided_signal_ids
        for key, islands in state.islands().items():
            self._persisted[key] = PersistedIds(islands)
        self._guard.restore(state.risk_state, state.peak_equity)

    def process(self, batch: list[Tick | Signal]) -> list[Record]:
        """Handle ticks and signals in order; return the new records they produced."""
        out: list[Record] = []
        # The per-tick path is inlined here: it runs for every tick of a replay.
        seen = self._seen
        persisted = self._persisted
        marks = self.marks
        add_lag = self._staleness.add
        live = self._live
        for item in batch:
            if type(item) is Tick:
                key = (item.venue, item.symbol)
                last = seen.get(key)
                if last is not None and last - TRADE_ID_WINDOW < item.trade_id <= last:
                    continue  # a duplicate (or older) trade in this process: changes nothing
                seen[key] = item.trade_id
                marks[item.symbol] = item.price
                add_lag(item.ts_event, item.ts_recv)
                self._last_tick_id = item.event_id
                done = persisted.get(key)
                if done is not None and item.trade_id in done:
                    continue  # processed by an earlier run: its effects are in the database
                if self._venue is not None and self.open_orders:
                    work_orders(
                        self._venue,
                        item,
                        settings=self._exec,
                        ledger=self.ledger,
                        open_orders=self.open_orders,
                        out=out,
                    )
                elif live and self.open_orders:
                    self._live_orders.expire(
                        self.open_orders, item.ts_event, self._exec.order_timeout_s
                    )
                if self._guard.limit is not None:
                    self._judge_drawdown(item.ts_event, item.event_id, out)
            else:
                assert isinstance(item, Signal)
                self._on_signal(item, out)
        return out

    # -- LIVE: the venue's side (engine.core.live_orders) ---------------------------

    def take_intents(self) -> list[Intent]:
        """LIVE: what to do at the venue since the last call, in order (empties the outbox)."""
        return self._live_orders.take()

    def apply_venue(self, records: Iterable[Record]) -> list[Record]:
        """LIVE: book what the venue said; return the records that changed anything here.

        Transitions are adopted by ``seq``, fills booked once by ``fill_id``;
        applying the same records again returns ``[]``. See ``LiveOrders.apply``
        (its *Error handling*: ``ValueError`` for an inconsistent event).
        """
        return self._live_orders.apply(records, self.open_orders, self.ledger)

    # -- exposure ---------------------------------------------------------------

    def symbol_exposure(self, symbol: str, mark: Decimal | None = None) -> Decimal:
        """Position plus the unfilled remainder of open BUYs of ``symbol``, at ``mark``.

        ``mark`` defaults to the symbol's latest trade price.
        """
        if mark is None:
            mark = self.marks.get(symbol, ZERO)
        return exposure.symbol_exposure(self.ledger, self.open_orders, symbol, mark)

    def total_exposure(self, overrides: Mapping[str, Decimal] | None = None) -> Decimal:
        """Sum of every symbol's exposure (``overrides`` replace marks, e.g. before any tick)."""
        marks = dict(self.marks)
        marks.update(overrides or {})
        return exposure.total_exposure(self.ledger, self.open_orders, marks)

    def equity(self) -> Decimal:
        return self.ledger.equity(self.marks)

    # -- ticks ------------------------------------------------------------------

    def _judge_drawdown(self, ts_event: int, cause_id: str, out: list[Record]) -> None:
        before = self._guard.state
        record = self._guard.evaluate(self.equity(), ts_event, cause_id)
        if record is None:
            return
        out.append(record)
        if before is TradingState.ACTIVE and self._guard.state is TradingState.HALTED:
            for order in list(self.open_orders.values()):
                if order.side is Side.BUY:
                    self._cancel(order, ts_event, "trading HALTED: no new entries", out)

    # -- signals ----------------------------------------------------------------

    def _on_signal(self, signal: Signal, out: list[Record]) -> None:
        if signal.signal_id in self._decided:
            return
        self._decided.add(signal.signal_id)
        lag = self._staleness.last() if self._last_tick_id == signal.cause_id else None
        opposite = [
            o
            for o in self.open_orders.values()
            if o.symbol == signal.symbol and o.side is not signal.side
        ]
        fresh = lag is not None and not lag.stale
        if fresh and signal.side is Side.SELL:
            for order in opposite:  # exit intent: stop resting entries even if nothing to sell
                self._cancel(order, signal.ts_event, f"superseded by {signal.signal_id}", out)
            opposite = []
        # LIVE: a superseded order is open until the venue confirms the cancel (I2).
        proposal = self._propose(signal, lag, superseded=0 if self._live else len(opposite))
        denial = evaluate(proposal, self._limits)
        if denial is not None:
            out.append(
                Veto(
                    veto_id=veto_id_for(signal.signal_id),
                    signal_id=signal.signal_id,
                    symbol=signal.symbol,
                    reason=denial.reason,
                    detail=denial.detail,
                    ts_event=signal.ts_event,
                )
            )
            return
        for order in opposite:
            self._cancel(order, signal.ts_event, f"superseded by {signal.signal_id}", out)
        order = WorkingOrder(
            order_id=order_id_for(signal.signal_id),
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            side=signal.side,
            order_type=OrderType.LIMIT if self._limit_orders else OrderType.MARKET,
            qty=proposal.qty,
            price=proposal.price,
            ts_submitted=signal.ts_event,
        )
        record = order_record(order, self._mode_name)
        out.append(record)
        if self._live:
            out.append(order.submitted_event("live: recorded, to be sent to the venue"))
            order.expires_at = order.ts_submitted + self._timeout_ns
            self.open_orders[order.order_id] = order
            self._live_orders.submit(record)
        elif self._venue is None:
            self._fill_shadow(order, out)
            if self._guard.limit is not None:
                self._judge_drawdown(signal.ts_event, signal.signal_id, out)
        else:
            out.append(order.submitted_event("paper: submitted to the simulated venue"))
            self._venue.schedule(order)
            self.open_orders[order.order_id] = order

    def _propose(self, signal: Signal, lag: Lag | None, superseded: int) -> Proposal:
        symbol = signal.symbol
        mark = self.marks.get(symbol, signal.price)
        if self._limit_orders and (self._venue is not None or self._live):
            # A limit order rests on the passive side (PAPER's simulated venue, or the real
            # one); SHADOW assumes an immediate fill, so it keeps the slipped price.
            price = offset_price(signal.price, signal.side, self._exec.limit_offset_bps)
        else:
            price = slipped_price(signal.price, signal.side, self._exec.slippage_bps)
        if signal.side is Side.BUY:
            qty = qty_for_notional(self._exec.order_notional_usd, price, self._exec.qty_step)
            sizing = (
                f"order_notional_usd {self._exec.order_notional_usd} at {price} "
                f"with qty_step {self._exec.qty_step}"
            )
        else:
            qty = exposure.unsold_position(self.ledger, self.open_orders, symbol)
            sizing = f"the whole {symbol} position not already being sold: {qty}"
        return Proposal(
            side=signal.side,
            symbol=symbol,
            qty=qty,
            price=price,
            mark=mark,
            symbol_exposure=self.symbol_exposure(symbol, mark),
            total_exposure=self.total_exposure({symbol: mark}),
            open_orders=len(self.open_orders) - superseded,
            trading_state=self._guard.state,
            lag=lag,
            cause_id=signal.cause_id,
            sizing=sizing,
            available_cash=None
            if self._starting_cash is None
            else available_cash(self.ledger.cash, self.open_orders.values(), self._exec.fee_bps),
        )

    # -- order records ----------------------------------------------------------

    def _fill_shadow(self, order: WorkingOrder, out: list[Record]) -> None:
        ts = order.ts_submitted
        out.append(order.submitted_event("shadow: recorded, not sent (SHADOW mode)"))
        out.append(order.transition(OrderAction.ACCEPT, ts, "shadow: simulated acknowledgement"))
        book_fill(
            order,
            qty=order.qty,
            price=order.price,
            ts_event=ts,
            reason="shadow: simulated immediate fill at the assumed price",
            fee_bps=self._exec.fee_bps,
            ledger=self.ledger,
            open_orders=self.open_orders,
            out=out,
        )

    def _cancel(self, order: WorkingOrder, ts_event: int, reason: str, out: list[Record]) -> None:
        """Cancel the unfilled remainder; what already filled stays booked (S11).

        LIVE: only request it (once); the venue's CANCELED comes back through
        ``apply_venue`` and until then the order stays open.
        """
        if self._live:
            self._live_orders.request_cancel(order, reason)
            return
        cancel_remainder(order, ts_event, reason, open_orders=self.open_orders, out=out)
