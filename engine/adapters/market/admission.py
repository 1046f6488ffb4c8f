"""Admission: the one path every market-data value takes before anything downstream sees it.

Every source -- the live WebSocket feed (``market.ws.intake``), capture replay
(``market.replay``) and the synthetic walk (``market.synthetic``) -- turns a frame
into a ``Tick`` with the venue's decoder (``binance``, ``coinbase``) and then
hands the tick to ``Admission.admit``. What passes both can never make a later
stage raise; what fails is refused, counted by reason (``Counters.refused_*``)
and sampled into the log (``tick_refused``, rate-limited). See ``docs/ingest.md``,
section "Admission", for the limits and why they are what they are.

Two layers:

* **Syntax, in the decoders** (``parse_decimal``, ``parse_symbol``): strict
  ASCII numbers with bounded digits, scale and exponent, and well-formed
  symbols. A violation is a malformed message (``MalformedMessage`` with
  ``refusal`` ``number`` or ``symbol``): counted in ``parse_errors`` (and the
  parse budget, exit 11) *and* in ``refused_number`` / ``refused_symbol``.
* **Plausibility, here** (``Admission.admit``, in this order): the symbol is
  among those subscribed (live feeds only), the event time lies within
  ``event_time_window_s`` of the receive time, the trade id is new and within
  the dedup window of the symbol's stream (``engine.adapters.market.dedup``), and the
  price lies within ``price_band_pct`` of the symbol's reference price.

*Why these number bounds* (``MAX_INTEGER_DIGITS``, ``MAX_SCALE``): the core's
exact arithmetic (``engine.core.sizing.EXACT``, 80 digits, ``Inexact``
trapped) multiplies a price by a quantity, a slippage factor and a fee rate,
and the ledger sums the products. A value below 1e15 with no non-zero digit
below 1e-12 has at most 27 significant digits; a fill's fee then needs at most
27 + 27 + 4 + 4 (+ the digits of the configured basis points) digits, and a
cash balance spans from ~1e30 down to ~1e-32 -- inside 80. Without the scale
bound a 76-digit price was "finite and in range" and raised ``Inexact`` in
sizing (issue 10).
"""

from __future__ import annotations

import decimal
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from engine import logs
from engine.adapters.market.dedup import Gap, Jump, TradeDedup
from engine.config.schema import IngestSection
from engine.core.events import NS_PER_S, Tick
from engine.counters import Counters

# -- numbers --------------------------------------------------------------------------

MAX_INTEGER_DIGITS: Final = 15
"""Digits before the point: every admitted value is < 1e15."""
MAX_SCALE: Final = 12
"""No non-zero digit below 1e-12: every admitted non-zero value is >= 1e-12."""
MAX_SIGNIFICANT_DIGITS: Final = MAX_INTEGER_DIGITS + MAX_SCALE
"""27: what the two bounds above imply."""
MAX_TRAILING_ZEROS: Final = 12
"""Zeros allowed after the last significant fraction digit (venues pad to a fixed
scale: Binance prints 8 decimals); they change no value."""
MAX_EXPONENT_DIGITS: Final = 2
"""An exponent (``1.5E-3``) has at most two digits; the value must still meet the
bounds above. Venues print plain decimals; the exponent form is for our own captures."""
MIN_VALUE: Final = Decimal("1E-12")
MAX_VALUE: Final = Decimal("1E+15")
"""Admitted prices and quantities lie in ``[MIN_VALUE, MAX_VALUE)``."""
MAX_NUMBER_CHARS: Final = 48
"""Longer text is refused before any regular expression or ``Decimal`` sees it."""

_PLAIN: Final = re.compile(
    rf"(?:0|[1-9][0-9]{{0,{MAX_INTEGER_DIGITS - 1}}})"
    rf"(?:\.[0-9]{{1,{MAX_SCALE}}}0{{0,{MAX_TRAILING_ZEROS}}})?"
)
"""A plain decimal within the bounds: ``[0-9]`` only (``\\d`` would admit Arabic-Indic
digits), no sign, no spaces, no ``_``, no leading zeros, digits on both sides of a point,
and past the 12th decimal only zeros (a non-zero digit there cannot match the tail)."""
_EXPONENT: Final = re.compile(
    rf"(?:0|[1-9][0-9]{{0,{MAX_SIGNIFICANT_DIGITS - 1}}})(?:\.[0-9]{{1,{MAX_SIGNIFICANT_DIGITS}}})?"
    rf"[eE][+-]?[0-9]{{1,{MAX_EXPONENT_DIGITS}}}"
)
_WIDE: Final = decimal.Context(prec=2 * MAX_SIGNIFICANT_DIGITS + 8, traps=[decimal.Inexact])
"""Exact for every mantissa ``_EXPONENT`` admits (normalising it never rounds)."""
_ONE: Final = Decimal(1)


