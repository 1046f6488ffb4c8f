"""Coinbase ``matches`` decoder: real capture lines, tickers never ticks, malformed input."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from decimal import Decimal

import msgspec
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.market.coinbase import (
    decode_coinbase,
    decode_coinbase_error,
    subscribe_message,
    time_to_ns,
)
from engine.adapters.market.decoding import MalformedMessage
from engine.adapters.market.dedup import TradeDedup
from engine.adapters.market.replay import ReplayStream
from engine.adapters.market.venues import decoder_for, detect_venue
from engine.adapters.market.ws.intake import FrameIntake
from engine.config.schema import IngestSection, Source, Venue
from engine.counters import Counters
from engine.ports import TickBatch
from tests.fakes.fake_exchange import COINBASE_CAPTURE

MATCH = (
    b'{"type":"match","trade_id":280232,"maker_order_id":"2a0da34e-61f7-4c36-88e5-c9dd15927b16",'
    b'"taker_order_id":"3c82abaa-c01e-4608-be59-6a1e69742891","side":"sell","size":"985",'
    b'"price":"0.00001305","product_id":"SKL-BTC","sequence":177100030,'
    b'"time":"2021-04-17T16:43:37.089723Z"}'
)
L2UPDATE = (
    b'{"type":"l2update","product_id":"SKL-GBP","changes":[["sell","0.5767","0.0"]],'
    b'"time":"2021-04-17T16:44:07.859760Z"}'
)


def _capture_messages() -> list[bytes]:
    out = []
    for line in COINBASE_CAPTURE.read_bytes().splitlines():
        if not line.startswith(b"wss://"):
            out.append(line.partition(b": ")[2])
    return out


def test_coinbase_match_decodes_exact_tick() -> None:
    tick = decode_coinbase(MATCH, 42)
    assert tick is not None
    assert tick.event_id == "coinbase:SKL-BTC:280232"
    assert (tick.venue, tick.symbol, tick.trade_id) == ("coinbase", "SKL-BTC", 280232)
    assert tick.price == Decimal("0.00001305") and tick.qty == Decimal("985")
    assert tick.ts_event == 1618677817_089723000
    assert tick.ts_recv == 42


def test_coinbase_registered_and_detected_as_venue() -> None:
    assert decoder_for("coinbase") is decode_coinbase
    assert detect_venue(MATCH) == "coinbase"


def test_coinbase_real_capture_107_trades_tickers_never_ticks() -> None:
    messages = _capture_messages()
    ticks = [t for m in messages if (t := decode_coinbase(m, 0)) is not None]
    kinds = [json.loads(m)["type"] for m in messages]
    assert kinds.count("match") + kinds.count("last_match") == len(ticks) == 107
    assert len({t.event_id for t in ticks}) == 107
    tickers = [json.loads(m) for m in messages if json.loads(m)["type"] == "ticker"]
    assert len(tickers) == 107
    # each ticker repeats a trade already delivered as a match -- and is not a tick
    trade_keys = {(t.symbol, t.trade_id) for t in ticks}
    assert all((t["product_id"], t["trade_id"]) in trade_keys for t in tickers)


def test_coinbase_last_match_is_a_tick_other_kinds_are_not() -> None:
    last = MATCH.replace(b'"type":"match"', b'"type":"last_match"')
    assert decode_coinbase(last, 0) is not None
    assert decode_coinbase(L2UPDATE, 0) is None
    assert decode_coinbase(b'{"type":"heartbeat","sequence":1}', 0) is None
    ack = b'{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]}]}'
    assert decode_coinbase(ack, 0) is None


def test_coinbase_error_message_is_not_a_tick_but_readable() -> None:
    raw = (
        b'{"type":"error","message":"Failed to subscribe",'
        b'"reason":"BTC-XYZ is not a valid product"}'
    )
    assert decode_coinbase(raw, 0) is None
    assert decode_coinbase_error(raw) == "Failed to subscribe BTC-XYZ is not a valid product"
    assert decode_coinbase_error(MATCH) is None
    assert decode_coinbase_error(b"garbage") is None


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (MATCH[:60], "truncated"),
        (b"[]", "not an object"),
        (b'{"price":"1"}', "no type"),
        (MATCH.replace(b'"price":"0.00001305",', b""), "missing price"),
        (MATCH.replace(b'"0.00001305"', b'"12.3.4"'), "invalid decimal"),
        (MATCH.replace(b'"0.00001305"', b'"0"'), "zero price"),
        (MATCH.replace(b'"985"', b'"-1"'), "negative size"),
        (MATCH.replace(b'"0.00001305"', b'"NaN"'), "not a number"),
        (MATCH.replace(b"280232", b'"280232"'), "trade id as string"),
        (MATCH.replace(b'37.089723Z"', b'37.089723"'), "time without timezone"),
        (
            b'{"type":"subscriptions","channels":5}',
            "ack of the wrong shape",
        ),
    ],
)
def test_coinbase_malformed_raises(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedMessage):
        decode_coinbase(raw, 0)


@given(st.binary(max_size=300))
def test_coinbase_arbitrary_bytes_only_malformed_or_none(raw: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        decode_coinbase(raw, 0)


@given(st.integers(min_value=0, max_value=len(MATCH) - 1), st.binary(min_size=1, max_size=3))
def test_coinbase_mutated_real_match_only_malformed_or_tick(pos: int, junk: bytes) -> None:
    raw = MATCH[:pos] + junk + MATCH[pos + 1 :]
    with contextlib.suppress(MalformedMessage):
        decode_coinbase(raw, 0)


def test_coinbase_time_to_ns_exact_microseconds() -> None:
    when = msgspec.json.decode(b'"2021-04-17T16:43:37.000001Z"', type=dt.datetime)
    assert time_to_ns(when) == 1618677817_000001000


def test_coinbase_subscribe_message_matches_channel() -> None:
    assert json.loads(subscribe_message(["BTC-USD", "ETH-USD"])) == {
        "type": "subscribe",
        "product_ids": ["BTC-USD", "ETH-USD"],
        "channels": ["matches"],
    }


async def test_coinbase_cryptofeed_capture_replays_to_the_107_trades() -> None:
    counters = Counters()
    send, receive = trio.open_memory_channel[TickBatch](1000)
    await ReplayStream([COINBASE_CAPTURE], counters).stream(send)
    send.close()
    ticks = [t async for batch in receive for t in batch]
    assert len(ticks) == len({t.event_id for t in ticks}) == 107
    assert counters.skipped_messages == 107 + 3  # tickers + subscription acks
    assert counters.parse_errors == 0


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"price":"0.00001305"', b'"price":"1e999999999"'),  # decimal.Overflow downstream
        (b'"size":"985"', b'"size":"1E+20"'),
        (b'"price":"0.00001305"', b'"price":"1E-30"'),
        (b'"trade_id":280232', b'"trade_id":18446744073709551615'),  # beyond SQLite INTEGER
        (b'"trade_id":280232', b'"trade_id":-1'),
        (b'"time":"2021-04-17T16:43:37.089723Z"', b'"time":"9999-12-31T00:00:00Z"'),
    ],
)
def test_coinbase_values_beyond_sanity_or_64_bits_malformed(old: bytes, new: bytes) -> None:
    raw = MATCH.replace(old, new)
    assert raw != MATCH
    with pytest.raises(MalformedMessage):
        decode_coinbase(raw, 0)


DEEP = b'{"type":"match","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
"""Nested beyond msgspec's depth limit: it raises RecursionError, not DecodeError."""


def test_coinbase_nesting_too_deep_malformed_not_recursion_error() -> None:
    with pytest.raises(MalformedMessage):
        decode_coinbase(DEEP, 0)


def test_frame_intake_nesting_too_deep_counted_not_raised() -> None:
    section = IngestSection(source=Source.WEBSOCKET, venue=Venue.COINBASE, symbols=("SKL-BTC",))
    counters = Counters()
    intake = FrameIntake(section, counters, TradeDedup())
    assert intake.accept(DEEP, 0, 0.0) is None
    assert counters.parse_errors == 1
    received = 1618677817_089723000 + 5_000_000  # 5 ms after the match's time
    assert intake.accept(MATCH, received, 0.0) is not None
