"""The live feed against hostile venues, in process: real sockets on 127.0.0.1, port 0.

One scenario per failure of issue 10's "live feed" section: a protocol violation
followed by a peer that keeps TCP open and never answers the close (the stall),
malformed handshake replies (the crash), a venue that acks and drops forever (the
budget never spent), a Coinbase ``error`` mid-stream (exit 12 by mistake). The
exit codes themselves are checked with real subprocesses in
``tests/e2e/test_hostile_venue.py``; the silence watch's arithmetic under the mock
clock at the end.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.adapters.link.session import LinkStats, Session
from engine.adapters.market.ws.silence import SilenceWatch
from engine.adapters.market.ws.stream import WebSocketStream
from engine.adapters.progress import Progress
from engine.config.schema import IngestSection
from engine.counters import Counters
from engine.exits import ConfigError, NetworkBudgetExhausted, ParseRateExceeded
from engine.logs import Captured
from engine.ports import TickBatch
from tests.fakes.fake_exchange import (
    WAIT_S,
    End,
    binance_tape,
    coinbase_tape,
    ingest_section,
    open_fake_exchange,
    running_stream,
    take,
)
from tests.fakes.fake_exchange import Session as Script
from tests.fakes.hostile_venue import (
    Handshake,
    HostileVenue,
    Play,
    Then,
    frame,
    open_hostile_venue,
    ping_frame,
    text_frame,
    trade_frames,
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

INVALID_UTF8 = text_frame(b'{"stream":"btcusdt@trade","data":{"e":"\xff\xfe"}}')
BIG_PING = ping_frame(b"p" * 200)
CLOSE_BOUND_S = 0.5
"""``pong_timeout_s`` in these tests, hence the close bound ``min(pong_timeout_s, 2 s)``
(a backstop: no scenario here needs it -- ``teardown_timeouts`` stays 0)."""


def _section(venue: HostileVenue, **overrides: Any) -> IngestSection:
    values: dict[str, Any] = {"pong_timeout_s": CLOSE_BOUND_S, "max_reconnect_failures": 3}
    values.update(overrides)
    return ingest_section(venue, **values)


async def _run_to_end(stream: WebSocketStream) -> BaseException:
    send, _receive = trio.open_memory_channel[TickBatch](100_000)
    with trio.fail_after(WAIT_S):
        try:
            await stream.stream(send)
        except (NetworkBudgetExhausted, ConfigError) as exc:
            return exc
    raise AssertionError("the stream ended without an error")


@pytest.mark.parametrize(
    ("violation", "close_code"), [(INVALID_UTF8, "1007"), (BIG_PING, "1002")],
    ids=["invalid-utf8-text", "ping-200-bytes"],
)
async def test_hostile_protocol_violation_then_tcp_held_open_reconnects_at_once(
    violation: bytes, close_code: str, log_lines: Captured
) -> None:
    # The peer breaks RFC 6455, then keeps TCP open and never answers the close:
    # trio-websocket's reader waits for a TCP close that never comes (the stall).
    # The session leaves the library's block with an error, which cancels that
    # reader: the feed reconnects without waiting even for the close bound.
    plays = [Play(frames=(*trade_frames(3), violation)), Play(frames=trade_frames(3, start=3))]
    async with (
        open_hostile_venue(plays) as venue,
        running_stream(_section(venue)) as (stream, receive),
    ):
        ticks = await take(receive, 6)
        down = stream.counters.connected
    assert [t.trade_id for t in ticks] == [f.trade_id for f in binance_tape()[:6]]
    assert down == 1 and venue.connections == 2
    assert stream.counters.reconnects == 1
    assert stream.stats.teardown_timeouts == 0
    [lost] = log_lines.events("ws_disconnected")
    assert lost["reason"].startswith(f"closed {close_code}")
    assert lost["teardown_error"] is None
    assert lost["worked"] is True


async def test_hostile_protocol_violation_forever_spends_the_budget() -> None:
    # Every connection: the same three trades (duplicates after the first), then the
    # violation and a held TCP connection. No new market data: exit 10, in bounded time.
    plays = [Play(frames=(*trade_frames(3), INVALID_UTF8))]
    async with open_hostile_venue(plays) as venue:
        stream = WebSocketStream(_section(venue), Counters())
        error = await _run_to_end(stream)
    assert isinstance(error, NetworkBudgetExhausted)
    assert "3 consecutive attempts without market data" in str(error) and "1007" in str(error)
    assert stream.counters.ingest_processed == 3
    assert venue.connections == 4
    assert stream.counters.duplicates == 9


@pytest.mark.parametrize(
    "handshake",
    [Handshake.BAD_ACCEPT, Handshake.NO_UPGRADE, Handshake.HUGE_HEADERS, Handshake.GARBAGE],
)
async def test_hostile_bad_handshake_is_a_failed_attempt_then_reconnect(
    handshake: Handshake, log_lines: Captured
) -> None:
    plays = [Play(handshake=handshake), Play(frames=trade_frames(5))]
    async with (
        open_hostile_venue(plays) as venue,
        running_stream(_section(venue)) as (stream, receive),
    ):
        ticks = await take(receive, 5)
    assert len(ticks) == 5 and venue.connections == 2
    [failed] = log_lines.events("ws_connect_failed")
    assert failed["reason"].startswith("protocol error")
    assert stream.counters.reconnects == 1


async def test_hostile_bad_handshake_forever_spends_the_budget() -> None:
    async with open_hostile_venue([Play(handshake=Handshake.BAD_ACCEPT)]) as venue:
        stream = WebSocketStream(_section(venue), Counters())
        error = await _run_to_end(stream)
    assert isinstance(error, NetworkBudgetExhausted)
    assert "3 consecutive attempts without market data" in str(error)
    assert venue.connections == 3


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 101 Switching Protocols\r\n"])
async def test_hostile_venue_that_never_completes_the_upgrade_reply_is_bounded(
    reply: bytes, log_lines: Captured
) -> None:
    # TCP accepted, the request read, then no (complete) reply, TCP held open:
    # trio-websocket's connect_timeout raises, then waits for its reader task --
    # forever. Our own deadline on the handshake makes it a failed attempt.
    async with open_hostile_venue([Play(reply=reply)]) as venue:
        stream = WebSocketStream(_section(venue, connect_timeout_s=0.2), Counters())
        error = await _run_to_end(stream)
    assert isinstance(error, NetworkBudgetExhausted)
    assert venue.connections == 3
    assert [e["reason"] for e in log_lines.events("ws_connect_failed")] == ["connect timed out"] * 3


async def test_hostile_coinbase_ack_then_drop_forever_spends_the_budget(
    log_lines: Captured,
) -> None:
    # Each connection acknowledges the subscribe and drops: frames arrive, but no
    # market data, so no attempt "worked" and the failures add up.
    async with open_fake_exchange("coinbase", [Script(frames=0, then=End.ABORT)]) as fake:
        stream = WebSocketStream(ingest_section(fake, max_reconnect_failures=4), Counters())
        error = await _run_to_end(stream)
    assert isinstance(error, NetworkBudgetExhausted)
    assert "4 consecutive attempts without market data" in str(error)
    assert fake.accepted == 4
    assert stream.counters.ingest_received == 4  # one ack each, nothing else
    assert not any(e["worked"] for e in log_lines.events("ws_disconnected"))


async def test_hostile_record_only_ack_then_drop_forever_spends_the_budget() -> None:
    # `record` does not decode, yet an ack is no proof either
    async with open_fake_exchange("coinbase", [Script(frames=0, then=End.ABORT)]) as fake:
        section = ingest_section(fake, max_reconnect_failures=3)
        stream = WebSocketStream(section, Counters(), decode=False)
        error = await _run_to_end(stream)
    assert isinstance(error, NetworkBudgetExhausted)
    assert fake.accepted == 3


async def test_hostile_coinbase_error_mid_stream_saying_invalid_reconnects_not_exit_12(
    log_lines: Captured,
) -> None:
    scripts = [
        Script(frames=20, error_after_frames="invalid signature on the internal relay"),
        Script(frames=20),
    ]
    trades = {f.trade_id for f in coinbase_tape()[:40] if f.trade_id is not None}  # 20 + 20
    async with (
        open_fake_exchange("coinbase", scripts) as fake,
        running_stream(ingest_section(fake)) as (stream, receive),
    ):
        ticks = await take(receive, len(trades))
    assert {t.trade_id for t in ticks} == trades
    assert fake.accepted == 2 and stream.counters.reconnects == 1
    [error] = log_lines.events("venue_error")
    assert (error["action"], error["answered_subscribe"]) == ("reconnect", False)
    [lost] = log_lines.events("ws_disconnected")
    assert lost["reason"] == "venue error: error invalid signature on the internal relay"


async def test_hostile_coinbase_refusal_in_answer_to_the_subscribe_is_exit_12() -> None:
    scripts = [Script(venue_error="BTC-XYZ is not a valid product")]
    async with open_fake_exchange("coinbase", scripts) as fake:
        stream = WebSocketStream(ingest_section(fake), Counters())
        error = await _run_to_end(stream)
    assert isinstance(error, ConfigError)
    assert "refused the subscription" in str(error)
    assert fake.handshakes == 1


async def test_hostile_coinbase_other_error_answering_the_subscribe_reconnects() -> None:
    scripts = [Script(venue_error="rate limit exceeded"), Script(frames=5)]
    async with (
        open_fake_exchange("coinbase", scripts) as fake,
        running_stream(ingest_section(fake)) as (stream, receive),
    ):
        await take(receive, 1)
    assert fake.accepted == 2 and stream.counters.reconnects == 1


async def test_hostile_last_tick_wall_time_recorded_for_liveness() -> None:
    # The receipt clock counts 1 ns a frame from now (trades are stamped with the wall
    # clock when sent, and admission judges their event time against receipt).
    start = time.time_ns()
    clock = iter(range(start, start + 10**9)).__next__
    async with (
        open_fake_exchange("binance", [Script(frames=5)]) as fake,
        running_stream(ingest_section(fake), clock=clock) as (stream, receive),
    ):
        await take(receive, 5)
    # five trades, no other frame: the fifth receipt stamp is the last tick's
    assert stream.counters.last_tick_wall_ns == start + 4


# -- the silence watch, under the mock clock ------------------------------------------


def _watch(max_downtime_s: float = 10.0) -> SilenceWatch:
    return SilenceWatch(max_downtime_s=max_downtime_s, stats=LinkStats(), progress=Progress())


def test_silence_deadline_fresh_session_half_the_budget_or_what_is_left() -> None:
    watch = _watch(10.0)
    fresh = Session(opened_at=100.0, last_rx=100.0)
    assert watch.deadline(fresh, feed_last_data=99.0) == 105.0  # half the budget
    assert watch.deadline(fresh, feed_last_data=92.0) == 102.0  # the budget ends first
    fresh.last_delivery = 103.0
    assert watch.deadline(fresh, feed_last_data=92.0) == 108.0


async def test_silence_watch_ends_session_without_ticks_exactly_on_time(
    autojump_clock: trio.testing.MockClock, log_lines: Captured
) -> None:
    watch = _watch(10.0)
    session = Session(opened_at=trio.current_time(), last_rx=trio.current_time())
    start = trio.current_time()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run, session, lambda: start, scope)
            await trio.sleep(4.0)
            session.last_delivery = trio.current_time()  # a tick at 4 s moves the deadline to 9 s
    assert scope.cancel_called
    assert trio.current_time() - start == 9.0
    assert session.end_reason is not None
    assert session.end_reason.startswith("no market data for 5.0s on this connection")
    assert watch.stats.silences == 1
    [event] = log_lines.events("ws_no_market_data")
    assert event["quiet_s"] == 5.0 and event["max_downtime_s"] == 10.0


async def test_silence_watch_never_fires_while_ticks_keep_coming(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch = _watch(2.0)
    start = trio.current_time()
    session = Session(opened_at=start, last_rx=start)
    with trio.move_on_after(60.0), trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run, session, lambda: start, scope)
            while True:
                await trio.sleep(0.9)
                session.last_delivery = trio.current_time()
    assert not scope.cancel_called
    assert watch.stats.silences == 0


# -- fuzz: whatever bytes follow the handshake, the feed ends as 10 or 11, in bounded time --


@st.composite
def _hostile_frames(draw: st.DrawFn) -> bytes:
    """A raw frame: any opcode, FIN bit, mask bit, declared length and payload; or noise."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    opcode = draw(st.integers(0, 15))
    payload = draw(st.binary(max_size=300))
    fin = draw(st.booleans())
    if draw(st.booleans()):
        return frame(opcode, payload, fin=fin)
    declared = draw(st.sampled_from([126, 127]))  # extended length that may lie
    length = draw(st.integers(0, 2**16 - 1 if declared == 126 else 2**63 - 1))
    size = struct.pack("!H" if declared == 126 else "!Q", length)
    masked = 0x80 if draw(st.booleans()) else 0
    return bytes([(0x80 if fin else 0) | opcode, masked | declared]) + size + payload


