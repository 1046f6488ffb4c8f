"""Execution: risk checks, then orders to a simulated venue (SHADOW, PAPER) or a real one (LIVE).

``Execution`` implements the ``OrderExecution`` port. It is pure and
synchronous: ``process`` takes the strategy's decision batch (ticks and
signals in arrival order) and returns the *new* records it produced --
``Veto``, ``Order``, ``OrderEvent``, ``Fill`` -- in causal order. It has no way
to reach a network: it imports nothing that could, and no venue adapter is
ever constructed here (I1). LIVE is the same decision logic with the venue
outside: see "LIVE" below.

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
size, cancellation of the remainder after ``order_timeout_s``).

Signals on a symbol with open orders of the *opposite* side cancel those first
("superseded"): a SELL means "be flat", so a resting BUY must not re-enter; a
BUY means "be long", so a resting SELL must not empty the position. A SELL's
cancellations happen even when the SELL itself is then vetoed NO_POSITION (the
intent to exit stands); a vetoed BUY changes nothing; a STALE_DATA veto never
acts on anything.

Duplicate ticks: a trade whose id is not above the highest already processed
for its ``venue:symbol`` in this process is ignored entirely (venues number
trades in increasing order per symbol).

LIVE: the same risk chain, sizing, ids and ledger; only the venue is real,
so this class cannot decide outcomes -- it asks for them. An approved order is
recorded SUBMITTED (``Order`` + its seq-0 ``OrderEvent``, to be persisted
*before* anything is sent) and stays open; a cancellation (superseded, HALTED,
``order_timeout_s`` of event time elapsed) is only *requested*: the order
stays open -- its remainder still counts toward exposure and
``max_open_orders`` (I2) -- until the venue confirms. Both are *intents* in an
outbox (``take_intents``) that the shell (``engine.live``) carries to the
venue. What the venue answers comes back as the adapter's ``OrderEvent``s and
``Fill``s through ``apply_venue``: transitions are adopted by ``seq`` (older or
repeated ones change nothing), fills are booked once by ``fill_id`` (I3, I4).
The drawdown guard is judged on ticks only in LIVE (a fill moves equity by at
most its fee and price difference; the next tick judges it).

Restarts (``restore``): the ledger is rebuilt from the persisted fills, open
orders of this mode are resumed, decided signals are remembered, and a tick at
or below the persisted tape watermark of its ``venue:symbol`` only updates the
mark and the staleness estimate -- its effects are already in the database.
This relies on the runtime persisting each batch's ticks together with the
records ``process`` returned for that batch, in one list (one transaction), in
order: then the database always holds a consistent prefix of the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from engine.core.events import (
    Fill,
    Order,
    OrderEvent,
    OrderState,
    OrderType,
    Record,
    RiskState,
    Side,
    Signal,
    Tick,
    TradingState,
    Veto,
)
from engine.core.ledger import Ledger
from engine.core.orders import TERMINAL, TRANSITIONS, OrderAction, WorkingOrder, fill_action
from engine.core.paper import NS_PER_S, PaperVenue
from engine.core.risk import DrawdownGuard, Limits, Proposal, evaluate
from engine.core.sizing import (
    EXACT,
    ZERO,
    cash_delta_for,
    fee_for,
    offset_price,
    position_delta_for,
    qty_for_notional,
    slipped_price,
)
from engine.core.staleness import Lag, StalenessEstimator

if TYPE_CHECKING:  # engine.config reads the environment: the core only needs its types
    from engine.config import Config

SIMULATED_MODES: Final = ("shadow", "paper")
"""``config.engine.mode`` values whose venue this class simulates."""

MODES: Final = (*SIMULATED_MODES, "live")
"""Every ``config.engine.mode`` this class runs; in LIVE the venue is the shell's (G1)."""


@dataclass(frozen=True, slots=True)
class SubmitOrder:
    """LIVE intent: send ``order`` to the venue (its SUBMITTED record must be persisted first)."""

    order: Order


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """LIVE intent: ask the venue to cancel the unfilled remainder of ``order_id``."""

    order_id: str
    symbol: str
    reason: str


Intent = SubmitOrder | CancelOrder
"""What LIVE execution asks the shell to do at the venue, in the order it must be done."""


@dataclass(frozen=True, slots=True)
class RestoredOrder:
    """An order that was still open when the previous run stopped, as the database has it."""

    order: Order
    state: OrderState
    filled_qty: Decimal
    next_seq: int
    """``seq`` of the next transition (one past the last persisted ``order_events`` row)."""
    fills: int
    """Fills already persisted for it (the next fill is ``fill:<order_id>:<fills>``)."""


