"""Binance decoder and the venue registry: real lines, every malformed kind, skipped kinds."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.market import binance
from engine.adapters.market.decoding import MalformedMessage
from engine.adapters.market.venues import DECODERS, decoder_for, detect_venue, register
from engine.core.events import Tick, tick_id

CAPTURE = Path(__file__).resolve().parents[3] / "replays" / "btcusdt_20240808.gz"
TS_RECV = 1_723_161_254_087_896_568


def _real_lines(count: int = 200) -> list[tuple[int, bytes]]:
    with gzip.open(CAPTURE, "rb") as f:
        out = []
        for _ in range(count):
            ts, _, raw = f.readline().rstrip(b"\n").partition(b" ")
            out.append((int(ts), raw))
    return out


def _first_of(marker: bytes) -> bytes:
    return next(raw for _, raw in _real_lines() if marker in raw)


FIRST_TRADE = _first_of(b'"btcusdt@trade"')


def _trade(**fields: object) -> bytes:
    base: dict[str, object] = {
        "e": "trade",
        "E": 1723161255343,
        "s": "BTCUSDT",
        "t": 3735683259,
        "p": "61837.63000000",
        "q": "0.02000000",
        "T": 1723161255342,
        "m": True,
        "M": True,
    }
    base.update(fields)
    return msgspec.json.encode({k: v for k, v in base.items() if v is not ...})


def test_decode_real_envelope_trade_gives_exact_tick() -> None:
    tick = binance.decode(FIRST_TRADE, TS_RECV)
    assert tick == Tick(
        event_id="binance:BTCUSDT:3735683259",
        venue="binance",
        symbol="BTCUSDT",
        trade_id=3735683259,
        ts_event=1723161255342 * 1_000_000,
        ts_recv=TS_RECV,
        price=Decimal("61837.63000000"),
        qty=Decimal("0.02000000"),
    )
    assert tick is not None
    assert tick.event_id == tick_id("binance", "BTCUSDT", 3735683259)
    assert str(tick.price) == "61837.63000000"


def test_decode_bare_form_built_from_real_line_equals_envelope_tick() -> None:
    data = FIRST_TRADE[FIRST_TRADE.index(b'"data":') + len(b'"data":') : -1]
    assert data.startswith(b'{"e":"trade"')
    assert binance.decode(data, TS_RECV) == binance.decode(FIRST_TRADE, TS_RECV)


def test_decode_every_real_trade_line_gives_tick_with_contiguous_ids() -> None:
    ids = []
    for ts, raw in _real_lines(2000):
        tick = binance.decode(raw, ts)
        if b"@trade" in raw:
            assert tick is not None and tick.ts_recv == ts
            ids.append(tick.trade_id)
        else:
            assert tick is None
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert len(ids) > 100


@pytest.mark.parametrize(
    "marker", [b'"btcusdt@bookTicker"', b'"btcusdt@depth@100ms"', b'"lastUpdateId"']
)
def test_decode_real_non_trade_kinds_skipped(marker: bytes) -> None:
    assert binance.decode(_first_of(marker), TS_RECV) is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"result":null,"id":1}',
        b"{}",
        b'{"e":"24hrTicker","E":1,"s":"BTCUSDT","p":"-5.0"}',
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":5}}',
    ],
)
def test_decode_other_well_formed_messages_skipped(raw: bytes) -> None:
    assert binance.decode(raw, TS_RECV) is None


def test_decode_lower_case_symbol_upper_cased_in_tick_and_id() -> None:
    tick = binance.decode(_trade(s="btcusdt"), TS_RECV)
    assert tick is not None
    assert tick.symbol == "BTCUSDT" and tick.event_id == "binance:BTCUSDT:3735683259"


def test_decode_without_optional_M_accepted() -> None:
    assert binance.decode(_trade(M=...), TS_RECV) is not None


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        (b"not json at all", "malformed"),
        (FIRST_TRADE[:-20], "truncated"),
        (b"", "truncated"),
        (b"[1, 2, 3]", "Expected `object`"),
        (b'"trade"', "Expected `object`"),
        (b'{"stream":"btcusdt@trade","data":[1]}', "$.data"),
        (_trade(t="3735683259"), "$.t"),
        (_trade(T=1.5), "$.T"),
        (_trade(m="yes"), "$.m"),
        (_trade(p="sixty"), "decimal"),
        (_trade(q=""), "decimal"),
        (_trade(p="0"), "admissible"),
        (_trade(p="-61837.63"), "admissible"),
        (_trade(q="0.00000000"), "admissible"),
        (_trade(p="Infinity"), "admissible"),
        (_trade(q="-Infinity"), "admissible"),
        (_trade(p="1E+15"), "admissible"),
        (_trade(q="1E-13"), "admissible"),
        (_trade(q="NaN"), "admissible"),
        (_trade(p="sNaN"), "admissible"),
        (_trade(t=2**63), "$.t"),
        (_trade(T=2**63 // 1_000_000 + 1), "$.T"),
        (_trade(E=10**30), "$.E"),
        (_trade(s="BTC").replace(b'"BTC"', b'"\xff\xfe"'), "utf-8"),
        (b'{"e":"trade","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "recursion"),
        (_trade(t=...), "t"),
        (_trade(T=...), "T"),
        (_trade(E=...), "E"),
        (_trade(s=...), "s"),
        (_trade(p=...), "p"),
        (_trade(q=...), "q"),
        (_trade(m=...), "m"),
        (_trade(t=-1), "t"),
    ],
)
def test_decode_malformed_raises_with_reason(raw: bytes, reason_part: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        binance.decode(raw, TS_RECV)
    # The meaning, not a library's wording: msgspec 0.22 said "'utf-8' codec can't
    # decode", 0.23 says "Invalid UTF-8 encoded string"; both name UTF-8.
    assert reason_part.casefold() in info.value.reason.casefold()
    assert isinstance(info.value, ValueError)


def test_decode_missing_fields_all_named_in_one_reason() -> None:
    with pytest.raises(MalformedMessage, match=r"t, p, T"):
        binance.decode(_trade(t=..., p=..., T=...), TS_RECV)


@given(
    trade_id=st.integers(min_value=0, max_value=2**62),
    t_ms=st.integers(min_value=0, max_value=2**40),
    price=st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**9), places=8),
    qty=st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**6), places=8),
    envelope=st.booleans(),
)
def test_decode_any_valid_trade_round_trips_exactly(
    trade_id: int, t_ms: int, price: Decimal, qty: Decimal, envelope: bool
) -> None:
    raw = _trade(t=trade_id, T=t_ms, p=str(price), q=str(qty))
    if envelope:
        raw = b'{"stream":"btcusdt@trade","data":' + raw + b"}"
    tick = binance.decode(raw, 7)
    assert tick is not None
    assert (tick.trade_id, tick.ts_event, tick.ts_recv) == (trade_id, t_ms * 1_000_000, 7)
    assert tick.price == price and str(tick.price) == str(price)
    assert tick.qty == qty and tick.event_id == tick_id("binance", "BTCUSDT", trade_id)


def test_registry_holds_binance_decoder() -> None:
    assert DECODERS["binance"] is binance.decode
    assert decoder_for("binance") is binance.decode


def test_registry_register_adds_venue_and_unknown_venue_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake(raw: bytes, ts_recv: int, /) -> Tick | None:
        return None

    monkeypatch.setattr("engine.adapters.market.venues.DECODERS", dict(DECODERS))
    register("testvenue", fake)
    assert decoder_for("testvenue") is fake
    with pytest.raises(KeyError, match="nowhere"):
        decoder_for("nowhere")


@pytest.mark.parametrize(
    ("raw", "venue"),
    [
        (FIRST_TRADE, "binance"),
        (_first_of(b'"lastUpdateId"'), "binance"),
        (_trade(), "binance"),
        (b'{"result":null,"id":1}', "binance"),
        (b'{"type":"subscriptions","channels":[]}', "coinbase"),
        (
            b'{"type":"match","trade_id":280232,"side":"sell","size":"985",'
            b'"price":"0.00001305","product_id":"SKL-BTC","time":"2021-04-17T16:43:37.089723Z"}',
            "coinbase",
        ),
    ],
)
def test_detect_venue_from_keys(raw: bytes, venue: str) -> None:
    assert detect_venue(raw) == venue


@pytest.mark.parametrize("raw", [b"nope", b'[993,[["354.1"]],"trade","XMR/USD"]', b'{"x":1}'])
def test_detect_venue_unknown_raises_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedMessage, match="cannot detect venue"):
        detect_venue(raw)