FUZZ_EXAMPLES = int(os.environ.get("HOSTILE_VENUE_EXAMPLES", "25"))
"""Examples per run; a fuzz session sets ``HOSTILE_VENUE_EXAMPLES`` far higher."""


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(_hostile_frames(), min_size=1, max_size=4), then=st.sampled_from(Then))
def test_hostile_fuzz_any_bytes_after_handshake_end_as_network_or_parse_exit(
    frames: list[bytes], then: Then
) -> None:
    async def scenario() -> BaseException:
        plays = [Play(frames=(*trade_frames(1), *frames), then=then)]
        async with open_hostile_venue(plays) as venue:
            section = _section(
                venue, keepalive_interval_s=0.1, pong_timeout_s=0.2, max_downtime_s=1.0,
                max_reconnect_failures=2, max_parse_errors_per_min=5,
            )
            stream = WebSocketStream(section, Counters())
            send, _receive = trio.open_memory_channel[TickBatch](100)
            with trio.fail_after(WAIT_S):
                try:
                    await stream.stream(send)
                except (NetworkBudgetExhausted, ParseRateExceeded) as exc:
                    return exc
        raise AssertionError("the stream ended without an error")

    assert isinstance(trio.run(scenario), NetworkBudgetExhausted | ParseRateExceeded)