@dataclass(frozen=True, slots=True)
class RestoredState:
    """What the previous runs left in the database, as execution needs it at start-up.

    Built by ``engine.store.restore.load_restored_state``; ``RestoredState()`` is
    the state of an empty database.
    """

    fills: tuple[Fill, ...] = ()
    """Every persisted fill, in the order it was written (the ledger is rebuilt from them)."""
    open_orders: tuple[RestoredOrder, ...] = ()
    decided_signal_ids: frozenset[str] = frozenset()
    """Signals that already led to an order or a veto: never decided again (I3)."""
    tape_watermarks: Mapping[str, int] = field(default_factory=dict)
    """``"<venue>:<symbol>"`` -> highest trade id already processed and persisted.
    Ticks at or below it only update marks and the staleness estimate: their
    effects (PAPER fills, timeouts, equity peaks) are already in the database."""
    risk_state: RiskState | None = None
    """The drawdown guard's latest persisted state (``None``: never written)."""
    peak_equity: Decimal | None = None
    """The highest ``peak_equity`` ever persisted."""


def order_id_for(signal_id: str) -> str:
    return f"ord:{signal_id}"


def veto_id_for(signal_id: str) -> str:
    return f"veto:{signal_id}"


def fill_id_for(order_id: str, n: int) -> str:
    return f"fill:{order_id}:{n}"


