"""WebSocketStream against the fake exchange: subscribe, reconnect, dedup, budget, input quality."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import trio

from engine import logs
from engine.adapters.backoff import Backoff, BackoffPolicy
from engine.adapters.market.ws.endpoints import feed_url
from engine.adapters.market.ws.stream import WebSocketStream
from engine.config.schema import IngestSection, Source, Venue
from engine.counters import Counters
from engine.exits import ConfigError, NetworkBudgetExhausted, ParseRateExceeded
from engine.logs import Captured
from engine.ports import TickBatch
from tests.fakes.fake_exchange import (
    End,
    Session,
    binance_tape,
    coinbase_products,
    coinbase_tape,
    ingest_section,
    open_fake_exchange,
    running_stream,
    take,
    until,
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _ids(ticks: list) -> list[int]:  # type: ignore[type-arg]
    return [t.trade_id for t in ticks]


def test_feed_url_binance_appends_combined_streams_lower_case() -> None:
    section = IngestSection(source=Source.WEBSOCKET, symbols=("BTCUSDT", "EthUsdt"))
    assert (
        feed_url(section)
        == "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"
    )
    other = IngestSection(source=Source.WEBSOCKET, url="ws://127.0.0.1:9/", symbols=("BTCUSDT",))
    assert feed_url(other) == "ws://127.0.0.1:9/stream?streams=btcusdt@trade"


def test_feed_url_coinbase_default_public_endpoint() -> None:
    section = IngestSection(source=Source.WEBSOCKET, venue=Venue.COINBASE, symbols=("BTC-USD",))
    assert feed_url(section) == "wss://ws-feed.exchange.coinbase.com"


async def test_stream_binance_connect_ticks_flow_exact() -> None:
    async with (
        open_fake_exchange("binance", [Session(frames=200)]) as fake,
        running_stream(ingest_section(fake)) as (stream, receive),
    ):
        ticks = await take(receive, 200)
    assert fake.paths == ["/stream?streams=btcusdt@trade"]
    assert _ids(ticks) == [f.trade_id for f in binance_tape()[:200]]
    first = ticks[0]
    assert first.event_id == "binance:BTCUSDT:3735683259"
    assert first.price == Decimal("61837.63000000") and first.qty == Decimal("0.02000000")
    # the fake prints each trade at the wall clock of sending, as a venue would
    assert first.ts_event == json.loads(fake.sent[0].text)["data"]["T"] * 1_000_000
    assert stream.counters.ingest_received == 200
    assert stream.counters.ingest_processed == 200
    assert stream.counters.reconnects == 0


async def test_stream_coinbase_subscribes_matches_ticks_flow_tickers_never_ticks() -> None:
    trades = [f for f in coinbase_tape() if f.trade_id is not None]
    async with (
        open_fake_exchange("coinbase") as fake,
        running_stream(ingest_section(fake)) as (stream, receive),
    ):
        ticks = await take(receive, len(trades))
        # the ack, then every frame of the tape (it ends with a ticker)
        frames = 1 + len(coinbase_tape())
        await until(stream.progress, lambda: stream.counters.ingest_received == frames)
    assert fake.subscriptions == [
        {"type": "subscribe", "product_ids": coinbase_products(), "channels": ["matches"]}
    ]
    assert [(t.symbol, t.trade_id) for t in ticks] == [(f.symbol, f.trade_id) for f in trades]
    assert len({t.event_id for t in ticks}) == 107
    tickers = sum(1 for f in coinbase_tape() if f.trade_id is None)
    assert tickers == 107
    # every ticker repeats a trade already delivered: skipped, not a tick, not a duplicate
    assert stream.counters.skipped_messages == tickers + 1  # + the subscriptions ack
    assert stream.counters.ingest_processed == 107
    assert stream.counters.duplicates == 0


async def test_stream_drop_then_resend_no_duplicate_tick(log_lines: Captured) -> None:
    sessions = [Session(frames=50, then=End.ABORT), Session(resend=10, frames=50)]
    async with (
        open_fake_exchange("binance", sessions) as fake,
        running_stream(ingest_section(fake)) as (stream, receive),
    ):
        ticks = await take(receive, 100)
    assert fake.accepted == 2
    assert len(fake.sent) == 110
    assert _ids(ticks) == [f.trade_id for f in binance_tape()[:100]]
    counters = stream.counters
    assert (counters.duplicates, counters.reconnects, counters.gaps) == (10, 1, 0)
    assert counters.ingest_received == 110 and counters.ingest_processed == 100
    [lost] = log_lines.events("ws_disconnected")
    assert lost["reason"].startswith("closed 1006")
    assert len(log_lines.events("ws_connected")) == 2
    # the stream binds its venue once (logs.bind): every line its tasks log names it
    feed_lines = [line for line in log_lines.lines if line["event"].startswith("ws_")]
    assert len(feed_lines) >= 4
    assert {line["venue"] for line in feed_lines} == {"binance"}
    assert [k for k in lost][:4] == ["ts", "level", "event", "venue"]


async def test_stream_trades_missed_while_away_gap_counted_and_logged(
    log_lines: Captured,
) -> None:
    sessions = [Session(frames=20, then=End.CLOSE), Session(skip=5, frames=20)]
    async with (
        open_fake_exchange("binance", sessions) as fake,
        running_stream(ingest_section(fake)) as (stream, receive),
    ):
        ticks = await take(receive, 40)
    tape = binance_tape()
    assert _ids(ticks) == [f.trade_id for f in tape[:20] + tape[25:45]]
    assert stream.counters.gaps == 1
    [gap] = log_lines.events("trade_gap")
    assert (gap["symbol"], gap["missing"]) == ("BTCUSDT", 5)
    assert gap["first_missing"] == tape[20].trade_id
    assert log_lines.events("ws_disconnected")[0]["reason"] == "closed 1001 GOING_AWAY: going away"


async def test_stream_refused_handshakes_retried_with_the_backoff_schedule(
    log_lines: Captured,
) -> None:
    sessions = [Session(reject=503)] * 3 + [Session(frames=10)]
    async with open_fake_exchange("binance", sessions) as fake:
        section = ingest_section(fake, initial_backoff_s=0.01, max_backoff_s=0.03, backoff_seed=5)
        async with running_stream(section) as (stream, receive):
            ticks = await take(receive, 10)
    assert len(ticks) == 10
    assert (fake.rejected, fake.accepted) == (3, 1)
    assert stream.counters.reconnects == 3
    failed = log_lines.events("ws_connect_failed")
    assert [f["reason"] for f in failed] == ["handshake rejected with HTTP 503"] * 3
    expected = Backoff(BackoffPolicy(initial_s=0.01, max_s=0.03, factor=2.0, seed=5))
    delays = [round(expected.next_delay(), 3) for _ in range(3)]
    assert [r["delay_s"] for r in log_lines.events("ws_reconnect")] == delays
    assert [r["failures"] for r in log_lines.events("ws_reconnect")] == [1, 2, 3]


async def test_stream_consecutive_failures_spend_budget_network_exit(
    log_lines: Captured,
) -> None:
    async with open_fake_exchange("binance", [Session(reject=503)]) as fake:
        stream = WebSocketStream(ingest_section(fake, max_reconnect_failures=3), Counters())
        send, _receive = trio.open_memory_channel[TickBatch](10)
        with trio.fail_after(10), pytest.raises(NetworkBudgetExhausted, match="3 consecutive"):
            await stream.stream(send)
    assert fake.handshakes == 3
    assert stream.counters.reconnects == 2
    assert stream.counters.connected == 0
    [give_up] = log_lines.events("ws_give_up")
    assert "HTTP 503" in give_up["last_error"]


async def test_stream_downtime_spends_budget_before_failures() -> None:
    async with open_fake_exchange("binance", [Session(reject=503)]) as fake:
        section = ingest_section(fake, max_reconnect_failures=1_000_000, max_downtime_s=0.3)
        stream = WebSocketStream(section, Counters())
        send, _receive = trio.open_memory_channel[TickBatch](10)
        start = trio.current_time()
        with trio.fail_after(10), pytest.raises(NetworkBudgetExhausted, match="max_downtime_s"):
            await stream.stream(send)
        assert trio.current_time() - start >= 0.3
    assert fake.handshakes > 3


async def test_stream_nothing_listening_connect_failures_counted() -> None:
    # a port that was just closed: connection refused, every time
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    section = IngestSection(
        source=Source.WEBSOCKET,
        url=f"ws://127.0.0.1:{port}",
        initial_backoff_s=0.01,
        max_backoff_s=0.01,
        max_reconnect_failures=2,
    )
    stream = WebSocketStream(section, Counters())
    send, _receive = trio.open_memory_channel[TickBatch](10)
    with trio.fail_after(10), pytest.raises(NetworkBudgetExhausted, match="connect failed"):
        await stream.stream(send)


async def test_stream_malformed_frames_counted_every_good_trade_delivered(
    log_lines: Captured,
) -> None:
    async with (
        open_fake_exchange("binance", [Session(frames=60, malformed_every=5)]) as fake,
        running_stream(ingest_section(fake)) as (stream, receive),
    ):
        ticks = await take(receive, 60)
        await until(stream.progress, lambda: stream.counters.parse_errors == 12)
    assert fake.bad_sent == 12
    assert _ids(ticks) == [f.trade_id for f in binance_tape()[:60]]
    assert stream.counters.reconnects == 0
    bad = log_lines.events("malformed_message")
    assert len(bad) == 12
    assert all(len(b["sample"]) <= logs.SAMPLE_CHARS + 20 for b in bad)
    reasons = " | ".join(b["reason"] for b in bad[:3])
    assert "truncated" in reasons and "p" in reasons and "decimal" in reasons.lower()


async def test_stream_coinbase_malformed_frames_counted() -> None:
    async with (
        open_fake_exchange("coinbase", [Session(frames=30, malformed_every=10)]) as fake,
        running_stream(ingest_section(fake)) as (stream, _receive),
    ):
        await until(stream.progress, lambda: stream.counters.parse_errors == 3)
        assert stream.counters.ingest_received == 1 + len(fake.sent) + 3
    assert fake.bad_sent == 3


async def test_stream_parse_errors_above_rate_parse_exit() -> None:
    async with open_fake_exchange("binance", [Session(frames=50, malformed_every=1)]) as fake:
        stream = WebSocketStream(ingest_section(fake, max_parse_errors_per_min=10), Counters())
        send, _receive = trio.open_memory_channel[TickBatch](1000)
        with trio.fail_after(10), pytest.raises(ParseRateExceeded, match="11 malformed"):
            await stream.stream(send)
    assert stream.counters.parse_errors == 11
    assert stream.counters.connected == 0


async def test_stream_frame_above_max_message_size_is_parse_error_then_reconnect(
    log_lines: Captured,
) -> None:
    sessions = [Session(frames=10, oversize_after=10), Session(frames=10)]
    async with open_fake_exchange("binance", sessions, max_message_size=4096) as fake:
        section = ingest_section(fake, max_message_size=4096)
        async with running_stream(section) as (stream, receive):
            ticks = await take(receive, 20)
    assert _ids(ticks) == [f.trade_id for f in binance_tape()[:20]]
    assert stream.counters.parse_errors == 1
    assert stream.counters.reconnects == 1
    assert stream.stats.oversize_frames == 1
    [bad] = log_lines.events("malformed_message")
    assert "max_message_size=4096" in bad["reason"]
    assert log_lines.events("ws_disconnected")[0]["reason"].startswith("closed 1009")


def test_stream_no_symbols_is_a_config_error_exit_12() -> None:
    section = IngestSection(source=Source.WEBSOCKET, symbols=())
    with pytest.raises(ConfigError, match=r"ingest\.symbols"):
        WebSocketStream(section, Counters())


async def test_stream_coinbase_unknown_product_refused_config_exit_12_no_reconnect(
    log_lines: Captured,
) -> None:
    async with open_fake_exchange("coinbase") as fake:
        section = ingest_section(fake, symbols=("BTC-XYZ",))
        stream = WebSocketStream(section, Counters())
        send, _receive = trio.open_memory_channel[TickBatch](10)
        with trio.fail_after(10), pytest.raises(ConfigError, match="BTC-XYZ is not a valid"):
            await stream.stream(send)
    assert fake.handshakes == 1
    assert stream.counters.reconnects == 0
    assert stream.counters.connected == 0
    [error] = log_lines.events("venue_error")
    assert error["action"] == "stop_config"


async def test_stream_coinbase_transient_venue_error_reconnects_then_ticks_flow(
    log_lines: Captured,
) -> None:
    sessions = [Session(venue_error="Internal server error, try again"), Session()]
    async with (
        open_fake_exchange("coinbase", sessions) as fake,
        running_stream(ingest_section(fake)) as (stream, receive),
    ):
        ticks = await take(receive, 5)
    assert len(ticks) == 5
    assert fake.handshakes == 2
    assert stream.counters.reconnects == 1
    [error] = log_lines.events("venue_error")
    assert error["action"] == "reconnect"
    lost = log_lines.events("ws_disconnected")[0]
    assert lost["reason"] == "venue error: Failed to subscribe Internal server error, try again"
    assert lost["worked"] is False


async def test_stream_coinbase_venue_error_every_time_spends_budget_network_exit() -> None:
    async with open_fake_exchange("coinbase", [Session(venue_error="busy")]) as fake:
        stream = WebSocketStream(ingest_section(fake, max_reconnect_failures=3), Counters())
        send, _receive = trio.open_memory_channel[TickBatch](10)
        with trio.fail_after(10), pytest.raises(NetworkBudgetExhausted, match="3 consecutive"):
            await stream.stream(send)
    assert fake.handshakes == 3


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1:1", "127.0.0.1:1", "ws://127.0.0.1:99999", "ws:///no-host"]
)
def test_stream_unusable_url_is_a_config_error_exit_12(url: str) -> None:
    section = IngestSection(source=Source.WEBSOCKET, url=url, symbols=("BTCUSDT",))
    with pytest.raises(ConfigError, match=r"ingest\.url"):
        WebSocketStream(section, Counters())
