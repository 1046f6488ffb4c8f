"""Execution: risk checks, then orders to a simulated venue (SHADOW, PAPER) or a real one (LIVE).

``Execution`` implements the ``OrderExecution`` port. It is pure and
synchronous: ``process`` takes the strategy's decision batch (ticks and
signals in arrival order) and returns the *new* records it produced --
``Veto``, ``Order``, ``OrderEvent``, ``Fill`` -- in causal order. It has no way
to reach a network: it imports nothing that could, and no venue adapter is
ever constructed here (I1).

The decision logic lives here and is the same in every mode: per tick, the
symbol's mark and the staleness estimate are updated; per signal, opposite
open orders are superseded and the risk chain (``engine.core.risk``) either
vetoes it or an order is created. What the mode changes -- what an approved
order becomes, how open orders are worked on a trade, what a cancellation is
-- is one ``engine.core.modes.ModePolicy`` chosen at construction
(``policy_for``); the open orders and the ledger are one
``engine.core.booking.OrderBook`` that the policy books into.

Idempotency (I3), superseding, duplicate ticks, the drawdown guard and
restarts: ``docs/execution.md``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Final

from engine.config.schema import Config, Mode, OrderTypeName
from engine.core import exposure
from engine.core.booking import OrderBook, order_id_for, order_record, veto_id_for
from engine.core.events import (
    NS_PER_S,
    OrderType,
    Record,
    Side,
    Signal,
    Tick,
    TradingState,
    VenueFailure,
    Veto,
)
from engine.core.ledger import Ledger
from engine.core.live_orders import Applied, Intent, LiveMode, VenueBook, VenueReport
from engine.core.modes import ModePolicy, ShadowMode
from engine.core.orders import WorkingOrder
from engine.core.paper import PaperMode
from engine.core.restored import RestoredState
from engine.core.risk import DrawdownGuard, Limits, Proposal, available_cash, evaluate
from engine.core.sizing import ZERO, offset_price, qty_for_notional, slipped_price
from engine.core.staleness import Lag, StalenessEstimator

TRADE_ID_WINDOW: Final = 50_000
"""How far below the highest id processed a trade id is still a duplicate; further
below, ingest re-anchored the stream. Equal to ``engine.adapters.market.dedup.DEDUP_WINDOW``
(a test pins it; the core cannot import the adapter)."""


def policy_for(config: Config, book: OrderBook) -> ModePolicy:
    """The policy of ``config.engine.mode`` (``engine.core.modes``), working on ``book``."""
    settings = config.execution
    mode = config.engine.mode
    if mode is Mode.SHADOW:
        return ShadowMode(book, settings)
    if mode is Mode.PAPER:
        return PaperMode(book, settings)
    if mode is Mode.LIVE:
        return LiveMode(book, settings.order_timeout_s, round(settings.order_timeout_s * NS_PER_S))
    raise ValueError(f"Execution runs {', '.join(Mode)}, not {mode!r}")


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
        self._starting_cash = (
            None if config.engine.mode is Mode.LIVE else config.execution.starting_cash
        )
        """SHADOW/PAPER with ``[execution] starting_cash``: the ledger opens with it and a
        BUY beyond the cash not yet committed is vetoed (``INSUFFICIENT_CASH``)."""
        self.book = OrderBook(
            Ledger() if self._starting_cash is None else Ledger(cash=self._starting_cash)
        )
        """The open orders and the ledger (``engine.core.booking``)."""
        self.ledger = self.book.ledger
        self.open_orders = self.book.open_orders
        self._policy = policy_for(config, self.book)
        """What the mode decides (``engine.core.modes``): chosen once, here."""
        self._exec = config.execution
        self._limit_orders = config.execution.order_type is OrderTypeName.LIMIT
        self._limits = Limits(
            max_exposure_usd=config.risk.max_exposure_usd,
            max_symbol_exposure_usd=config.risk.max_symbol_exposure_usd,
            max_open_orders=config.risk.max_open_orders,
            fee_bps=config.execution.fee_bps,
        )
        self._staleness = StalenessEstimator(config.risk.max_staleness_ms)
        self._guard = DrawdownGuard(config.risk.max_drawdown_usd)
        self.marks: dict[str, Decimal] = {}
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
        return self._policy.order_mode

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
        policy = self._policy
        for fill in state.fills:
            self.ledger.apply(fill)
            policy.restore_fill(fill)
        for restored in state.open_orders:
            if restored.order.mode != policy.order_mode:
                continue
            order = restored.working()
            if policy.resume(order):
                self.book.open(order)
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
        open_orders = self.open_orders
        work = self._policy.work
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
                if open_orders:
                    work(item, out)
                if self._guard.limit is not None:
                    self._judge_drawdown(item.ts_event, item.event_id, out)
            else:
                assert isinstance(item, Signal)
                self._on_signal(item, out)
        return out

    # -- LIVE: the venue's side (engine.core.live_orders) ---------------------------

    def take_intents(self) -> list[Intent]:
        """LIVE: what to do at the venue since the last call, in order (empties the outbox);
        ``[]`` in SHADOW and PAPER."""
        return self._policy.take_intents()

    def apply_venue(self, items: Iterable[VenueReport | VenueFailure]) -> Applied:
        """LIVE: book what the venue said (``LiveMode.apply_venue``); ``TypeError`` in SHADOW
        and PAPER, which have no venue to answer."""
        return self._policy.apply_venue(items)

    @property
    def venue_book(self) -> VenueBook:
        """LIVE: the one order book as the venue adapter sees it (it reports into it and
        reads it, never changes an order itself); ``TypeError`` in SHADOW and PAPER."""
        policy = self._policy
        if not isinstance(policy, LiveMode):
            raise TypeError(f"{policy.order_mode} has no venue to report into the book")
        return policy

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
                    self._policy.cancel(order, ts_event, "trading HALTED: no new entries", out)

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
        policy = self._policy
        superseded = f"superseded by {signal.signal_id}"
        if fresh and signal.side is Side.SELL:
            for order in opposite:  # exit intent: stop resting entries even if nothing to sell
                policy.cancel(order, signal.ts_event, superseded, out)
            opposite = []
        # LIVE: a superseded order is open until the venue confirms the cancel (I2).
        freed = len(opposite) if policy.supersede_frees_slot else 0
        proposal = self._propose(signal, lag, superseded=freed)
        denial = evaluate(proposal, self._limits)
        if denial is not None:
            out.append(
                Veto(
                    veto_id=veto_id_for(signal.signal_id),
                    signal_id=signal.signal_id,
                    symbol=signal.symbol,
                    reason=denial.reason,
                    detail=denial.detail + (f" (signal: {signal.reason})" if signal.reason else ""),
                    ts_event=signal.ts_event,
                )
            )
            return
        for order in opposite:
            policy.cancel(order, signal.ts_event, superseded, out)
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
        record = order_record(order, policy.order_mode)
        out.append(record)
        policy.place(order, record, out)
        if policy.fills_at_once and self._guard.limit is not None:
            self._judge_drawdown(signal.ts_event, signal.signal_id, out)

    def _propose(self, signal: Signal, lag: Lag | None, superseded: int) -> Proposal:
        symbol = signal.symbol
        mark = self.marks.get(symbol, signal.price)
        if self._limit_orders and self._policy.rests_limit_orders:
            # A limit order rests on the passive side (PAPER's simulated venue, or the real
            # one); SHADOW assumes an immediate fill, so it keeps the slipped price.
            price = offset_price(signal.price, signal.side, self._exec.limit_offset_bps)
        else:
            price = slipped_price(signal.price, signal.side, self._exec.slippage_bps)
        if signal.side is Side.BUY:
            notional = self._exec.order_notional_usd if signal.notional is None else signal.notional
            qty = qty_for_notional(notional, price, self._exec.qty_step)
            asked = "order_notional_usd" if signal.notional is None else "the signal's notional"
            sizing = f"{asked} {notional} at {price} with qty_step {self._exec.qty_step}"
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