CACHE_ENTRIES: Final = 4096
"""Texts remembered by ``parse_price`` / ``parse_symbol``: prices and symbols repeat, and
a hit costs a dict lookup instead of a regular expression and a ``Decimal``. Bound:
cleared when full. Quantities do not repeat enough to pay for it (``parse_decimal``).
The verdicts never depend on it."""
_prices: dict[str, Decimal] = {}
_plain = _PLAIN.fullmatch


def parse_decimal(text: str) -> Decimal | None:
    """The exact ``Decimal`` of ``text`` if it is an admissible price or quantity, else ``None``.

    Never raises, whatever ``text`` holds.
    """
    if _plain(text) is not None:
        value = Decimal(text)
        # The pattern bounds magnitude (< 1e15) and scale (>= 1e-12); only zero remains.
        return value if value else None
    return _parse_exponent_form(text)


def parse_price(text: str) -> Decimal | None:
    """``parse_decimal`` for text that repeats (prices): the same verdict, cached."""
    value = _prices.get(text)
    if value is None:
        value = parse_decimal(text)
        if value is not None:
            if len(_prices) >= CACHE_ENTRIES:
                _prices.clear()
            _prices[text] = value
    return value


def _parse_exponent_form(text: str) -> Decimal | None:
    if len(text) > MAX_NUMBER_CHARS or _EXPONENT.fullmatch(text) is None:
        return None
    value = _WIDE.create_decimal(text)
    if not MIN_VALUE <= value < MAX_VALUE:
        return None
    normal = value.normalize(_WIDE)
    exponent = normal.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: the pattern admits digits only
    if exponent < -MAX_SCALE:
        return None
    # 1.5E+3 -> 1500: persisted and shown like the plain form.
    return normal.quantize(_ONE, context=_WIDE) if exponent > 0 else value


# -- symbols --------------------------------------------------------------------------

MAX_SYMBOL_CHARS: Final = 32
SYMBOL_PATTERN: Final = rf"[A-Z0-9](?:[A-Z0-9-]{{0,{MAX_SYMBOL_CHARS - 2}}}[A-Z0-9])?"
"""A symbol: 1-32 ASCII upper-case letters, digits and inner ``-`` (``BTCUSDT``,
``BTC-USD``). No space, quote, BOM, bidi control or line break can be part of one."""
_SYMBOL: Final = re.compile(SYMBOL_PATTERN)


_symbols: dict[str, str] = {}


def parse_symbol(text: str) -> str | None:
    """``text`` upper-cased if it is a well-formed symbol, else ``None`` (never raises).

    Upper-casing happens only for ASCII text: ``str.upper`` maps some non-ASCII
    letters to ASCII ones (``"ﬀ".upper() == "FF"``).
    """
    symbol = _symbols.get(text)
    if symbol is not None:
        return symbol
    if not text.isascii():
        return None
    symbol = text.upper()
    if _SYMBOL.fullmatch(symbol) is None:
        return None
    if len(_symbols) >= CACHE_ENTRIES:
        _symbols.clear()
    _symbols[text] = symbol
    return symbol


# -- plausibility ---------------------------------------------------------------------


class Refusal(enum.StrEnum):
    """Why admission refused a value; each has a ``refused_<reason>`` counter."""

    NUMBER = "number"
    """A price or quantity outside the syntax / precision / range bounds (malformed)."""
    SYMBOL = "symbol"
    """A symbol outside ``SYMBOL_PATTERN`` (malformed)."""
    UNSUBSCRIBED = "unsubscribed"
    """A live feed delivered a symbol we did not subscribe to."""
    EVENT_TIME = "event_time"
    """The event time is further than ``event_time_window_s`` from the receive time."""
    ID_JUMP = "id_jump"
    """The trade id lies beyond the dedup window of the symbol's stream."""
    PRICE_BAND = "price_band"
    """The price is outside ``price_band_pct`` of the symbol's reference price."""


