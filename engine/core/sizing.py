"""Exact order arithmetic: slipped prices, quantities rounded down to the step, fees.

Every product and quotient here must be exact, because I4
(``cash_delta + position_delta * price + fee == 0``) is checked with ``==`` on
``Decimal``s, by the ledger, the report and the tests. ``EXACT`` is a private
context whose ``Inexact`` trap turns any silent rounding into an exception: a
bug surfaces at the first offending fill instead of as a drifting balance.

Basis points divide by 10,000, which in decimal is only an exponent shift, so
slipped prices and fees stay exact; the quantity is an *integer* number of
steps obtained with ``divide_int`` (truncation of the exact quotient), never a
rounded quotient multiplied back.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Final

from engine.core.events import Side

EXACT_PRECISION: Final = 80
"""Digits kept by ``EXACT``. Prices (~10 digits) x quantities (~10) x bps (~4)
need ~25; 80 leaves room for sums over a long run. Overflowing it raises
``decimal.Inexact`` (a bug, never a rounding)."""

EXACT: Final = decimal.Context(
    prec=EXACT_PRECISION,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[
        decimal.Inexact,
        decimal.InvalidOperation,
        decimal.DivisionByZero,
        decimal.Overflow,
    ],
)
"""Arithmetic that must not round: any rounding raises ``decimal.Inexact``."""

BPS: Final = Decimal(10_000)
ZERO: Final = Decimal(0)


def bps_of(amount: Decimal, bps: Decimal) -> Decimal:
    """``amount * bps / 10_000``, exactly."""
    return EXACT.divide(EXACT.multiply(amount, bps), BPS)


def slipped_price(price: Decimal, side: Side, slippage_bps: Decimal) -> Decimal:
    """The price we assume we pay (BUY: higher) or receive (SELL: lower)."""
    adjust = EXACT.add(BPS, slippage_bps) if side is Side.BUY else EXACT.subtract(BPS, slippage_bps)
    return EXACT.divide(EXACT.multiply(price, adjust), BPS)


def offset_price(price: Decimal, side: Side, offset_bps: Decimal) -> Decimal:
    """A limit price ``offset_bps`` on the passive side of ``price`` (BUY below, SELL above)."""
    adjust = EXACT.subtract(BPS, offset_bps) if side is Side.BUY else EXACT.add(BPS, offset_bps)
    return EXACT.divide(EXACT.multiply(price, adjust), BPS)


def round_down(qty: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` that is ``<= qty`` (``qty >= 0``)."""
    steps = EXACT.divide_int(qty, step)
    return EXACT.multiply(steps, step)


def qty_for_notional(notional: Decimal, price: Decimal, step: Decimal) -> Decimal:
    """How much ``notional`` buys at ``price``, rounded DOWN to a multiple of ``step``.

    ``divide_int`` truncates the exact quotient ``notional / (price * step)``, so
    ``qty * price <= notional`` always holds -- a rounded quotient could overshoot.
    """
    steps = EXACT.divide_int(notional, EXACT.multiply(price, step))
    return EXACT.multiply(steps, step)


def fee_for(qty: Decimal, price: Decimal, fee_bps: Decimal) -> Decimal:
    """The fee on one fill: ``fee_bps`` of the fill's notional ``qty * price``."""
    return bps_of(EXACT.multiply(qty, price), fee_bps)


def position_delta_for(side: Side, qty: Decimal) -> Decimal:
    return qty if side is Side.BUY else EXACT.minus(qty)


def cash_delta_for(position_delta: Decimal, price: Decimal, fee: Decimal) -> Decimal:
    """The cash a fill moves, chosen so that ``cash + position_delta * price + fee == 0``."""
    return EXACT.subtract(EXACT.minus(EXACT.multiply(position_delta, price)), fee)


def conserves(cash_delta: Decimal, position_delta: Decimal, price: Decimal, fee: Decimal) -> bool:
    """I4 for one fill, exactly (a value too long to evaluate exactly does not conserve)."""
    try:
        total = EXACT.add(EXACT.add(cash_delta, EXACT.multiply(position_delta, price)), fee)
    except decimal.DecimalException:
        return False
    return total == ZERO
