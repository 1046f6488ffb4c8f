"""History files: the trade dumps traders already have, as ``Tick`` rows.

Three CSV layouts are read (recognised from the file's first lines by
``capture.sniff_capture``, plain, gzip or a one-member zip):

* ``binance-trades`` -- Binance public data, spot trades
  (``id,price,qty,quote_qty,time,is_buyer_maker,is_best_match``, no header);
* ``binance-aggtrades`` -- Binance public data, aggregate trades
  (``agg_trade_id,price,qty,first_trade_id,last_trade_id,transact_time,
  is_buyer_maker,is_best_match``);
* ``tardis-trades`` -- Tardis.dev CSV trades
  (``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``, header, µs).

*Binance times* are ms, or µs in the files Binance publishes from 2025 on; each
row's unit is told from its magnitude (a time >= 1e14 is µs: as ms that would be
the year 5138, as µs it is after 1973). The symbol and the day come from the file
name (``BTCUSDT-trades-2024-08-08.zip``, ``BTCUSDT-aggTrades-2024-08.csv``); a
Binance file whose name does not say its symbol is refused (exit 12).

*The file's own clock* (what admission judges event time against): a dump has
no receive time. A Binance file's clock is the day (or month) its name states:
``ts_recv`` is the event time clamped into that period, so a row inside it has
lag 0 and a row outside lies as far from the receive time as from the period --
beyond ``[ingest] event_time_window_s`` it is refused (``refused_event_time``).
A Tardis row's receive time is its ``local_timestamp``. A Binance file without a
date in its name has no clock beyond its rows (``ts_recv = ts_event``).

*Ids:* a Binance row becomes ``binance:<SYMBOL>:<id>`` (for aggTrades the
aggregate id: do not mix a symbol's trades and aggTrades in one replay); a Tardis
row ``<exchange>:<SYMBOL>:<id>``.

Numbers and symbols take the admission syntax path
(``admission.parse_price`` / ``parse_decimal`` / ``parse_symbol``); a row that
fails it, has the wrong number of fields, or an id or time that is not a bounded
integer is *malformed* (counted, sampled; the parse budget applies).
"""

from __future__ import annotations

import calendar
import enum
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final, NamedTuple

from engine.adapters.market.admission import Refusal, parse_decimal, parse_price, parse_symbol
from engine.core.events import NS_PER_MS, NS_PER_S, NS_PER_US, Tick
from engine.exits import ConfigError

MAX_ID: Final = 2**63 - 1
MAX_ID_DIGITS: Final = len(str(MAX_ID))
MAX_FIELD_BYTES: Final = 256
"""A history line longer than this is malformed before it is split."""
US_THRESHOLD: Final = 10**14
"""A Binance time at or above this is µs, below it ms (see the module docstring)."""
MAX_TIME_NS: Final = 2**63 - 1

BINANCE_VENUE: Final = "binance"
TARDIS_HEADER: Final = b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
BINANCE_TRADES_HEADER: Final = b"id,price,qty,quote_qty,time,is_buyer_maker,is_best_match"
BINANCE_AGG_HEADER: Final = (
    b"agg_trade_id,price,qty,first_trade_id,last_trade_id,transact_time,"
    b"is_buyer_maker,is_best_match"
)
_VENUE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
"""A Tardis exchange name (``binance-futures``): lower-case ASCII, digits, inner ``-``."""


class HistoryFormat(enum.Enum):
    BINANCE_TRADES = "binance-trades"
    BINANCE_AGGTRADES = "binance-aggtrades"
    TARDIS_TRADES = "tardis-trades"