def count_refusal(counters: Counters, refusal: Refusal) -> int:
    """Add one to ``refused_<refusal>``; return the new count."""
    name = f"refused_{refusal.value}"
    count: int = getattr(counters, name) + 1
    setattr(counters, name, count)
    return count


DEFAULT_EVENT_TIME_WINDOW_S: Final = 300.0
DEFAULT_PRICE_BAND_PCT: Final = Decimal("10")
BAND_CONFIRM_TICKS: Final = 5
"""Consecutive refused ticks of a symbol, each within the band of the one before,
after which the band re-anchors on them (the last is admitted): a real move beyond
the band between two trades costs four ticks, and a bad reference (a first tick
that was an outlier) cannot blind the symbol for good."""
REFUSAL_LOG_FIRST: Final = 10
REFUSAL_LOG_EVERY: Final = 1000
"""Log sampling, per reason (and for re-anchors): the first 10, then every 1,000th
(all counted)."""

_HUNDRED: Final = Decimal(100)
_BAND_CONTEXT: Final = decimal.Context(prec=60)
"""Band limits are comparisons, not money: a 60-digit context holds every
admitted price times a band factor exactly enough."""


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    """The plausibility bounds of one source (from ``[ingest]``)."""

    event_time_window_s: float = DEFAULT_EVENT_TIME_WINDOW_S
    price_band_pct: Decimal = DEFAULT_PRICE_BAND_PCT
    subscribed: frozenset[str] | None = None
    """Symbols a live feed subscribed to (upper case); ``None`` admits any well-formed one."""

    @classmethod
    def from_section(cls, section: IngestSection, *, live: bool = False) -> AdmissionSettings:
        """The bounds ``[ingest]`` sets; ``live`` admits only ``section.symbols``."""
        return cls(
            event_time_window_s=section.event_time_window_s,
            price_band_pct=section.price_band_pct,
            subscribed=frozenset(s.upper() for s in section.symbols) if live else None,
        )


class _Band:
    """A symbol's reference price, its band, and refused ticks that may re-anchor it.

    *Why an inner band:* re-centring on every accepted price costs two ``Decimal``
    multiplications per tick. The reference moves to an accepted price only when
    that price lies more than a quarter of the band from it (``inner_lo`` /
    ``inner_hi``), so it never lags the market by more than a quarter band and the
    band around the latest price is always at least three quarters of
    ``price_band_pct`` wide on each side.
    """

    __slots__ = ("chain", "chain_hi", "chain_lo", "hi", "inner_hi", "inner_lo", "lo", "ref")

    def __init__(self, price: Decimal, factors: tuple[Decimal, Decimal, Decimal, Decimal]) -> None:
        self.chain_lo = self.chain_hi = price
        self.move(price, factors)

    def move(self, price: Decimal, factors: tuple[Decimal, Decimal, Decimal, Decimal]) -> None:
        """Make ``price`` the reference (an admitted tick); forget refused ones."""
        down, up, inner_down, inner_up = factors
        mul = _BAND_CONTEXT.multiply
        self.ref = price
        self.lo = mul(price, down)
        self.hi = mul(price, up)
        self.inner_lo = mul(price, inner_down)
        self.inner_hi = mul(price, inner_up)
        self.chain = 0


def _sampled(n: int) -> bool:
    """Whether the ``n``-th event of a kind is logged (``REFUSAL_LOG_FIRST`` / ``_EVERY``)."""
    return n <= REFUSAL_LOG_FIRST or n % REFUSAL_LOG_EVERY == 0