@st.composite
def _hostile_replies(draw: st.DrawFn) -> bytes:
    """A reply to the upgrade request: noise, or a 101 with arbitrary header lines."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2_000))
    status = draw(st.sampled_from([b"HTTP/1.1 101 Switching Protocols", b"HTTP/1.1 200 OK",
                                   b"HTTP/1.0 101 x", b"HTTP/1.1 999 ?"]))
    headers = draw(st.lists(st.binary(max_size=80).map(lambda b: b.replace(b"\r\n", b"")),
                            max_size=8))
    if draw(st.booleans()):
        headers += [b"Upgrade: websocket", b"Connection: Upgrade"]
    end = draw(st.sampled_from([b"\r\n\r\n", b"\r\n", b""]))  # complete, or never ends
    return b"\r\n".join([status, *headers]) + end


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=_hostile_replies(), then=st.sampled_from(Then))
def test_hostile_fuzz_any_handshake_reply_is_a_failed_attempt_then_exit_10(
    reply: bytes, then: Then
) -> None:
    async def scenario() -> BaseException:
        async with open_hostile_venue([Play(reply=reply, then=then)]) as venue:
            section = _section(venue, connect_timeout_s=0.3, max_reconnect_failures=2)
            stream = WebSocketStream(section, Counters())
            send, _receive = trio.open_memory_channel[TickBatch](100)
            with trio.fail_after(WAIT_S):
                try:
                    await stream.stream(send)
                except NetworkBudgetExhausted as exc:
                    return exc
        raise AssertionError("the stream ended without an error")

    assert "2 consecutive attempts without market data" in str(trio.run(scenario))