_NUM: Final = rb"[0-9]{1,20}(?:\.[0-9]{1,20})?"
_BOOL: Final = rb"(?:True|False|true|false)"
_TIME: Final = rb"[0-9]{10,17}"
_LINE_SHAPES: Final = {
    HistoryFormat.BINANCE_TRADES: re.compile(
        rb"[0-9]{1,19}," + _NUM + b"," + _NUM + b"," + _NUM + b"," + _TIME + b","
        + _BOOL + b"," + _BOOL + rb"\r?"
    ),
    HistoryFormat.BINANCE_AGGTRADES: re.compile(
        rb"[0-9]{1,19}," + _NUM + b"," + _NUM + rb",[0-9]{1,19},[0-9]{1,19}," + _TIME + b","
        + _BOOL + b"," + _BOOL + rb"\r?"
    ),
    HistoryFormat.TARDIS_TRADES: re.compile(
        rb"[a-z0-9-]{1,32},[A-Za-z0-9_.-]{1,40}," + _TIME + b"," + _TIME
        + rb",[^,]{1,40},(?:buy|sell|unknown)?," + _NUM + b"," + _NUM + rb"\r?"
    ),
}
HEADERS: Final = {
    HistoryFormat.BINANCE_TRADES: BINANCE_TRADES_HEADER,
    HistoryFormat.BINANCE_AGGTRADES: BINANCE_AGG_HEADER,
    HistoryFormat.TARDIS_TRADES: TARDIS_HEADER,
}
SHAPES: Final = {
    HistoryFormat.BINANCE_TRADES: "Binance dump: " + BINANCE_TRADES_HEADER.decode(),
    HistoryFormat.BINANCE_AGGTRADES: "Binance dump: " + BINANCE_AGG_HEADER.decode(),
    HistoryFormat.TARDIS_TRADES: "Tardis CSV: " + TARDIS_HEADER.decode(),
}


def recogniser(fmt: HistoryFormat) -> Callable[[bytes], bool]:
    """Whether one line (a header or a data row) has the shape of ``fmt``."""
    shape = _LINE_SHAPES[fmt]
    header = HEADERS[fmt]

    def recognises(line: bytes) -> bool:
        return line.rstrip(b"\r") == header or shape.fullmatch(line) is not None

    return recognises


def is_history_format(name: str) -> bool:
    """Whether ``name`` (a ``capture.sniff_capture`` answer) is one of this module's."""
    return name in _BY_NAME


_BY_NAME: Final = {fmt.value: fmt for fmt in HistoryFormat}

_BINANCE_NAME: Final = re.compile(
    r"(?P<symbol>[A-Za-z0-9]{1,32})-(?:trades|aggTrades)-"
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2}))?(?:[._].*)?"
)


class FileClock(NamedTuple):
    """The period a file's name states, as ``[start_ns, end_ns)``; (0, MAX) if none."""

    start_ns: int
    end_ns: int


NO_CLOCK: Final = FileClock(0, MAX_TIME_NS)


def binance_name(path: Path) -> tuple[str, FileClock]:
    """The symbol and period of a Binance dump, from its file name.

    *Error handling:* ``ConfigError`` (exit 12) naming the file when the name does
    not start ``SYMBOL-trades-`` or ``SYMBOL-aggTrades-`` with a date.
    """
    match = _BINANCE_NAME.fullmatch(path.name)
    symbol = parse_symbol(match["symbol"]) if match else None
    if match is None or symbol is None:
        raise ConfigError(
            f"capture {path}: a Binance dump's symbol comes from its name: expected "
            "SYMBOL-trades-YYYY-MM-DD or SYMBOL-aggTrades-YYYY-MM-DD (.csv/.zip/.gz)"
        )
    year, month = int(match["year"]), int(match["month"])
    day = match["day"]
    if not 1 <= month <= 12 or year < 1970:
        return symbol, NO_CLOCK
    if day is None:
        start = calendar.timegm((year, month, 1, 0, 0, 0))
        days = calendar.monthrange(year, month)[1]
    else:
        if not 1 <= int(day) <= calendar.monthrange(year, month)[1]:
            return symbol, NO_CLOCK
        start = calendar.timegm((year, month, int(day), 0, 0, 0))
        days = 1
    return symbol, FileClock(start * NS_PER_S, (start + days * 86_400) * NS_PER_S)


class BadRow(NamedTuple):
    """A row that is not an admissible trade: its index ``at`` in the block, why, the refusal."""

    at: int
    reason: str
    refusal: str


RowDecoder = Callable[[list[bytes]], tuple[list[Tick], list[BadRow], int]]
"""Lines of one block -> (ticks, malformed rows, data rows seen)."""


def _fields(line: bytes, n: int) -> list[str] | str:
    """The ``n`` comma-separated fields of ``line``, or why it has not got them."""
    if len(line) > MAX_FIELD_BYTES:
        return "row too long"
    try:
        fields = line.decode("ascii").rstrip("\r").split(",")
    except UnicodeDecodeError:
        return "not ASCII"
    return fields if len(fields) == n else f"{len(fields)} fields, expected {n}"