class Admission:
    """The plausibility checks of one stream of ticks (see the module docstring).

    One per source instance (a replay makes one per file, like its dedup), so
    the same input gives the same verdicts whichever source carried it.
    ``log_gaps`` logs every trade-id gap (the live feed); replay only counts them.
    """

    def __init__(
        self,
        counters: Counters,
        settings: AdmissionSettings | None = None,
        *,
        dedup: TradeDedup | None = None,
        log_gaps: bool = False,
    ) -> None:
        settings = AdmissionSettings() if settings is None else settings
        self._counters = counters
        self._subscribed = settings.subscribed
        self._window_ns = round(settings.event_time_window_s * NS_PER_S)
        fraction = settings.price_band_pct / _HUNDRED
        quarter = fraction / 4
        self._factors = (_ONE - fraction, _ONE + fraction, _ONE - quarter, _ONE + quarter)
        self._bands: dict[str, _Band] = {}
        self.dedup = TradeDedup() if dedup is None else dedup
        self._dedup_admit = self.dedup.admit
        self._log_gaps = log_gaps
        self.settings = settings
        self.admit: Callable[[Tick], bool] = self._admitter()
        """Whether a tick may go downstream; a refusal is counted and sampled. Never
        raises. The caller feeds one venue per ``Admission`` (bands are kept per symbol)."""

    def _admitter(self) -> Callable[[Tick], bool]:
        """``admit``: a closure over the checks' state (locals are the cheapest lookups
        on the replay's hot path, which calls it once per tick)."""
        subscribed = self._subscribed
        window = self._window_ns
        dedup_admit = self.dedup.admit
        bands = self._bands
        factors = self._factors
        refuse = self._refuse
        counters = self._counters
        noted = self._noted
        out_of_band = self._out_of_band

        def admit(tick: Tick) -> bool:
            if subscribed is not None and tick.symbol not in subscribed:
                return refuse(Refusal.UNSUBSCRIBED, tick, "not among the subscribed symbols")
            lag = tick.ts_recv - tick.ts_event
            if lag > window or lag < -window:
                return refuse(
                    Refusal.EVENT_TIME,
                    tick,
                    f"event time {-lag / NS_PER_S:+.3f} s from receive time "
                    f"(window {window / NS_PER_S} s)",
                )
            new, note = dedup_admit(tick.venue, tick.symbol, tick.trade_id)
            if not new:
                if note is None:
                    counters.duplicates += 1
                    return False
                high = note.high if type(note) is Jump else -1
                detail = f"trade id beyond the dedup window of the stream at {high}"
                return refuse(Refusal.ID_JUMP, tick, detail)
            if note is not None:
                noted(note)
            price = tick.price
            band = bands.get(tick.symbol)
            if band is None:
                bands[tick.symbol] = _Band(price, factors)
                return True
            if band.inner_lo <= price <= band.inner_hi:
                if band.chain:
                    band.chain = 0
                return True
            if band.lo <= price <= band.hi:
                band.move(price, factors)
                return True
            return out_of_band(band, tick)

        return admit

    def _out_of_band(self, band: _Band, tick: Tick) -> bool:
        price = tick.price
        if band.chain and band.chain_lo <= price <= band.chain_hi:
            band.chain += 1
        else:
            band.chain = 1
        if band.chain >= BAND_CONFIRM_TICKS:
            self._counters.band_reanchors += 1
            if _sampled(self._counters.band_reanchors):
                logs.warning(
                    "price_band_reanchored",
                    venue=tick.venue,
                    symbol=tick.symbol,
                    old_reference=str(band.ref),
                    new_reference=str(price),
                    confirming_ticks=band.chain,
                    band_reanchors=self._counters.band_reanchors,
                )
            band.move(price, self._factors)
            return True
        down, up, _, _ = self._factors
        band.chain_lo = _BAND_CONTEXT.multiply(price, down)
        band.chain_hi = _BAND_CONTEXT.multiply(price, up)
        return self._refuse(
            Refusal.PRICE_BAND,
            tick,
            f"price {price} outside {self.settings.price_band_pct}% of {band.ref}",
        )

    def _noted(self, note: Gap | Jump) -> None:
        if type(note) is Jump:
            self._counters.id_reanchors += 1
            if _sampled(self._counters.id_reanchors):
                logs.warning(
                    "trade_ids_reanchored",
                    venue=note.venue,
                    symbol=note.symbol,
                    old_high=note.high,
                    new_high=note.trade_id,
                    id_reanchors=self._counters.id_reanchors,
                )
            return
        assert type(note) is Gap
        counters = self._counters
        counters.gaps += 1
        if self._log_gaps:
            logs.warning(
                "trade_gap",
                venue=note.venue,
                symbol=note.symbol,
                first_missing=note.first,
                last_missing=note.last,
                missing=note.missing,
                gaps_for_symbol=self.dedup.gaps_by_symbol()[f"{note.venue}:{note.symbol}"],
            )

    def _refuse(self, refusal: Refusal, tick: Tick, detail: str) -> bool:
        n = count_refusal(self._counters, refusal)
        if _sampled(n):
            logs.warning(
                "tick_refused",
                reason=refusal.value,
                detail=detail,
                venue=tick.venue,
                symbol=logs.sample(tick.symbol),
                trade_id=tick.trade_id,
                price=str(tick.price),
                ts_event=tick.ts_event,
                ts_recv=tick.ts_recv,
                refused_for_reason=n,
            )
        return False
