"""Positions, cash, fees and PnL -- derived only from fills.

The ledger has exactly one way in: ``apply(fill)``. Nothing else moves cash or
positions, so the ledger rebuilt from the ``fills`` table at start-up is the
ledger the previous run had (I4), and there is no "phantom" PnL: every cent
traces back to a persisted fill.

Cash starts at zero, so ``cash`` is the net money spent (negative while long)
and ``equity = cash + sum(position * mark)`` is the total PnL of the run.

Realised PnL uses average cost. Splitting the cost basis of a partial SELL is
the only division here, so it is rounded (``COST_CONTEXT``) -- but the remaining
basis is computed as ``basis - removed``, which keeps
``realised + unrealised - fees == equity`` exact whatever the rounding did.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from engine.core.events import Fill
from engine.core.sizing import EXACT, ZERO, conserves

COST_CONTEXT: Final = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)
"""Rounding for the pro-rata cost basis of a partial sale (never reaches cash or positions)."""


def _pro_rata(basis: Decimal, part: Decimal, whole: Decimal) -> Decimal:
    """``basis * part / whole``: exact when it can be, else rounded by ``COST_CONTEXT``."""
    product = EXACT.multiply(basis, part)
    try:
        return EXACT.divide(product, whole)
    except decimal.Inexact:
        return COST_CONTEXT.divide(product, whole)


class ConservationError(Exception):
    """Raised by ``Ledger.apply`` for a fill that breaks ``cash + qty * price + fee == 0`` (I4)."""


@dataclass(slots=True)
class SymbolBook:
    """One symbol's position and the cost basis (without fees) of what is held."""

    position: Decimal = ZERO
    basis: Decimal = ZERO
    realised: Decimal = ZERO


@dataclass(slots=True)
class Ledger:
    cash: Decimal = ZERO
    fees: Decimal = ZERO
    books: dict[str, SymbolBook] = field(default_factory=dict)
    fill_count: int = 0

    def apply(self, fill: Fill) -> None:
        """Book one fill.

        *Error handling:* a fill that does not conserve raises ``ConservationError``
        before anything changes -- a broken fill is a bug, never booked.
        """
        if not conserves(fill.cash_delta, fill.position_delta, fill.price, fill.fee):
            raise ConservationError(f"{fill.fill_id} breaks cash + qty * price + fee == 0")
        book = self.books.setdefault(fill.symbol, SymbolBook())
        delta = fill.position_delta
        if delta >= ZERO or book.position <= ZERO:
            # Opening or adding (long-only: a SELL never starts from <= 0 here).
            book.basis = EXACT.add(book.basis, EXACT.multiply(delta, fill.price))
        else:
            sold = EXACT.minus(delta)
            if sold >= book.position:
                removed = book.basis
            else:
                removed = _pro_rata(book.basis, sold, book.position)
            book.realised = EXACT.add(
                book.realised, EXACT.subtract(EXACT.multiply(sold, fill.price), removed)
            )
            book.basis = EXACT.subtract(book.basis, removed)
        book.position = EXACT.add(book.position, delta)
        if book.position == ZERO:
            book.basis = ZERO
        self.cash = EXACT.add(self.cash, fill.cash_delta)
        self.fees = EXACT.add(self.fees, fill.fee)
        self.fill_count += 1

    def position(self, symbol: str) -> Decimal:
        book = self.books.get(symbol)
        return ZERO if book is None else book.position

    def positions(self) -> dict[str, Decimal]:
        return {symbol: book.position for symbol, book in sorted(self.books.items())}

    @property
    def realised(self) -> Decimal:
        return sum((b.realised for b in self.books.values()), ZERO)

    def unrealised(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Open positions at ``marks`` minus their cost basis (unmarked symbols count at cost)."""
        total = ZERO
        for symbol, book in self.books.items():
            if book.position == ZERO or symbol not in marks:
                continue
            value = EXACT.multiply(book.position, marks[symbol])
            total = EXACT.add(total, EXACT.subtract(value, book.basis))
        return total

    def market_value(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Sum of position x mark (a symbol without a mark is valued at its cost basis)."""
        total = ZERO
        for symbol, book in self.books.items():
            if book.position == ZERO:
                continue
            value = EXACT.multiply(book.position, marks[symbol]) if symbol in marks else book.basis
            total = EXACT.add(total, value)
        return total

    def equity(self, marks: Mapping[str, Decimal]) -> Decimal:
        """``cash + market value``: the run's total PnL (cash starts at zero)."""
        return EXACT.add(self.cash, self.market_value(marks))


def ledger_from_fills(fills: Iterable[Fill]) -> Ledger:
    """Rebuild a ledger from persisted fills, in the order given."""
    ledger = Ledger()
    for fill in fills:
        ledger.apply(fill)
    return ledger