def _int(text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > MAX_ID_DIGITS:
        raise ValueError
    value = int(text)
    if value > MAX_ID:
        raise ValueError
    return value


def _binance_ns(text: str) -> int:
    t = _int(text)
    ns = t * NS_PER_US if t >= US_THRESHOLD else t * NS_PER_MS
    if ns > MAX_TIME_NS:
        raise ValueError
    return ns


def row_decoder(fmt: HistoryFormat, path: Path) -> RowDecoder:
    """The decoder of the rows of ``path`` (in ``fmt``); see the module docstring.

    *Error handling:* ``ConfigError`` from ``binance_name`` for a Binance dump
    whose name does not say its symbol.
    """
    if fmt is HistoryFormat.TARDIS_TRADES:
        return _tardis_rows
    symbol, clock = binance_name(path)
    time_field = 4 if fmt is HistoryFormat.BINANCE_TRADES else 5
    n_fields = 7 if fmt is HistoryFormat.BINANCE_TRADES else 8
    header = HEADERS[fmt]
    prefix = f"{BINANCE_VENUE}:{symbol}:"
    start, end = clock.start_ns, clock.end_ns - 1

    def decode(lines: list[bytes]) -> tuple[list[Tick], list[BadRow], int]:
        ticks: list[Tick] = []
        bad: list[BadRow] = []
        add = ticks.append
        rows = 0
        for i, line in enumerate(lines):
            if not line or line.isspace() or line.rstrip(b"\r") == header:
                continue
            rows += 1
            fields = _fields(line, n_fields)
            if isinstance(fields, str):
                bad.append(BadRow(i, fields, ""))
                continue
            try:
                trade_id = _int(fields[0])
                ts = _binance_ns(fields[time_field])
            except ValueError:
                bad.append(BadRow(i, "id or time not a bounded integer", ""))
                continue
            price = parse_price(fields[1])
            qty = parse_decimal(fields[2])
            if price is None or qty is None:
                bad.append(BadRow(i, "price/qty not an admissible decimal", Refusal.NUMBER))
                continue
            add(
                Tick(
                    event_id=prefix + str(trade_id),
                    venue=BINANCE_VENUE,
                    symbol=symbol,
                    trade_id=trade_id,
                    ts_event=ts,
                    ts_recv=start if ts < start else end if ts > end else ts,
                    price=price,
                    qty=qty,
                )
            )
        return ticks, bad, rows

    return decode


def _tardis_rows(lines: list[bytes]) -> tuple[list[Tick], list[BadRow], int]:
    ticks: list[Tick] = []
    bad: list[BadRow] = []
    rows = 0
    for i, line in enumerate(lines):
        if not line or line.isspace() or line.rstrip(b"\r") == TARDIS_HEADER:
            continue
        rows += 1
        fields = _fields(line, 8)
        if isinstance(fields, str):
            bad.append(BadRow(i, fields, ""))
            continue
        exchange, raw_symbol, t_event, t_local, raw_id, _side, p, q = fields
        if _VENUE.fullmatch(exchange) is None:
            bad.append(BadRow(i, "not an exchange name", Refusal.SYMBOL))
            continue
        symbol = parse_symbol(raw_symbol)
        if symbol is None:
            bad.append(BadRow(i, "not a symbol", Refusal.SYMBOL))
            continue
        try:
            trade_id = _int(raw_id)
            ts_event = _int(t_event) * NS_PER_US
            ts_recv = _int(t_local) * NS_PER_US
            if ts_event > MAX_TIME_NS or ts_recv > MAX_TIME_NS:
                raise ValueError
        except ValueError:
            bad.append(BadRow(i, "id or time not a bounded integer", ""))
            continue
        price = parse_price(p)
        qty = parse_decimal(q)
        if price is None or qty is None:
            bad.append(BadRow(i, "price/qty not an admissible decimal", Refusal.NUMBER))
            continue
        ticks.append(
            Tick(
                event_id=f"{exchange}:{symbol}:{trade_id}",
                venue=exchange,
                symbol=symbol,
                trade_id=trade_id,
                ts_event=ts_event,
                ts_recv=ts_recv,
                price=price,
                qty=qty,
            )
        )
    return ticks, bad, rows


def history_format(name: str) -> HistoryFormat:
    """The ``HistoryFormat`` called ``name`` (``KeyError`` if none)."""
    return _BY_NAME[name]
