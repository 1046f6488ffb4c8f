"""A run's trading figures, computed from its fills and a price path (docs/report.md).

Pure: no I/O. ``engine.store.report`` reads the run's ``fills`` (insertion order)
and the last trade price of each symbol in each sampling interval from ``ticks``,
and hands them to ``run_figures``. Every money value here is an exact decimal;
rounding for display happens once, in ``Money``. Ratios (Sharpe, Sortino,
profit factor, percentages) are decimals computed in ``RATIO_CONTEXT``.

Definitions (docs/report.md is the reference):

* **equity** ``E(t) = starting_cash + sum(cash_delta) + sum(position_s * mark_s(t))``
  over the fills at or before ``t``; ``mark_s(t)`` is the latest price point of
  ``s`` at or before ``t`` -- a price point is a fill's price or the last trade of
  a sampling interval;
* the **equity curve** is ``E`` at the run's start, after every fill, at the end of
  every sampling interval holding a trade, and at the run's end;
* a **round trip** is one symbol's fills from flat to flat.
"""

from __future__ import annotations

import decimal
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from engine.core.events import NS_PER_S, Fill, Side

SAMPLE_NS: Final = 60 * NS_PER_S
"""Sharpe and Sortino sample the equity curve once a minute of event time."""

MINUTES_PER_YEAR: Final = 525_600
"""Annualising factor's square: ``sharpe_annualised = sharpe * sqrt(MINUTES_PER_YEAR)``."""

RATIO_CONTEXT: Final = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)
RATIO_PLACES: Final = Decimal("0.0001")
"""Ratios and percentages are shown to 4 decimal places."""

MIN_MONEY_DECIMALS: Final = 2
ZERO: Final = Decimal(0)
HUNDRED: Final = Decimal(100)


@dataclass(frozen=True, slots=True)
class PricePoint:
    symbol: str
    ts_event: int
    price: Decimal


@dataclass(frozen=True, slots=True)
class Point:
    """One sample of the equity curve."""

    ts_event: int
    equity: Decimal


def finite_decimal(value: object) -> Decimal | None:
    """A stored JSON scalar as an exact finite ``Decimal`` (``None``: null, a bool, NaN, text)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() else None


def decimals_of(value: Decimal) -> int:
    """Significant decimal places of ``value`` (``61685.99000000`` -> 2)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@dataclass(frozen=True, slots=True)
class Money:
    """Display precision: quote amounts to ``decimals`` places, quantities to ``qty_decimals``."""

    decimals: int = MIN_MONEY_DECIMALS
    qty_decimals: int = 8

    def q(self, value: Decimal) -> str:
        return str(value.quantize(Decimal(1).scaleb(-self.decimals), decimal.ROUND_HALF_EVEN))

    def qty(self, value: Decimal) -> str:
        return str(value.quantize(Decimal(1).scaleb(-self.qty_decimals), decimal.ROUND_HALF_EVEN))

    def price(self, value: Decimal) -> str:
        return self.q(value)


def money_for(prices: Iterable[Decimal], qtys: Iterable[Decimal]) -> Money:
    """Quote precision = the most decimals any (normalised) price has, at least 2;
    quantity precision = the most decimals any (normalised) quantity has."""
    price_dec = max((decimals_of(p) for p in prices), default=MIN_MONEY_DECIMALS)
    qty_dec = max((decimals_of(q) for q in qtys), default=0)
    return Money(decimals=max(MIN_MONEY_DECIMALS, price_dec), qty_decimals=qty_dec)


def ratio(num: Decimal, den: Decimal) -> Decimal | None:
    if den == 0:
        return None
    return RATIO_CONTEXT.divide(num, den).quantize(RATIO_PLACES, decimal.ROUND_HALF_EVEN)


def pct(num: Decimal, den: Decimal) -> Decimal | None:
    value = ratio(RATIO_CONTEXT.multiply(num, HUNDRED), den)
    return value


@dataclass(slots=True)
class RoundTrip:
    """One symbol's fills from flat to flat (``closed`` False: still open at the end)."""

    symbol: str
    entry_ns: int
    exit_ns: int | None = None
    bought_qty: Decimal = ZERO
    bought_value: Decimal = ZERO
    sold_qty: Decimal = ZERO
    sold_value: Decimal = ZERO
    fees: Decimal = ZERO
    cash: Decimal = ZERO
    fills: int = 0
    closed: bool = False
    pnl: Decimal = ZERO
    """Net of fees: the sum of the trip's ``cash_delta`` (closed), or that plus the open
    position at the last mark (open)."""

    @property
    def entry_price(self) -> Decimal | None:
        return None if self.bought_qty == 0 else RATIO_CONTEXT.divide(
            self.bought_value, self.bought_qty
        )

    @property
    def exit_price(self) -> Decimal | None:
        return None if self.sold_qty == 0 else RATIO_CONTEXT.divide(
            self.sold_value, self.sold_qty
        )