class Execution:
    """SHADOW / PAPER execution over decision batches (see module docstring)."""

    def __init__(self, config: Config) -> None:
        mode = str(config.engine.mode.value)
        if mode not in MODES:
            raise ValueError(f"Execution runs {', '.join(MODES)}, not {mode!r}")
        self._mode_name = mode.upper()
        self._live = mode == "live"
        self._timeout_ns = round(config.execution.order_timeout_s * NS_PER_S)
        self._intents: list[Intent] = []
        self._cancelling: set[str] = set()
        """LIVE: orders whose cancellation was requested and not yet confirmed."""
        self._fill_ids: set[str] = set()
        """LIVE: every fill booked (restored ones included): a fill is booked once (I3)."""
        self._exec = config.execution
        self._limit_orders = str(config.execution.order_type.value) == "limit"
        self._limits = Limits(
            max_exposure_usd=config.risk.max_exposure_usd,
            max_symbol_exposure_usd=config.risk.max_symbol_exposure_usd,
            max_open_orders=config.risk.max_open_orders,
        )
        self._venue: PaperVenue | None = None
        if mode == "paper":
            self._venue = PaperVenue.from_settings(
                config.execution.latency_ms,
                config.execution.order_timeout_s,
                config.execution.slippage_bps,
            )
        self._staleness = StalenessEstimator(config.risk.max_staleness_ms)
        self._guard = DrawdownGuard(config.risk.max_drawdown_usd)
        self.ledger = Ledger()
        self.marks: dict[str, Decimal] = {}
        self.open_orders: dict[str, WorkingOrder] = {}
        self._decided: set[str] = set()
        self._watermarks: dict[tuple[str, str], int] = {}
        """Restored: highest trade id per ``(venue, symbol)`` whose effects are persisted."""
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
                self._fill_ids.add(fill.fill_id)
        for restored in state.open_orders:
            if restored.order.mode != self._mode_name or (self._venue is None and not self._live):
                continue
            o = restored.order
            order = WorkingOrder(
                order_id=o.order_id,
                signal_id=o.signal_id,
                symbol=o.symbol,
                side=o.side,
                order_type=o.order_type,
                qty=o.qty,
                price=o.price,
                ts_submitted=o.ts_event,
                state=restored.state,
                filled_qty=restored.filled_qty,
                next_seq=restored.next_seq,
                fills=restored.fills,
            )
            if self._venue is not None:
                self._venue.schedule(order)
            else:
                order.expires_at = order.ts_submitted + self._timeout_ns
            self.open_orders[order.order_id] = order
        self._decided |= state.decided_signal_ids
        for key, trade_id in state.tape_watermarks.items():
            venue, _, symbol = key.partition(":")
            self._watermarks[(venue, symbol)] = trade_id
        self._guard.restore(state.risk_state, state.peak_equity)

    def process(self, batch: list[Tick | Signal]) -> list[Record]:
        """Handle ticks and signals in order; return the new records they produced."""
        out: list[Record] = []
        # The per-tick path is inlined here: it runs for every tick of a replay.
        seen = self._seen
        persisted = self._watermarks
        marks = self.marks
        add_lag = self._staleness.add
        live = self._live
        for item in batch:
            if type(item) is Tick:
                key = (item.venue, item.symbol)
                last = seen.get(key)
                if last is not None and item.trade_id <= last:
                    continue  # a duplicate (or older) trade in this process: changes nothing
                seen[key] = item.trade_id
                marks[item.symbol] = item.price
                add_lag(item.ts_event, item.ts_recv)
                self._last_tick_id = item.event_id
                done = persisted.get(key)
                if done is not None and item.trade_id <= done:
                    continue  # processed by an earlier run: its effects are in the database
                if self._venue is not None and self.open_orders:
                    self._work_orders(self._venue, item, out)
                elif live and self.open_orders:
                    self._expire_live(item.ts_event)
                if self._guard.limit is not None:
                    self._judge_drawdown(item.ts_event, item.event_id, out)
            else:
                assert isinstance(item, Signal)
                self._on_signal(item, out)
        return out

    # -- LIVE: the venue's side ----------------------------------------------------

    def take_intents(self) -> list[Intent]:
        """LIVE: what to do at the venue since the last call, in order (empties the outbox)."""
        intents, self._intents = self._intents, []
        return intents

    def apply_venue(self, records: Iterable[Record]) -> list[Record]:
        """LIVE: book what the venue said; return the records that changed anything here.

        ``records`` are the adapter's ``OrderEvent``s and ``Fill``s (anything else,
        e.g. a ``VenueFailure``, is ignored). An event is adopted when its ``seq``
        is at or beyond the order's next one -- the adapter numbers transitions,
        and the submit path and the user stream may hand them over out of order;
        an older or repeated event changes nothing. A fill is booked in the ledger
        once per ``fill_id``. Applying the same records again returns ``[]`` and
        changes nothing (I3). The caller persists *all* of ``records`` (inserts
        are idempotent), not only what this returns.

        *Error handling:* an inconsistent event is a bug, never a market event:
        ``ValueError`` for one that overfills its order, un-fills it, or (when it
        is the very next transition) is not an edge of the lifecycle table.
        """
        changed: list[Record] = []
        for record in records:
            if type(record) is OrderEvent:
                if self._adopt(record):
                    changed.append(record)
            elif type(record) is Fill:
                if record.fill_id in self._fill_ids:
                    continue
                self.ledger.apply(record)
                self._fill_ids.add(record.fill_id)
                changed.append(record)
        return changed

    def _adopt(self, event: OrderEvent) -> bool:
        order = self.open_orders.get(event.order_id)
        if order is None or event.seq < order.next_seq:
            return False  # closed already, or a transition we already hold
        if event.filled_qty > order.qty or event.filled_qty < order.filled_qty:
            raise ValueError(
                f"{event.order_id} seq {event.seq}: filled {event.filled_qty} is outside "
                f"[{order.filled_qty}, {order.qty}]"
            )
        if event.seq == order.next_seq and not _reachable(order.state, event.state):
            raise ValueError(f"{event.order_id}: no transition {order.state} -> {event.state}")
        order.state = event.state
        order.filled_qty = event.filled_qty
        order.next_seq = event.seq + 1
        if event.state in TERMINAL:
            del self.open_orders[event.order_id]
            self._cancelling.discard(event.order_id)
        return True

    def _expire_live(self, ts_event: int) -> None:
        for order in list(self.open_orders.values()):
            if order.expires_at is not None and ts_event >= order.expires_at:
                self._cancel(
                    order,
                    order.expires_at,
                    f"live: order_timeout_s {self._exec.order_timeout_s} elapsed",
                    [],
                )

    # -- exposure ---------------------------------------------------------------

    def symbol_exposure(self, symbol: str, mark: Decimal | None = None) -> Decimal:
        """Position plus the unfilled remainder of open BUYs of ``symbol``, at ``mark``.

        ``mark`` defaults to the symbol's latest trade price.
        """
        if mark is None:
            mark = self.marks.get(symbol, ZERO)
        qty = self.ledger.position(symbol)
        for order in self.open_orders.values():
            if order.symbol == symbol and order.side is Side.BUY:
                qty = EXACT.add(qty, order.leaves_qty)
        return EXACT.multiply(qty, mark)

    def total_exposure(self, overrides: Mapping[str, Decimal] | None = None) -> Decimal:
        """Sum of every symbol's exposure (``overrides`` replace marks, e.g. before any tick)."""
        marks = dict(self.marks)
        marks.update(overrides or {})
        symbols = set(self.ledger.books) | {o.symbol for o in self.open_orders.values()}
        total = ZERO
        for symbol in sorted(symbols):
            total = EXACT.add(total, self.symbol_exposure(symbol, marks.get(symbol, ZERO)))
        return total

    def equity(self) -> Decimal:
        return self.ledger.equity(self.marks)

    # -- ticks ------------------------------------------------------------------

    def _work_orders(self, venue: PaperVenue, tick: Tick, out: list[Record]) -> None:
        available = tick.qty
        for order in list(self.open_orders.values()):
            if order.expires_at is not None and tick.ts_event >= order.expires_at:
                self._cancel(
                    order,
                    order.expires_at,
                    f"paper: order_timeout_s {self._exec.order_timeout_s} elapsed",
                    out,
                )
                continue
            if order.state is OrderState.SUBMITTED:
                if tick.ts_event < order.active_at:
                    continue
                out.append(
                    order.transition(
                        OrderAction.ACCEPT,
                        order.active_at,
                        f"paper: reached the simulated venue after latency_ms "
                        f"{self._exec.latency_ms}",
                    )
                )
            match = venue.match(order, tick, available)
            if match is None:
                continue
            available = EXACT.subtract(available, match.qty)
            self._fill(
                order,
                qty=match.qty,
                price=match.price,
                ts_event=tick.ts_event,
                reason=f"paper: fill against trade {tick.event_id} ({tick.qty} @ {tick.price})",
                out=out,
            )

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
        record = self._order_record(order)
        out.append(record)
        if self._live:
            out.append(order.submitted_event("live: recorded, to be sent to the venue"))
            order.expires_at = order.ts_submitted + self._timeout_ns
            self.open_orders[order.order_id] = order
            self._intents.append(SubmitOrder(record))
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
        if self._venue is not None and self._limit_orders:
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
            qty = self.ledger.position(symbol)
            for o in self.open_orders.values():
                if o.symbol == symbol and o.side is Side.SELL:
                    qty = EXACT.subtract(qty, o.leaves_qty)
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
        )

    # -- order records ----------------------------------------------------------

    def _fill_shadow(self, order: WorkingOrder, out: list[Record]) -> None:
        ts = order.ts_submitted
        out.append(order.submitted_event("shadow: recorded, not sent (SHADOW mode)"))
        out.append(order.transition(OrderAction.ACCEPT, ts, "shadow: simulated acknowledgement"))
        self._fill(
            order,
            qty=order.qty,
            price=order.price,
            ts_event=ts,
            reason="shadow: simulated immediate fill at the assumed price",
            out=out,
        )

    def _order_record(self, order: WorkingOrder) -> Order:
        return Order(
            order_id=order.order_id,
            signal_id=order.signal_id,
            mode=self._mode_name,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.qty,
            price=order.price,
            ts_event=order.ts_submitted,
        )

    def _cancel(self, order: WorkingOrder, ts_event: int, reason: str, out: list[Record]) -> None:
        """Cancel the unfilled remainder; what already filled stays booked (S11).

        LIVE: only request it (once); the venue's CANCELED comes back through
        ``apply_venue`` and until then the order stays open.
        """
        if self._live:
            if order.order_id not in self._cancelling:
                self._cancelling.add(order.order_id)
                self._intents.append(CancelOrder(order.order_id, order.symbol, reason))
            return
        leaves = order.leaves_qty
        out.append(
            order.transition(
                OrderAction.CANCEL,
                ts_event,
                f"{reason}; cancelled remainder {leaves} of {order.qty}",
            )
        )
        del self.open_orders[order.order_id]

    def _fill(
        self,
        order: WorkingOrder,
        *,
        qty: Decimal,
        price: Decimal,
        ts_event: int,
        reason: str,
        out: list[Record],
    ) -> Fill:
        """Book one fill of ``qty`` at ``price``: its transition, the ``Fill`` and the ledger."""
        action = fill_action(order, qty)
        fee = fee_for(qty, price, self._exec.fee_bps)
        position_delta = position_delta_for(order.side, qty)
        fill = Fill(
            fill_id=fill_id_for(order.order_id, order.fills),
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price,
            fee=fee,
            cash_delta=cash_delta_for(position_delta, price, fee),
            position_delta=position_delta,
            ts_event=ts_event,
        )
        out.append(order.transition(action, ts_event, f"{reason}: {qty} @ {price}", qty))
        out.append(fill)
        order.fills += 1
        self.ledger.apply(fill)
        if order.state is OrderState.FILLED:
            self.open_orders.pop(order.order_id, None)
        return fill


def _reachable(state: OrderState, target: OrderState) -> bool:
    """Whether one step of the lifecycle table leads from ``state`` to ``target``."""
    return any(
        to is target for (origin, _action), to in TRANSITIONS.items() if origin is state
    )
