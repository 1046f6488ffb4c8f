"""Positions, cash and PnL rebuilt from persisted fills (I4: all PnL derives from fills).

Average-cost accounting, exact ``Decimal`` throughout:

* ``cash`` is the sum of every fill's ``cash_delta`` (fees included), starting at 0;
* a fill that grows a position (or opens one) adds to its cost basis;
* a fill that shrinks it realises ``(price - avg_price) * closed_qty`` (sign-adjusted
  for shorts) and removes the closed share of the basis; one that flips it closes
  the old side fully and opens the rest at the fill price;
* ``unrealized = position * (mark - avg_price)`` at the last traded price;
* ``equity = cash + sum(position * mark)``, which equals
  ``realized + unrealized - fees`` (the engine starts flat with no cash).

The average price is a quotient and so may not be exact; a private context with
``PRECISION`` digits keeps that rounding far below a price's last digit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any, Final

PRECISION: Final = 50
"""Digits for the average-price quotient (prices carry at most ~20 significant digits)."""

_CTX: Final = Context(prec=PRECISION)
_ZERO: Final = Decimal(0)


@dataclass(slots=True)
class Position:
    symbol: str
    qty: Decimal = _ZERO
    cost: Decimal = _ZERO
    """Signed cost basis of the open quantity: ``qty * avg_price``."""
    realized: Decimal = _ZERO
    fees: Decimal = _ZERO
    fills: int = 0

    @property
    def avg_price(self) -> Decimal | None:
        return None if self.qty == 0 else _CTX.divide(self.cost, self.qty)


@dataclass(slots=True)
class Ledger:
    """Running totals over fills applied in persistence order."""

    positions: dict[str, Position] = field(default_factory=dict)
    cash: Decimal = _ZERO
    fees: Decimal = _ZERO
    fills: int = 0

    def apply(self, symbol: str, position_delta: Decimal, price: Decimal, fee: Decimal,
              cash_delta: Decimal) -> None:
        """Account for one fill."""
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol)
        self.cash += cash_delta
        self.fees += fee
        self.fills += 1
        pos.fees += fee
        pos.fills += 1
        delta = position_delta
        if pos.qty == 0 or (pos.qty > 0) == (delta > 0):
            pos.cost += delta * price
            pos.qty += delta
            return
        closing = min(abs(delta), abs(pos.qty))
        sign = Decimal(1) if pos.qty > 0 else Decimal(-1)
        avg = _CTX.divide(pos.cost, pos.qty)
        pos.realized += (price - avg) * closing * sign
        pos.cost -= avg * closing * sign
        pos.qty -= closing * sign
        rest = abs(delta) - closing
        if pos.qty == 0:
            pos.cost = _ZERO  # drop the quotient's residue once flat
        if rest > 0:
            pos.qty = rest * -sign
            pos.cost = pos.qty * price

    def apply_rows(self, rows: Iterable[tuple[str, str, str, str, str]]) -> None:
        """Apply ``(symbol, position_delta, price, fee, cash_delta)`` rows of the fills table."""
        for symbol, position_delta, price, fee, cash_delta in rows:
            self.apply(symbol, Decimal(position_delta), Decimal(price), Decimal(fee),
                       Decimal(cash_delta))

    @property
    def realized(self) -> Decimal:
        return sum((p.realized for p in self.positions.values()), _ZERO)

    def market_value(self, marks: Mapping[str, Decimal]) -> Decimal:
        return sum(
            (p.qty * marks.get(p.symbol, p.avg_price or _ZERO)
             for p in self.positions.values() if p.qty != 0),
            _ZERO,
        )

    def equity(self, marks: Mapping[str, Decimal]) -> Decimal:
        return self.cash + self.market_value(marks)

    def summary(self, marks: Mapping[str, Decimal]) -> dict[str, Any]:
        """JSON-ready view (decimals as strings) marked at ``marks`` (last prices)."""
        positions = []
        unrealized_total = _ZERO
        for symbol in sorted(self.positions):
            pos = self.positions[symbol]
            avg = pos.avg_price
            mark = marks.get(symbol)
            unrealized = _ZERO
            if avg is not None and mark is not None:
                unrealized = pos.qty * (mark - avg)
            unrealized_total += unrealized
            positions.append({
                "symbol": symbol,
                "qty": str(pos.qty),
                "avg_price": None if avg is None else str(round_display(avg)),
                "mark_price": None if mark is None else str(mark),
                "market_value": None if mark is None else str(pos.qty * mark),
                "realized_pnl": str(round_display(pos.realized)),
                "unrealized_pnl": str(round_display(unrealized)),
                "fees": str(pos.fees),
                "fills": pos.fills,
            })
        realized = self.realized
        return {
            "positions": positions,
            "cash": str(self.cash),
            "fees": str(self.fees),
            "realized_pnl": str(round_display(realized)),
            "unrealized_pnl": str(round_display(unrealized_total)),
            "equity": str(self.equity(marks)),
            "fill_count": self.fills,
        }


DISPLAY_PLACES: Final = Decimal("1e-8")
"""Quotient-derived figures are shown to 8 decimal places (exact sums are shown as they are)."""


_DISPLAY_EXPONENT: Final = -8


def round_display(value: Decimal) -> Decimal:
    """A figure that went through the average-price quotient, cut to ``DISPLAY_PLACES``."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= _DISPLAY_EXPONENT:
        return value
    return value.quantize(DISPLAY_PLACES, context=_CTX)