@dataclass(slots=True)
class SymbolFigures:
    symbol: str
    fills: int = 0
    round_trips: int = 0
    wins: int = 0
    losses: int = 0
    net_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    exposure_ns: int = 0
    position: Decimal = ZERO
    last_price: Decimal | None = None


@dataclass(slots=True)
class Figures:
    start_ns: int
    end_ns: int
    starting_cash: Decimal | None
    starting_equity: Decimal
    final_equity: Decimal
    net_pnl: Decimal
    fees: Decimal
    gross_pnl: Decimal
    trips: list[RoundTrip]
    curve: list[Point]
    max_drawdown: Decimal
    max_drawdown_peak: Decimal
    max_drawdown_start_ns: int | None
    max_drawdown_end_ns: int | None
    samples: list[Decimal]
    exposure_ns: int
    symbols: dict[str, SymbolFigures] = field(default_factory=dict)

    @property
    def closed(self) -> list[RoundTrip]:
        return [t for t in self.trips if t.closed]

    @property
    def wins(self) -> list[RoundTrip]:
        return [t for t in self.closed if t.pnl > 0]

    @property
    def losses(self) -> list[RoundTrip]:
        return [t for t in self.closed if t.pnl < 0]

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    def sharpe(self) -> Decimal | None:
        """Mean over population standard deviation of the per-minute equity changes."""
        changes = _changes(self.samples)
        if len(changes) < 2:
            return None
        mean = _mean(changes)
        var = _mean([(c - mean) ** 2 for c in changes])
        return ratio(mean, var.sqrt(RATIO_CONTEXT))

    def sortino(self) -> Decimal | None:
        """Mean over downside deviation ``sqrt(mean(min(change, 0)^2))`` of the same changes."""
        changes = _changes(self.samples)
        if len(changes) < 2:
            return None
        down = _mean([min(c, ZERO) ** 2 for c in changes])
        return ratio(_mean(changes), down.sqrt(RATIO_CONTEXT))


def _changes(samples: Sequence[Decimal]) -> list[Decimal]:
    return [b - a for a, b in itertools.pairwise(samples)]


def _mean(values: Sequence[Decimal]) -> Decimal:
    return RATIO_CONTEXT.divide(sum(values, ZERO), Decimal(len(values)))


def _book(trip: RoundTrip, fill: Fill) -> None:
    value = fill.qty * fill.price
    if fill.side is Side.BUY:
        trip.bought_qty += fill.qty
        trip.bought_value += value
    else:
        trip.sold_qty += fill.qty
        trip.sold_value += value
    trip.fees += fill.fee
    trip.cash += fill.cash_delta
    trip.fills += 1


class _Curve:
    """Equity after each event; tracks the max drawdown and the per-minute samples."""

    def __init__(self, start_ns: int, equity: Decimal) -> None:
        self.points = [Point(start_ns, equity)]
        self.peak, self.peak_ns = equity, start_ns
        self.max_dd, self.dd_peak = ZERO, equity
        self.dd_start: int | None = None
        self.dd_end: int | None = None
        self.recovering = False
        self.samples = [equity]
        self.bucket = start_ns // SAMPLE_NS

    def add(self, ts: int, equity: Decimal) -> None:
        bucket = ts // SAMPLE_NS
        while self.bucket < bucket:  # one sample per minute boundary crossed
            self.samples.append(self.points[-1].equity)
            self.bucket += 1
        self.points.append(Point(ts, equity))
        if equity >= self.peak:
            if self.recovering:
                self.dd_end, self.recovering = ts, False
            self.peak, self.peak_ns = equity, ts
            return
        drawdown = self.peak - equity
        if drawdown > self.max_dd:
            self.max_dd, self.dd_peak = drawdown, self.peak
            self.dd_start, self.dd_end, self.recovering = self.peak_ns, None, True

    def finish(self, end_ns: int) -> None:
        self.samples.append(self.points[-1].equity)
        if self.recovering:
            self.dd_end = end_ns


