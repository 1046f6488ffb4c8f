"""Execution: risk checks, then orders through a simulated venue (SHADOW or PAPER).

``Execution`` implements the ``OrderExecution`` port for the two simulated
modes. It is pure and synchronous: ``process`` takes the strategy's decision
batch (ticks and signals in arrival order) and returns the *new* records it
produced -- ``Veto``, ``Order``, ``OrderEvent``, ``Fill`` -- in causal order.
It has no way to reach a network: it imports nothing that could, and a LIVE
adapter is never constructed here (I1).

Per tick: the symbol's mark price and the staleness estimate are updated (and,
in PAPER, resting orders are worked against the tape). Per signal: the risk
chain (``engine.core.risk``) either vetoes it or an order is created.

Idempotency (I3): a signal whose id already led to an order or a veto -- in
this run or, after ``restore``, in an earlier one -- produces nothing, so a
duplicate, a re-delivery or a replay into the same database cannot create a
second order (the order id is ``"ord:" + signal_id``).

SHADOW: the order is filled at once at the assumed price (signal price plus
slippage), so its records are SUBMITTED -> ACCEPTED -> FILLED and one ``Fill``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Final

from engine.core.events import (
    Fill,
    Order,
    OrderEvent,
    OrderState,
    OrderType,
    Record,
    Side,
    Signal,
    Tick,
    TradingState,
    Veto,
)
from engine.core.ledger import Ledger
from engine.core.orders import OrderAction, WorkingOrder, fill_action
from engine.core.risk import Limits, Proposal, evaluate
from engine.core.sizing import (
    EXACT,
    ZERO,
    cash_delta_for,
    fee_for,
    position_delta_for,
    qty_for_notional,
    slipped_price,
)
from engine.core.staleness import Lag, StalenessEstimator

if TYPE_CHECKING:  # engine.config reads the environment: the core only needs its types
    from engine.config import Config

SIMULATED_MODES: Final = ("shadow", "paper")
"""``config.engine.mode`` values this class simulates; LIVE is a separate adapter (G1)."""


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
        if mode not in SIMULATED_MODES:
            raise ValueError(f"Execution simulates SHADOW and PAPER only, not {mode!r}")
        self._paper = mode == "paper"
        self._mode_name = mode.upper()
        self._exec = config.execution
        self._limits = Limits(
            max_exposure_usd=config.risk.max_exposure_usd,
            max_symbol_exposure_usd=config.risk.max_symbol_exposure_usd,
            max_open_orders=config.risk.max_open_orders,
        )
        self._staleness = StalenessEstimator(config.risk.max_staleness_ms)
        self.ledger = Ledger()
        self.marks: dict[str, Decimal] = {}
        self.open_orders: dict[str, WorkingOrder] = {}
        self._decided: set[str] = set()
        self._last_lag: tuple[str, Lag] | None = None
        self._trading_state = TradingState.ACTIVE

    # -- port -------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"SHADOW"`` or ``"PAPER"`` (the ``mode`` column of ``orders``)."""
        return self._mode_name

    @property
    def trading_state(self) -> str:
        return str(self._trading_state)

    def process(self, batch: list[Tick | Signal]) -> list[Record]:
        """Handle ticks and signals in order; return the new records they produced."""
        out: list[Record] = []
        for item in batch:
            if isinstance(item, Tick):
                self._on_tick(item, out)
            else:
                self._on_signal(item, out)
        return out

    # -- ticks ------------------------------------------------------------------

    def _on_tick(self, tick: Tick, out: list[Record]) -> None:
        self.marks[tick.symbol] = tick.price
        lag = self._staleness.observe(tick.ts_event, tick.ts_recv)
        self._last_lag = (tick.event_id, lag)

    # -- signals ----------------------------------------------------------------

    def _on_signal(self, signal: Signal, out: list[Record]) -> None:
        if signal.signal_id in self._decided:
            return
        self._decided.add(signal.signal_id)
        lag = None
        if self._last_lag is not None and self._last_lag[0] == signal.cause_id:
            lag = self._last_lag[1]
        proposal = self._propose(signal, lag)
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
        self._submit_shadow(signal, proposal, out)

    def _open_buy_exposure(self, symbol: str, mark: Decimal) -> Decimal:
        leaves = ZERO
        for order in self.open_orders.values():
            if order.symbol == symbol and order.side is Side.BUY:
                leaves = EXACT.add(leaves, order.leaves_qty)
        return EXACT.multiply(leaves, mark)

    def symbol_exposure(self, symbol: str, mark: Decimal | None = None) -> Decimal:
        """Position plus open BUY remainder of ``symbol``, marked at its latest price."""
        if mark is None:
            mark = self.marks.get(symbol, ZERO)
        held = EXACT.multiply(self.ledger.position(symbol), mark)
        return EXACT.add(held, self._open_buy_exposure(symbol, mark))

    def total_exposure(self, overrides: dict[str, Decimal] | None = None) -> Decimal:
        symbols = set(self.ledger.books) | {o.symbol for o in self.open_orders.values()}
        marks = dict(self.marks)
        marks.update(overrides or {})
        total = ZERO
        for symbol in sorted(symbols):
            total = EXACT.add(total, self.symbol_exposure(symbol, marks.get(symbol, ZERO)))
        return total

    def _propose(self, signal: Signal, lag: Lag | None) -> Proposal:
        symbol = signal.symbol
        mark = self.marks.get(symbol, signal.price)
        price = slipped_price(signal.price, signal.side, self._exec.slippage_bps)
        if signal.side is Side.BUY:
            qty = qty_for_notional(self._exec.order_notional_usd, price, self._exec.qty_step)
            sizing = (
                f"order_notional_usd {self._exec.order_notional_usd} at {price} "
                f"with qty_step {self._exec.qty_step}"
            )
        else:
            qty = self.ledger.position(symbol)
            sizing = f"whole {symbol} position {qty}"
        return Proposal(
            side=signal.side,
            symbol=symbol,
            qty=qty,
            price=price,
            mark=mark,
            symbol_exposure=self.symbol_exposure(symbol, mark),
            total_exposure=self.total_exposure({symbol: mark}),
            open_orders=len(self.open_orders),
            trading_state=self._trading_state,
            lag=lag,
            cause_id=signal.cause_id,
            sizing=sizing,
        )

    # -- SHADOW -----------------------------------------------------------------

    def _submit_shadow(self, signal: Signal, proposal: Proposal, out: list[Record]) -> None:
        order = WorkingOrder(
            order_id=order_id_for(signal.signal_id),
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            side=signal.side,
            order_type=OrderType.MARKET,
            qty=proposal.qty,
            price=proposal.price,
            ts_submitted=signal.ts_event,
        )
        ts = signal.ts_event
        out.append(self._order_record(order))
        out.append(order.submitted_event("shadow: recorded, not sent (SHADOW mode)"))
        out.append(order.transition(OrderAction.ACCEPT, ts, "shadow: simulated acknowledgement"))
        self._fill(
            order,
            qty=proposal.qty,
            price=proposal.price,
            ts_event=ts,
            reason="shadow: simulated immediate fill at the assumed price",
            out=out,
        )

    # -- shared -----------------------------------------------------------------

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


__all__ = ["Execution", "OrderEvent"]
