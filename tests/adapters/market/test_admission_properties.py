"""Hypothesis over the admission path: any bytes, JSON or number text is either admitted
within the bounds or refused with a reason -- never an exception.

``nox -s fuzz`` runs these (and ``tests/adapters/market/test_admission_downstream.py``)
far longer; see ``tests/fakes/admission_fuzz.py``.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import logs
from engine.adapters.market.admission import (
    MAX_SCALE,
    MAX_VALUE,
    MIN_VALUE,
    SYMBOL_PATTERN,
    Admission,
    AdmissionSettings,
    parse_decimal,
    parse_symbol,
)
from engine.adapters.market.dedup import TradeDedup
from engine.adapters.market.ws.intake import FrameIntake
from engine.config.schema import IngestSection, Source, Venue
from engine.core.events import Tick
from engine.counters import Counters
from tests.fakes import admission_fuzz
from tests.fakes.admission_fuzz import FUZZ_MINUTES, FUZZING, inputs, profile

NOW_MS = 1_796_000_000_000
NOW_NS = NOW_MS * 1_000_000
WINDOW_NS = 300 * 10**9
SYMBOL_RE = re.compile(SYMBOL_PATTERN)
PLAUSIBILITY = ("unsubscribed", "event_time", "id_jump", "price_band")
SUBSCRIBED = {Venue.BINANCE: ("BTCUSDT", "ETHUSDT"), Venue.COINBASE: ("BTC-USD", "SKL-BTC")}

# Number-like text: the shapes that once slipped through ``Decimal()`` and their neighbours.
_DIGITS = st.sampled_from("0123456789")
_ODD = st.sampled_from(
    [" ", "+", "-", "_", ".", "e", "E", "\u0665", "\uff15", "\u00b2", "\n", "\ufeff", ",", "\x00"]
)
_WORDS = st.sampled_from(["NaN", "Infinity", "-Infinity", "inf", "sNaN", "0x1", "1e", "E5"])
number_text = st.one_of(
    st.text(st.one_of(_DIGITS, _ODD), max_size=40),
    st.lists(st.one_of(st.text(_DIGITS, min_size=1, max_size=16), _ODD, _WORDS),
             max_size=6).map("".join),
    st.builds(lambda i, f: f"{i}.{f}", st.integers(0, 10**20), st.text(_DIGITS, max_size=30)),
    st.builds(lambda m, e: f"{m}E{e:+d}", st.decimals(allow_nan=False, allow_infinity=False,
                                                     places=6).map(str), st.integers(-40, 40)),
    st.decimals().map(str),
    st.text(max_size=60),
)  # fmt: skip

symbol_text = st.one_of(
    st.sampled_from(["BTCUSDT", "ETHUSDT", "BTC-USD", "SKL-BTC", "btcusdt", "ZZZ' OR 1=1--"]),
    st.text(max_size=40),
    st.text(st.sampled_from("ABCU-SDT \n\ufeff\u202e'\u0130\ufb00"), max_size=34),
)


def check_admitted_tick(tick: Tick, venue: Venue) -> None:
    """What every admitted tick satisfies, whatever came in."""
    for value in (tick.price, tick.qty):
        assert isinstance(value, Decimal) and value.is_finite()
        assert MIN_VALUE <= value < MAX_VALUE
        exponent = value.normalize().as_tuple().exponent
        assert isinstance(exponent, int) and exponent >= -MAX_SCALE
    assert SYMBOL_RE.fullmatch(tick.symbol) and tick.symbol in SUBSCRIBED[venue]
    assert 0 <= tick.trade_id <= 2**63 - 1
    assert 0 <= tick.ts_event <= 2**63 - 1
    assert abs(tick.ts_recv - tick.ts_event) <= WINDOW_NS
    assert tick.event_id == f"{venue.value}:{tick.symbol}:{tick.trade_id}"


@profile(500)
@given(number_text)
def test_parse_decimal_admits_within_bounds_or_refuses_never_raises(text: str) -> None:
    inputs["parse_decimal"] += 1
    value = parse_decimal(text)
    if value is None:
        return
    assert value.is_finite() and MIN_VALUE <= value < MAX_VALUE
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int) and exponent >= -MAX_SCALE
    assert value == Decimal(text)  # exactly the value the text says
    assert text.isascii() and text.strip() == text and "_" not in text


@profile(300)
@given(
    st.integers(0, 10**15 - 1),
    st.integers(0, MAX_SCALE),
    st.integers(0, 10**MAX_SCALE - 1),
    st.integers(0, 12),
)
def test_parse_decimal_admits_every_plain_value_within_bounds(
    whole: int, scale: int, fraction: int, pad: int
) -> None:
    inputs["parse_decimal_model"] += 1
    frac = f"{fraction % 10**scale:0{scale}d}" if scale else ""
    text = f"{whole}.{frac}{'0' * pad}" if scale else str(whole)
    value = Decimal(text)
    assert (parse_decimal(text) == value) if value else parse_decimal(text) is None


@profile(500)
@given(symbol_text)
def test_parse_symbol_well_formed_or_refused_never_raises(text: str) -> None:
    inputs["parse_symbol"] += 1
    symbol = parse_symbol(text)
    if symbol is not None:
        assert SYMBOL_RE.fullmatch(symbol) and symbol == text.upper() and text.isascii()


def intake(venue: Venue) -> tuple[FrameIntake, Counters]:
    counters = Counters()
    section = IngestSection(source=Source.WEBSOCKET, venue=venue, symbols=SUBSCRIBED[venue],
                            max_parse_errors_per_min=10**9)  # fmt: skip
    return FrameIntake(section, counters, TradeDedup()), counters


def accept_all(venue: Venue, frames: list[bytes], recv_ns: int) -> list[Tick]:
    take, counters = intake(venue)
    admitted = []
    for i, raw in enumerate(frames):
        try:
            tick = take.accept(raw, recv_ns + i, float(i))
        except Exception as exc:  # a Coinbase "error" frame may end the session: by design
            assert venue is Venue.COINBASE and type(exc).__name__ in (
                "ConfigError", "VenueErrorFrame"
            ), repr(exc)
            continue
        if tick is not None:
            check_admitted_tick(tick, venue)
            admitted.append(tick)
    plausibility = sum(getattr(counters, f"refused_{r}") for r in PLAUSIBILITY)
    # every frame has exactly one fate (number/symbol refusals are parse errors too)
    assert len(admitted) + counters.skipped_messages + counters.duplicates + (
        counters.parse_errors + plausibility
    ) == len(frames)
    assert counters.refused_number + counters.refused_symbol <= counters.parse_errors
    ids = [(t.symbol, t.trade_id) for t in admitted]
    assert len(ids) == len(set(ids))  # never admitted twice
    return admitted


@profile(300)
@given(st.sampled_from(list(Venue)), st.lists(st.binary(max_size=300), max_size=20))
def test_arbitrary_bytes_admitted_within_bounds_or_refused(
    venue: Venue, frames: list[bytes]
) -> None:
    inputs["frames_bytes"] += len(frames)
    accept_all(venue, frames, NOW_NS)


_JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), number_text, symbol_text
)
_time_ms = st.one_of(
    st.integers(NOW_MS - 400_000, NOW_MS + 400_000), st.integers(-(2**64), 2**64),
    st.sampled_from([0, 4_102_444_800_000, 2**63 // 1_000_000]),
)  # fmt: skip
_trade_id = st.one_of(st.integers(1, 60), st.integers(-5, 2**64), st.just(2**63 - 1))


@st.composite
def binance_frames(draw: st.DrawFn) -> bytes:
    data: dict[str, Any] = {
        "e": draw(st.sampled_from(["trade", "trade", "trade", "aggTrade", 7])),
        "E": draw(_time_ms), "s": draw(symbol_text), "t": draw(_trade_id),
        "p": draw(st.one_of(number_text, _JSON_SCALAR)), "q": draw(number_text),
        "T": draw(_time_ms), "m": draw(st.booleans()), "M": True,
    }  # fmt: skip
    for key in draw(st.lists(st.sampled_from(sorted(data)), max_size=2)):
        if draw(st.booleans()):
            data.pop(key, None)
        else:
            data[key] = draw(_JSON_SCALAR)
    wrapped = draw(st.booleans())
    return json.dumps({"stream": "x@trade", "data": data} if wrapped else data).encode()


@st.composite
def coinbase_frames(draw: st.DrawFn) -> bytes:
    seconds = draw(st.integers(NOW_MS // 1000 - 400, NOW_MS // 1000 + 400))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".123456Z"
    message: dict[str, Any] = {
        "type": draw(st.sampled_from(["match", "last_match", "match", "ticker", "error"])),
        "trade_id": draw(_trade_id), "product_id": draw(symbol_text),
        "price": draw(number_text), "size": draw(number_text),
        "time": draw(st.one_of(st.just(stamp), st.text(max_size=30))),
        "side": "buy", "message": draw(st.text(max_size=20)),
    }  # fmt: skip
    for key in draw(st.lists(st.sampled_from(sorted(message)), max_size=2)):
        message[key] = draw(_JSON_SCALAR)
    return json.dumps(message).encode()


@profile(300)
@given(st.lists(binance_frames(), max_size=25))
def test_arbitrary_binance_json_admitted_within_bounds_or_refused(frames: list[bytes]) -> None:
    inputs["frames_binance_json"] += len(frames)
    accept_all(Venue.BINANCE, frames, NOW_NS)


@profile(300)
@given(st.lists(coinbase_frames(), max_size=25))
def test_arbitrary_coinbase_json_admitted_within_bounds_or_refused(frames: list[bytes]) -> None:
    inputs["frames_coinbase_json"] += len(frames)
    accept_all(Venue.COINBASE, frames, NOW_NS)


@profile(300)
@given(
    st.lists(
        st.tuples(st.sampled_from(["BTCUSDT", "ETHUSDT"]), st.integers(0, 2**63 - 1),
                  st.integers(-(10**12), 10**12), st.sampled_from(["1", "100", "60000", "0.5",
                                                                   "999999999999999"])),
        max_size=60,
    )
)  # fmt: skip
def test_admission_sequences_never_admit_a_trade_twice(
    rows: list[tuple[str, int, int, str]],
) -> None:
    inputs["tick_sequences"] += len(rows)
    adm = Admission(Counters(), AdmissionSettings(subscribed=frozenset({"BTCUSDT", "ETHUSDT"})))
    seen = set()
    for symbol, trade_id, skew, price in rows:
        tick = Tick(event_id=f"binance:{symbol}:{trade_id}", venue="binance", symbol=symbol,
                    trade_id=trade_id, ts_event=NOW_NS + skew, ts_recv=NOW_NS,
                    price=Decimal(price), qty=Decimal(1))  # fmt: skip
        if adm.admit(tick):
            assert (symbol, trade_id) not in seen
            assert abs(skew) <= WINDOW_NS
            seen.add((symbol, trade_id))


PROPERTIES = [
    test_parse_decimal_admits_within_bounds_or_refuses_never_raises,
    test_parse_decimal_admits_every_plain_value_within_bounds,
    test_parse_symbol_well_formed_or_refused_never_raises,
    test_arbitrary_bytes_admitted_within_bounds_or_refused,
    test_arbitrary_binance_json_admitted_within_bounds_or_refused,
    test_arbitrary_coinbase_json_admitted_within_bounds_or_refused,
    test_admission_sequences_never_admit_a_trade_twice,
]
admission_fuzz.fuzzed(__name__, PROPERTIES)


@pytest.mark.skipif(not FUZZING, reason="HYPOTHESIS_PROFILE=fuzz (nox -s fuzz) only")
def test_fuzz_for_minutes() -> None:
    """Round after round of every admission and downstream property until the time is up."""
    assert set(admission_fuzz.FUZZED) == set(admission_fuzz.SUITES), "collect both suites"
    deadline = time.monotonic() + FUZZ_MINUTES * 60
    started = time.monotonic()
    rounds = 0
    findings: list[str] = []
    with logs.capture(keep=False):  # millions of malformed_message lines otherwise
        while time.monotonic() < deadline and not findings:
            for prop in [p for suite in admission_fuzz.FUZZED.values() for p in suite]:
                if time.monotonic() >= deadline:
                    break
                try:
                    prop()
                except Exception as exc:  # a finding: report it with the others
                    findings.append(f"{prop.__name__}: {exc!r}"[:2000])
            rounds += 1
    minutes = (time.monotonic() - started) / 60
    report = {"minutes": round(minutes, 2), "rounds_started": rounds, "findings": findings,
              "inputs": dict(sorted(admission_fuzz.inputs.items())),
              "total_inputs": sum(admission_fuzz.inputs.values())}  # fmt: skip
    print("admission fuzz:", json.dumps(report))
    assert not findings