def run_figures(
    fills: Sequence[Fill],
    prices: Sequence[PricePoint],
    *,
    start_ns: int,
    end_ns: int,
    starting_cash: Decimal | None,
    opening: Mapping[str, Decimal] | None = None,
    opening_cash: Decimal = ZERO,
) -> Figures:
    """Figures of one run: ``fills`` in booking order, ``prices`` (any order) the sampled path.

    ``opening`` / ``opening_cash``: positions and cash the run started with (fills of
    earlier runs of the same database); a position open at the start is the first
    round trip of its symbol, entered at the run's start at its first mark.
    """
    base = (starting_cash or ZERO) + opening_cash
    positions: dict[str, Decimal] = dict(opening or {})
    marks: dict[str, Decimal] = {}
    cash = base
    symbols: dict[str, SymbolFigures] = {}
    trips: list[RoundTrip] = []
    open_trips: dict[str, RoundTrip] = {}
    since: dict[str, int] = {}
    any_since: int | None = None
    exposure = 0

    def equity() -> Decimal:
        return cash + sum(
            (q * marks[s] for s, q in positions.items() if q != 0 and s in marks), ZERO
        )

    for symbol, qty in sorted(positions.items()):
        if qty != 0:
            symbols.setdefault(symbol, SymbolFigures(symbol)).position = qty
            open_trips[symbol] = RoundTrip(symbol, entry_ns=start_ns, bought_qty=qty)
            trips.append(open_trips[symbol])
            since[symbol] = start_ns
            any_since = start_ns
    first_marks: dict[str, Decimal] = {}
    for p in sorted(prices, key=lambda p: p.ts_event):
        first_marks.setdefault(p.symbol, p.price)
    for symbol, trip in open_trips.items():
        mark = first_marks.get(symbol, ZERO)
        trip.bought_value = trip.bought_qty * mark
        trip.cash = -trip.bought_value
        marks[symbol] = mark
    curve = _Curve(start_ns, equity())

    events: list[tuple[int, int, PricePoint | Fill]] = [(p.ts_event, 0, p) for p in prices]
    events += [(f.ts_event, 1 + i, f) for i, f in enumerate(fills)]
    events.sort(key=lambda e: (e[0], e[1]))
    for ts, _, event in events:
        if isinstance(event, PricePoint):
            marks[event.symbol] = event.price
            sym = symbols.setdefault(event.symbol, SymbolFigures(event.symbol))
            sym.last_price = event.price
            curve.add(ts, equity())
            continue
        fill = event
        sym = symbols.setdefault(fill.symbol, SymbolFigures(fill.symbol))
        before = positions.get(fill.symbol, ZERO)
        if fill.symbol not in open_trips:
            open_trips[fill.symbol] = RoundTrip(fill.symbol, entry_ns=fill.ts_event)
            trips.append(open_trips[fill.symbol])
        trip = open_trips[fill.symbol]
        _book(trip, fill)
        after = before + fill.position_delta
        positions[fill.symbol] = after
        marks[fill.symbol] = fill.price
        sym.last_price = fill.price
        cash += fill.cash_delta
        sym.fills += 1
        sym.fees += fill.fee
        sym.position = after
        if before == 0 and after != 0:
            since[fill.symbol] = fill.ts_event
            if any_since is None:
                any_since = fill.ts_event
        if after == 0 and before != 0:
            sym.exposure_ns += fill.ts_event - since.pop(fill.symbol)
            trip.closed, trip.exit_ns, trip.pnl = True, fill.ts_event, trip.cash
            del open_trips[fill.symbol]
            sym.round_trips += 1
            sym.wins += trip.pnl > 0
            sym.losses += trip.pnl < 0
            if not since and any_since is not None:
                exposure += fill.ts_event - any_since
                any_since = None
        curve.add(ts, equity())
    end = max(end_ns, curve.points[-1].ts_event)
    curve.add(end, equity())
    curve.finish(end)
    for symbol, opened in since.items():
        symbols[symbol].exposure_ns += end - opened
    if any_since is not None:
        exposure += end - any_since
    for trip in open_trips.values():
        trip.pnl = trip.cash + positions[trip.symbol] * marks.get(trip.symbol, ZERO)
    for trip in trips:
        if trip.closed:
            symbols[trip.symbol].net_pnl += trip.pnl
    final = equity()
    fees = sum((f.fee for f in fills), ZERO)
    return Figures(
        start_ns=start_ns,
        end_ns=end,
        starting_cash=starting_cash,
        starting_equity=curve.points[0].equity,
        final_equity=final,
        net_pnl=final - curve.points[0].equity,
        fees=fees,
        gross_pnl=final - curve.points[0].equity + fees,
        trips=trips,
        curve=curve.points,
        max_drawdown=curve.max_dd,
        max_drawdown_peak=curve.dd_peak,
        max_drawdown_start_ns=curve.dd_start,
        max_drawdown_end_ns=curve.dd_end,
        samples=curve.samples,
        exposure_ns=exposure,
        symbols=dict(sorted(symbols.items())),
    )


