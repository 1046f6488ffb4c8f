"""The bounds every configuration value passes: ranges, decimal precision, string shapes.

A key's bound is written next to its field in ``engine.config`` as
``Annotated[float, Range(0.01, 3600, unit="s")]``; ``Section.__post_init__``
checks it (msgspec ignores metadata it does not know). One ``Range`` serves the
TOML file, the ``ENGINE_*`` environment and the command-line twins of a key
(``--speed`` is checked against ``ingest.speed``'s range by ``admit_argument``),
and its ``text()`` is what the README's configuration table states.

*Why a lower AND an upper bound on every number:* a value the type accepts can
still hang or crash the engine later -- a heartbeat of ``1e-300`` s spins a loop
the float absorbs, an order timeout of ``1e300`` s overflows SQLite's 64-bit
integers, a fee of ``1E+100`` bps or a 79-digit slippage overflows the exact
decimal context of the sizing (``engine.core.sizing.EXACT``, 80 digits). The
ranges are chosen so that nothing downstream can raise on an admitted value.

*Decimals* are also bounded in syntax (plain ASCII ``-12.5`` or ``1E-5``: no
spaces, ``+``, ``_`` or non-ASCII digits, which ``Decimal()`` would accept) and
in precision: at most ``DECIMAL_MAX_DIGITS`` significant digits, none of them
more than ``DECIMAL_MAX_PLACES`` places after the point.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Final

import msgspec

DECIMAL_MAX_DIGITS: Final = 18
"""Significant digits of a decimal key. Products of two keys and a price stay far
inside the 80 digits of the sizing's exact context."""

DECIMAL_MAX_PLACES: Final = 12
"""No significant digit beyond the 12th place after the point (``qty_step`` >= 1E-12)."""

DECIMAL_SYNTAX: Final = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?")
"""What a decimal given as a string may look like (ASCII; length bounded by the pattern)."""

MAX_PATH_CHARS: Final = 4096
"""Longest file path a key may hold (Linux's PATH_MAX)."""

MAX_URL_CHARS: Final = 2048
MAX_SYMBOLS: Final = 64
"""Most symbols one feed subscribes (a Binance connection allows 1,024 streams)."""

MAX_CAPTURES: Final = 10_000
"""Most capture files one replay is given in the configuration."""

SYMBOL_PATTERN: Final = r"^[A-Za-z0-9-]{1,32}$"
"""A symbol or product id: 1-32 ASCII letters, digits or ``-`` (``BTCUSDT``, ``BTC-USD``).
No spaces, control or non-ASCII characters: a symbol is written into
subscribe messages, stream names and the database verbatim."""

_PRINTABLE: Final = r"^[^\x00-\x1f\x7f]*$"

PATTERN_MEANINGS: Final = {
    SYMBOL_PATTERN: "is not a symbol (1 to 32 ASCII letters, digits or '-')",
    _PRINTABLE: "holds a control character",
}
"""What each pattern means, for the one-line refusal (msgspec quotes the regex)."""

Symbol = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN)]
Symbols = Annotated[tuple[Symbol, ...], msgspec.Meta(max_length=MAX_SYMBOLS)]
FilePath = Annotated[str, msgspec.Meta(max_length=MAX_PATH_CHARS, pattern=_PRINTABLE)]
"""A path, possibly empty (``""`` = off where the key says so); no NUL or control characters."""
RequiredPath = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_PATH_CHARS, pattern=_PRINTABLE)
]
Url = Annotated[str, msgspec.Meta(max_length=MAX_URL_CHARS, pattern=_PRINTABLE)]
Paths = Annotated[tuple[FilePath, ...], msgspec.Meta(max_length=MAX_CAPTURES)]

Number = int | float | Decimal


@dataclass(frozen=True, slots=True)
class Range:
    """The values a numeric key admits: ``lo <= v <= hi`` (``lo < v`` if ``lo_open``).

    ``zero`` also admits exactly 0 below ``lo`` (where 0 means "off" or "as fast
    as possible"); ``unit`` is only for the text.
    """

    lo: Number
    hi: Number
    unit: str = ""
    lo_open: bool = False
    zero: bool = False

    def admits(self, value: Number) -> bool:
        if self.zero and value == 0:
            return True
        above = value > self.lo if self.lo_open else value >= self.lo
        return above and value <= self.hi

    def text(self) -> str:
        """The README's range text: ``0.01 to 3,600 s``, ``0, or 0.001 to 1,000``."""
        if self.lo_open:
            text = f"more than {_num(self.lo)}, up to {_num(self.hi)}"
        else:
            text = f"{_num(self.lo)} to {_num(self.hi)}"
        if self.zero:
            text = f"0, or {text}"
        return f"{text} {self.unit}".rstrip()


def _num(value: Number) -> str:
    """A bound as the README shows it: ``3,600``, ``0.01``, ``1E-12``."""
    if isinstance(value, int) or (isinstance(value, float | Decimal) and value == int(value)):
        return f"{int(value):,}"
    return str(value)


def problem(value: object, bound: Range) -> str | None:
    """Why ``value`` is outside ``bound`` (``None`` when admitted); pure and total.

    ``None`` for a value that is not a number at all (an optional key left unset).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"Expected a finite number, got {value}"
    if isinstance(value, Decimal):
        if not value.is_finite():
            return f"Expected a finite number, got {value}"
        precision = decimal_precision_problem(value)
        if precision is not None:
            return precision
    if not bound.admits(value):
        return f"must be {bound.text()}, got {_shown(value)}"
    return None


def decimal_precision_problem(value: Decimal) -> str | None:
    """Too many significant digits, or a digit too far after the point (``None``: fine)."""
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: checked by the caller
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    significant = len(digits) - trailing
    if significant > DECIMAL_MAX_DIGITS:
        return f"Expected at most {DECIMAL_MAX_DIGITS} significant digits, got {significant}"
    if significant and -(exponent + trailing) > DECIMAL_MAX_PLACES:
        return f"Expected at most {DECIMAL_MAX_PLACES} places after the point, got {_shown(value)}"
    return None


def decimal_syntax_problem(raw: str) -> str | None:
    """Why a decimal written as a string is refused before ``Decimal()`` sees it."""
    if DECIMAL_SYNTAX.fullmatch(raw):
        return None
    return f"Expected a plain decimal like 12.5 or 1E-5, got {_shown(raw)}"


SHOWN_CHARS: Final = 40
"""A refused value is quoted in its one-line message up to this many characters."""


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."
