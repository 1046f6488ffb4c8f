"""Pre-trade risk: a chain of small checks, each returning ``None`` or a ``Denial``.

A "no" is a value, not an exception: the first check that objects wins and its
reason and numbers become a persisted ``Veto``. The order of the chain is the
order of ``CHECKS`` -- data quality first (a stale tick says nothing about the
market), then the trading state, then what the signal can do at all (a position to
sell, a quantity, the cash to pay for it), then caps.

Cash (SHADOW/PAPER with ``[execution] starting_cash``): a BUY costs its notional
at the sized price plus the fee (``fee_bps``); it must not exceed the ledger's cash
minus what open BUY orders still commit (their unfilled remainder at their price,
plus fee). Without a starting balance cash is not checked (the ledger starts at 0).

Exposure is position size marked at the latest trade price, per symbol and in
total, *including the unfilled remainder of open BUY orders* (an order that may
still fill is exposure we have already asked for). A BUY is judged on the
exposure it *would* create; a SELL only ever reduces exposure, so the exposure
caps and HALTED never stop it (long-only spot: SELL closes what is held).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, TypeVar

from engine.core.events import RiskState, Side, TradingState, VetoReason
from engine.core.orders import WorkingOrder
from engine.core.sizing import EXACT, ZERO
from engine.core.staleness import Lag


@dataclass(frozen=True, slots=True)
class Limits:
    max_exposure_usd: Decimal
    max_symbol_exposure_usd: Decimal
    max_open_orders: int
    fee_bps: Decimal = ZERO
    """Fee per fill in basis points: a BUY costs its notional plus this (cash check)."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """Everything the checks need to judge one signal, computed by execution."""

    side: Side
    symbol: str
    qty: Decimal
    """What the order would be for (0: nothing to trade)."""
    price: Decimal
    """The price the quantity was sized at."""
    mark: Decimal
    """Latest trade price of the symbol (the signal's price before any tick)."""
    symbol_exposure: Decimal
    """Current exposure of the symbol, open BUY remainders included."""
    total_exposure: Decimal
    open_orders: int
    trading_state: TradingState
    lag: Lag | None
    """The causing tick's lag; ``None`` when execution never saw that tick."""
    cause_id: str
    sizing: str
    """How ``qty`` was obtained, for the detail of a zero-quantity veto."""
    available_cash: Decimal | None = None
    """Cash not committed to open BUY orders (``None``: no starting balance, unchecked)."""


@dataclass(frozen=True, slots=True)
class Denial:
    reason: VetoReason
    detail: str


Check = Callable[[Proposal, Limits], Denial | None]


def check_stale(p: Proposal, limits: Limits) -> Denial | None:
    if p.lag is None:
        return Denial(VetoReason.STALE_DATA, f"causing tick {p.cause_id} was not seen: lag unknown")
    if p.lag.stale:
        return Denial(VetoReason.STALE_DATA, f"tick {p.cause_id}: {p.lag.describe()}")
    return None


def check_halted(p: Proposal, limits: Limits) -> Denial | None:
    if p.side is Side.BUY and p.trading_state is TradingState.HALTED:
        return Denial(VetoReason.HALTED, "trading HALTED by the drawdown guard: no new entries")
    return None


def check_position(p: Proposal, limits: Limits) -> Denial | None:
    if p.side is Side.SELL and p.qty <= ZERO:
        return Denial(VetoReason.NO_POSITION, f"no long {p.symbol} position to sell")
    return None


def check_quantity(p: Proposal, limits: Limits) -> Denial | None:
    if p.side is Side.BUY and p.qty <= ZERO:
        return Denial(VetoReason.ZERO_QTY, f"rounds to zero quantity: {p.sizing}")
    return None


_BPS: Final = Decimal(10_000)
_N = TypeVar("_N", int, Decimal)


def buy_cost(qty: Decimal, price: Decimal, fee_bps: Decimal) -> Decimal:
    """What a BUY of ``qty`` at ``price`` takes from cash: notional plus fee, exactly."""
    notional = EXACT.multiply(qty, price)
    return EXACT.add(notional, EXACT.divide(EXACT.multiply(notional, fee_bps), _BPS))


def available_cash(
    cash: Decimal, open_orders: Iterable[WorkingOrder], fee_bps: Decimal
) -> Decimal:
    """``cash`` less what open BUY orders still commit (remainder at their price, plus fee)."""
    for order in open_orders:
        if order.side is Side.BUY:
            cash = EXACT.subtract(cash, buy_cost(order.leaves_qty, order.price, fee_bps))
    return cash


def check_cash(p: Proposal, limits: Limits) -> Denial | None:
    if p.side is not Side.BUY or p.available_cash is None:
        return None
    cost = buy_cost(p.qty, p.price, limits.fee_bps)
    if cost > p.available_cash:
        return Denial(
            VetoReason.INSUFFICIENT_CASH,
            f"BUY {p.qty} {p.symbol} at {p.price} costs {cost} with fees "
            f"> available cash {p.available_cash}",
        )
    return None


def _over_cap(cap: str, current: _N, projected: _N, limit: _N, where: str = "") -> Denial | None:
    """A ``RISK_CAP`` denial when ``projected`` exceeds the cap's ``limit``, with its numbers."""
    if projected > limit:
        return Denial(
            VetoReason.RISK_CAP,
            f"{cap}: {where}current {current}, projected {projected} > limit {limit}",
        )
    return None


def check_open_orders(p: Proposal, limits: Limits) -> Denial | None:
    return _over_cap("max_open_orders", p.open_orders, p.open_orders + 1, limits.max_open_orders)


def _projected(current: Decimal, p: Proposal) -> Decimal:
    return EXACT.add(current, EXACT.multiply(p.qty, p.mark))


def check_symbol_exposure(p: Proposal, limits: Limits) -> Denial | None:
    if p.side is not Side.BUY:
        return None
    current = p.symbol_exposure
    limit = limits.max_symbol_exposure_usd
    projected = _projected(current, p)
    return _over_cap("max_symbol_exposure_usd", current, projected, limit, where=f"{p.symbol} ")


def check_total_exposure(p: Proposal, limits: Limits) -> Denial | None:
    if p.side is not Side.BUY:
        return None
    current = p.total_exposure
    return _over_cap("max_exposure_usd", current, _projected(current, p), limits.max_exposure_usd)


CHECKS: Final[tuple[Check, ...]] = (
    check_stale,
    check_halted,
    check_position,
    check_quantity,
    check_cash,
    check_open_orders,
    check_symbol_exposure,
    check_total_exposure,
)


def evaluate(
    proposal: Proposal, limits: Limits, checks: tuple[Check, ...] = CHECKS
) -> Denial | None:
    """The first objection in the chain, or ``None`` when every check approves."""
    for check in checks:
        denial = check(proposal, limits)
        if denial is not None:
            return denial
    return None


class DrawdownGuard:
    """ACTIVE / HALTED from the drawdown of equity below its peak (``max_drawdown_usd``).

    Off (always ACTIVE, no records) when the limit is ``None``. Otherwise
    ``evaluate`` is called with the current equity after every tick and fill;
    it returns a ``RiskState`` record to persist when peak equity rises (the
    first evaluation sets the first peak) or the state changes -- so a restart
    resumes with the same peak and state.

    HALTED is sticky: recovering equity does not resume trading. An operator
    resumes by restarting with a *different* ``max_drawdown_usd``: a restored
    halt recorded under another limit is re-judged against the new one.
    """

    def __init__(self, limit: Decimal | None) -> None:
        self.limit = limit
        self.state = TradingState.ACTIVE
        self.peak: Decimal | None = None
        self._rejudge_from: Decimal | None = None

    def restore(self, latest: RiskState | None, peak: Decimal | None) -> None:
        if self.limit is None or latest is None:
            return
        self.peak = peak
        self.state = latest.trading_state
        if self.state is TradingState.HALTED and latest.max_drawdown_usd != self.limit:
            self._rejudge_from = latest.max_drawdown_usd

    def evaluate(self, equity: Decimal, ts_event: int, cause_id: str) -> RiskState | None:
        if self.limit is None:
            return None
        reasons: list[str] = []
        if self.peak is None or equity > self.peak:
            reasons.append("first equity peak" if self.peak is None else "new equity peak")
            self.peak = equity
        drawdown = EXACT.subtract(self.peak, equity)
        if self._rejudge_from is not None:
            if drawdown <= self.limit:
                self.state = TradingState.ACTIVE
                reasons.append(
                    f"resumed: max_drawdown_usd changed from {self._rejudge_from} to "
                    f"{self.limit}; drawdown {drawdown} is within it"
                )
            self._rejudge_from = None
        if self.state is TradingState.ACTIVE and drawdown > self.limit:
            self.state = TradingState.HALTED
            reasons.append(
                f"HALTED: drawdown {drawdown} from peak equity {self.peak} exceeds "
                f"max_drawdown_usd {self.limit}"
            )
        if not reasons:
            return None
        return RiskState(
            state_id=f"risk:{cause_id}",
            trading_state=self.state,
            ts_event=ts_event,
            equity=equity,
            peak_equity=self.peak,
            max_drawdown_usd=self.limit,
            reason="; ".join(reasons),
        )