def _opt(value: Decimal | None, money: Money | None = None) -> str | None:
    if value is None:
        return None
    return money.q(value) if money is not None else str(value)


def _seconds(ns: int) -> int:
    """Nanoseconds to whole seconds, rounded half up."""
    return (ns + NS_PER_S // 2) // NS_PER_S


def trip_builtins(trip: RoundTrip, money: Money) -> dict[str, Any]:
    entry, exit_ = trip.entry_price, trip.exit_price
    return {
        "symbol": trip.symbol,
        "entry_ns": trip.entry_ns,
        "exit_ns": trip.exit_ns,
        "closed": trip.closed,
        "qty": money.qty(trip.bought_qty),
        "entry_price": _opt(entry, money),
        "exit_price": _opt(exit_, money),
        "fees": money.q(trip.fees),
        "pnl": money.q(trip.pnl),
        "fills": trip.fills,
    }


def figures_builtins(fig: Figures, money: Money) -> dict[str, Any]:
    """The JSON form of ``fig``: money as strings at ``money``'s precision, ratios to 4 places."""
    closed, wins, losses = fig.closed, fig.wins, fig.losses
    won = sum((t.pnl for t in wins), ZERO)
    lost = sum((t.pnl for t in losses), ZERO)
    cash = fig.starting_cash
    sharpe = fig.sharpe()
    annual = Decimal(MINUTES_PER_YEAR).sqrt(RATIO_CONTEXT)
    return {
        "start_ns": fig.start_ns,
        "end_ns": fig.end_ns,
        "duration_s": _seconds(fig.duration_ns),
        "money_decimals": money.decimals,
        "qty_decimals": money.qty_decimals,
        "starting_cash": _opt(cash, money),
        "starting_equity": money.q(fig.starting_equity),
        "final_equity": money.q(fig.final_equity),
        "net_pnl": money.q(fig.net_pnl),
        "net_pnl_pct": str(pct(fig.net_pnl, cash)) if cash else None,
        "gross_pnl": money.q(fig.gross_pnl),
        "fees": money.q(fig.fees),
        "fees_pct_of_gross": str(pct(fig.fees, fig.gross_pnl)) if fig.gross_pnl > 0 else None,
        "fees_pct_of_loss": str(pct(fig.fees, -fig.net_pnl)) if fig.net_pnl < 0 else None,
        "round_trips": len(closed),
        "open_round_trips": len(fig.trips) - len(closed),
        "wins": len(wins),
        "losses": len(losses),
        "win_rate_pct": str(pct(Decimal(len(wins)), Decimal(len(closed)))) if closed else None,
        "avg_win": money.q(won / len(wins)) if wins else None,
        "avg_loss": money.q(lost / len(losses)) if losses else None,
        "best": money.q(max(t.pnl for t in closed)) if closed else None,
        "worst": money.q(min(t.pnl for t in closed)) if closed else None,
        "profit_factor": str(ratio(won, -lost)) if losses else None,
        "expectancy": money.q(sum((t.pnl for t in closed), ZERO) / len(closed))
        if closed
        else None,
        "max_drawdown": money.q(fig.max_drawdown),
        "max_drawdown_pct": str(pct(fig.max_drawdown, fig.max_drawdown_peak))
        if cash and fig.max_drawdown_peak > 0
        else None,
        "max_drawdown_duration_s": _seconds(fig.max_drawdown_end_ns - fig.max_drawdown_start_ns)
        if fig.max_drawdown_start_ns is not None and fig.max_drawdown_end_ns is not None
        else None,
        "sharpe_per_minute": _opt(sharpe),
        "sharpe_annualised": str((sharpe * annual).quantize(RATIO_PLACES))
        if sharpe is not None
        else None,
        "sortino_per_minute": _opt(fig.sortino()),
        "samples": len(fig.samples),
        "exposure_pct": str(pct(Decimal(fig.exposure_ns), Decimal(fig.duration_ns)))
        if fig.duration_ns
        else None,
        "symbols": {
            s.symbol: {
                "fills": s.fills,
                "round_trips": s.round_trips,
                "wins": s.wins,
                "losses": s.losses,
                "net_pnl": money.q(s.net_pnl),
                "fees": money.q(s.fees),
                "position": money.qty(s.position),
                "last_price": _opt(s.last_price, money),
                "exposure_pct": str(pct(Decimal(s.exposure_ns), Decimal(fig.duration_ns)))
                if fig.duration_ns
                else None,
            }
            for s in fig.symbols.values()
        },
    }
