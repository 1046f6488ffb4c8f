"""Binance spot market data: the raw WebSocket trade message -> ``Tick``.

Accepts both forms Binance sends:

* the combined-stream envelope ``{"stream":"btcusdt@trade","data":{"e":"trade",...}}``
* the bare event ``{"e":"trade","E":..,"s":..,"t":..,"p":..,"q":..,"T":..,"m":..,"M":..}``

and recognises every other message (``bookTicker``, ``depthUpdate``, a REST depth
snapshot, a subscription ack) as *not a trade* (``None``).

*Why one Struct with optional fields:* this is the hot path of a replay (a million
lines per benchmark run). One typed ``msgspec.json.Decoder`` built once decodes the
envelope and the bare form in a single pass, keeping ``p``/``q`` as the strings the
venue sent and skipping every key it does not declare (a depth update's arrays are
skipped, never materialised). The strings become exact ``Decimal``s only through
``engine.adapters.market.admission.parse_decimal``, which refuses what ``Decimal()`` would
accept but downstream must not see (``" 5 "``, ``"+5"``, ``"1_000"``, Arabic-Indic
digits, NaN, 76 significant digits). A tagged union cannot do this job:
``bookTicker`` events carry no ``"e"`` tag. Presence and bounds of a trade's fields
are therefore checked after the decode with a few comparisons against sentinel
defaults; the slow, precise error message is built only when that check fails.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from engine import logs
from engine.adapters.market.admission import Refusal, parse_decimal, parse_price, parse_symbol
from engine.adapters.market.decoding import MalformedMessage
from engine.core.events import NS_PER_MS, Tick

VENUE: Final = "binance"
TRADE_EVENT: Final = "trade"
_MISSING: Final = -1
"""Sentinel default of the integer fields (real values are never negative)."""
MAX_ID: Final = 2**63 - 1
MAX_TIME_MS: Final = MAX_ID // NS_PER_MS
"""Ids and times must fit SQLite's signed 64-bit INTEGER (times once in ns)."""

_Id = Annotated[int, msgspec.Meta(le=MAX_ID)]
_TimeMs = Annotated[int, msgspec.Meta(le=MAX_TIME_MS)]


class _Event(msgspec.Struct, gc=False):
    """A Binance event's fields that a trade needs (absent in other kinds)."""

    e: str = ""
    E: _TimeMs = _MISSING
    s: str = ""
    t: _Id = _MISSING
    p: str | None = None
    q: str | None = None
    T: _TimeMs = _MISSING
    m: bool | None = None
    M: bool | None = None


class _Message(_Event, gc=False):
    """A bare event (fields inherited) or a combined-stream envelope (``data``)."""

    data: _Event | None = None


_decoder: Final = msgspec.json.Decoder(_Message)


def decode(raw: bytes, ts_recv: int, /) -> Tick | None:
    """Decode one raw Binance message received at ``ts_recv`` (ns since the epoch).

    Returns the ``Tick`` of a trade, ``None`` for a well-formed message of another kind.

    *Error handling:* raises ``MalformedMessage`` for bad JSON (incl. invalid UTF-8
    and nesting too deep), a wrong shape (a field of the wrong type, a non-object),
    an id or time beyond 64 bits, a price or quantity that is not an admissible
    decimal (``admission.parse_decimal``: a string of ASCII digits within
    ``[admission.MIN_VALUE, admission.MAX_VALUE)`` and 12 decimals), a symbol outside
    ``admission.SYMBOL_PATTERN``, or a trade missing a required field.
    """
    try:
        msg = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        # UnicodeDecodeError: bad UTF-8 inside a string; RecursionError: nesting too deep.
        raise MalformedMessage(str(exc)) from None
    ev = msg.data
    if ev is None:
        ev = msg
    if ev.e != TRADE_EVENT:
        return None
    p = ev.p
    q = ev.q
    s = ev.s
    t = ev.t
    T = ev.T
    if p is None or q is None or t < 0 or T < 0 or ev.E < 0 or ev.m is None or not s:
        raise MalformedMessage(_missing_reason(ev))
    price = parse_price(p)
    qty = parse_decimal(q)
    if price is None or qty is None:
        raise MalformedMessage(
            f"price/qty not an admissible decimal: p={logs.sample(p, 60)!r} "
            f"q={logs.sample(q, 60)!r}",
            Refusal.NUMBER,
        )
    symbol = parse_symbol(s)
    if symbol is None:
        raise MalformedMessage(f"not a symbol: {logs.sample(s, 60)!r}", Refusal.SYMBOL)
    return Tick(
        # == events.tick_id(VENUE, symbol, t), inlined on the hot path (a test pins it).
        event_id=f"binance:{symbol}:{t}",
        venue=VENUE,
        symbol=symbol,
        trade_id=t,
        ts_event=T * NS_PER_MS,
        ts_recv=ts_recv,
        price=price,
        qty=qty,
    )


def _missing_reason(ev: _Event) -> str:
    """Name every required trade field that is absent (or negative) in ``ev``."""
    missing = [
        name
        for name, bad in (
            ("E", ev.E < 0),
            ("s", not ev.s),
            ("t", ev.t < 0),
            ("p", ev.p is None),
            ("q", ev.q is None),
            ("T", ev.T < 0),
            ("m", ev.m is None),
        )
        if bad
    ]
    return f"trade missing or negative field(s): {', '.join(missing)}"


