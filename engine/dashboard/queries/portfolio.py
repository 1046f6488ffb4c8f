"""Positions, cash and PnL for the dashboard: the engine's own ``Ledger`` over persisted fills.

The dashboard does no accounting of its own (I4: all PnL derives from fills):
rows of the ``fills`` table become ``Fill`` events (the schema's own mapping,
``engine.store.rows.record_of``) and go through
``engine.core.ledger.Ledger.apply``, exactly as the engine's restore and
``hybrid-engine report`` do, so the three always agree.

A row that breaks conservation (``cash_delta + position_delta * price + fee != 0``)
is refused by the ledger; the dashboard counts it in ``conservation_violations``
and shows the rest instead of failing the page (``hybrid-engine report`` is the
audit that fails loudly).
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from engine.core.events import Fill
from engine.core.ledger import ConservationError, Ledger
from engine.store.rows import record_of

DISPLAY_PLACES: Final = Decimal("1e-8")
"""The average entry price is a quotient; it is shown to this many places."""

_DISPLAY: Final = decimal.Context(prec=40)


@dataclass(slots=True)
class Book:
    """The engine's ledger plus what the dashboard must say about rows it could not book."""

    ledger: Ledger = field(default_factory=Ledger)
    conservation_violations: int = 0

    def apply_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        """Book rows of the fills table's mapped columns (``columns_of(Fill)`` order).

        *Error handling:* a value that is not a decimal or a side raises
        ``msgspec.ValidationError`` (a ``ValueError``) -- a corrupt row the caller reports.
        """
        for row in rows:
            try:
                self.ledger.apply(record_of(Fill, row))
            except ConservationError:
                self.conservation_violations += 1

    def summary(self, marks: Mapping[str, Decimal]) -> dict[str, Any]:
        """JSON-ready positions, cash and PnL (decimals as exact strings) marked at ``marks``."""
        ledger = self.ledger
        positions = []
        for symbol, book in sorted(ledger.books.items()):
            mark = marks.get(symbol)
            avg = None
            if book.position != 0:
                avg = _DISPLAY.divide(book.basis, book.position).quantize(DISPLAY_PLACES)
            unrealised = ledger.unrealised({symbol: mark} if mark is not None else {})
            positions.append({
                "symbol": symbol,
                "qty": str(book.position),
                "avg_price": None if avg is None else str(avg),
                "mark_price": None if mark is None else str(mark),
                "market_value": None if mark is None else str(book.position * mark),
                "realized_pnl": str(book.realised),
                "unrealized_pnl": str(unrealised),
            })
        return {
            "positions": positions,
            "cash": str(ledger.cash),
            "fees": str(ledger.fees),
            "realized_pnl": str(ledger.realised),
            "unrealized_pnl": str(ledger.unrealised(marks)),
            "equity": str(ledger.equity(marks)),
            "fill_count": ledger.fill_count,
            "conservation_violations": self.conservation_violations,
        }
