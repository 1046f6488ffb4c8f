"""A fast/slow pair of simple moving averages over bar closes, compared exactly.

Why running sums and not ``sum(window) / n``: a close costs O(1) whatever the
window length -- one add and at most one subtract per average.

Why no division and no float: the fast mean is above the slow one exactly when
``fast_sum * slow > slow_sum * fast``; multiplying across keeps the comparison in
exact decimal arithmetic. Floats (or rounded means) can call two equal averages
different, or flip two averages that differ in the 17th digit, and a flipped
regime is a trade.

Why a private decimal context: ``+``/``-``/``*`` use the thread's current
context (28 digits by default, and anyone may change it), which rounds silently.
``EXACT`` has the maximum precision, so sums and products of finite decimals are
always exact; ``Inexact`` and ``Rounded`` are trapped anyway, so a broken
invariant raises instead of deciding a trade on a rounded number. ``push`` uses
the operators (about half the cost of ``EXACT.add`` calls, and it runs once per
bar close, which is once per tick with ``bar_seconds = 0``), so its caller enters
``exact_arithmetic()`` -- once per batch, not once per close.
"""

from __future__ import annotations

from collections import deque
from contextlib import AbstractContextManager
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)
from typing import Final

from engine.core.events import Side

EXACT: Final = Context(
    prec=MAX_PREC,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    traps=[Inexact, Rounded, InvalidOperation, Overflow, DivisionByZero],
)
"""Decimal context for the SMA sums: unbounded precision, every rounding trapped."""

UP: Final = 1
"""Regime: the fast SMA is above the slow one."""
DOWN: Final = -1
"""Regime: the fast SMA is below the slow one."""
UNDEFINED: Final = 0
"""Regime: fewer than ``slow`` closes so far, or the two SMAs have always been equal."""

_ZERO: Final = Decimal(0)


def exact_arithmetic() -> AbstractContextManager[Context]:
    """Enter ``EXACT`` as the current decimal context; ``SmaPair.push`` needs it."""
    return localcontext(EXACT)


class SmaPair:
    """The fast/slow SMA regime of one symbol, fed one bar close at a time.

    ``push(close)`` updates the averages and returns the crossing it caused:
    ``Side.BUY`` (DOWN -> UP), ``Side.SELL`` (UP -> DOWN) or ``None``. Equal
    averages leave the regime as it was, so it stays ``UNDEFINED`` until the
    averages first differ with ``slow`` closes seen; that first defined regime is
    not a crossing.

    Error handling: ``push`` must run inside ``exact_arithmetic()``; outside it,
    sums beyond the current context's precision would round silently. A
    non-finite close (NaN, infinity) raises ``decimal.InvalidOperation``; ingest
    never produces one.
    """

    __slots__ = (
        "_fast",
        "_fast_d",
        "_fast_sum",
        "_fast_window",
        "_regime",
        "_slow",
        "_slow_d",
        "_slow_sum",
        "_slow_window",
    )

    def __init__(self, fast: int, slow: int) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"SMA lengths need 1 <= fast < slow, got fast={fast} slow={slow}")
        self._fast = fast
        self._slow = slow
        self._fast_d = Decimal(fast)
        self._slow_d = Decimal(slow)
        self._fast_sum = _ZERO
        self._slow_sum = _ZERO
        # Unbounded deques: an explicit popleft is what tells us which close
        # leaves the running sum, and it keeps each window at its length.
        self._fast_window: deque[Decimal] = deque()
        self._slow_window: deque[Decimal] = deque()
        self._regime = UNDEFINED

    @property
    def regime(self) -> int:
        """The current regime (``UP``, ``DOWN`` or ``UNDEFINED``)."""
        return self._regime

    def push(self, close: Decimal) -> Side | None:
        """Account for one more bar close; the crossing it caused, if any."""
        fast_window = self._fast_window
        fast_window.append(close)
        fast_sum = self._fast_sum + close
        if len(fast_window) > self._fast:
            fast_sum -= fast_window.popleft()
        self._fast_sum = fast_sum
        slow_window = self._slow_window
        slow_window.append(close)
        slow_sum = self._slow_sum + close
        if len(slow_window) > self._slow:
            slow_sum -= slow_window.popleft()
        elif len(slow_window) < self._slow:
            self._slow_sum = slow_sum
            return None
        self._slow_sum = slow_sum
        # fast_sum/fast vs slow_sum/slow, multiplied across by fast*slow > 0.
        lhs = fast_sum * self._slow_d
        rhs = slow_sum * self._fast_d
        before = self._regime
        if lhs > rhs:
            if before == UP:
                return None
            self._regime = UP
            return None if before == UNDEFINED else Side.BUY
        if lhs < rhs:
            if before == DOWN:
                return None
            self._regime = DOWN
            return None if before == UNDEFINED else Side.SELL
        return None
