"""Keepalive (S4) against the fake exchange: quiet is fine, deaf is not, busy is never pinged dead.

Real sockets, so real (short) timeouts: a keepalive interval of tens of
milliseconds, pong timeouts well above any scheduling hiccup.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
import trio_websocket

from engine.adapters.link.keepalive import Keepalive
from engine.adapters.link.session import LinkStats
from engine.adapters.link.session import Session as LinkSession
from engine.adapters.market.ws.stream import WebSocketStream
from engine.adapters.progress import Progress
from engine.counters import Counters
from engine.exits import NetworkBudgetExhausted
from engine.logs import Captured
from engine.ports import TickBatch
from tests.fakes.fake_exchange import (
    WAIT_S,
    End,
    Session,
    binance_tape,
    ingest_section,
    open_fake_exchange,
    running_stream,
    take,
    until,
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def test_keepalive_silent_feed_answering_pings_keeps_connection() -> None:
    async with open_fake_exchange("binance", [Session(frames=5, then=End.HOLD)]) as fake:
        section = ingest_section(fake, keepalive_interval_s=0.02, pong_timeout_s=1.0)
        async with running_stream(section) as (stream, receive):
            await take(receive, 5)
            await until(stream.progress, lambda: stream.stats.pongs >= 5)
            assert stream.counters.connected == 1
    assert fake.handshakes == 1
    assert stream.counters.reconnects == 0
    assert stream.stats.pings >= 5


async def test_keepalive_quiet_feed_answering_pings_proves_nothing_budget_spent(
    log_lines: Captured,
) -> None:
    # Pongs keep a quiet connection open, but they are no market data: the silence
    # watch replaces the connection and the budget runs out (exit 10), however
    # promptly the venue answers pings.
    async with open_fake_exchange("binance", [Session(frames=0, then=End.HOLD)]) as fake:
        section = ingest_section(
            fake, keepalive_interval_s=0.02, pong_timeout_s=1.0, max_downtime_s=0.5
        )
        stream = WebSocketStream(section, Counters())
        send, _receive = trio.open_memory_channel[TickBatch](10)
        with trio.fail_after(WAIT_S), pytest.raises(NetworkBudgetExhausted) as raised:
            await stream.stream(send)
    assert "no market data for" in str(raised.value)
    assert stream.stats.pongs >= 1
    assert stream.stats.silences >= 1
    lost = log_lines.events("ws_disconnected")
    assert lost and all(e["reason"].startswith("no market data for") for e in lost)
    assert not any(e["worked"] for e in lost)
    assert log_lines.events("ws_no_market_data")


async def test_keepalive_silent_and_deaf_feed_forces_reconnect(log_lines: Captured) -> None:
    sessions = [Session(frames=5, then=End.DEAF), Session(frames=5)]
    async with open_fake_exchange("binance", sessions) as fake:
        section = ingest_section(fake, keepalive_interval_s=0.02, pong_timeout_s=0.2)
        async with running_stream(section) as (stream, receive):
            ticks = await take(receive, 10)
    assert [t.trade_id for t in ticks] == [f.trade_id for f in binance_tape()[:10]]
    assert fake.accepted == 2
    assert stream.counters.reconnects == 1
    assert len(log_lines.events("ws_pong_timeout")) == 1
    [lost] = log_lines.events("ws_disconnected")
    assert lost["reason"].startswith("no pong within 0.2s")
    assert lost["worked"] is True


async def test_keepalive_feed_that_keeps_delivering_never_pinged_to_death() -> None:
    # The peer never answers a ping, but it keeps sending: every frame is proof of
    # life, so a late pong must not tear the connection down.
    sessions = [Session(frames=25, pace_s=0.01, deaf=True, then=End.HOLD)]
    async with open_fake_exchange("binance", sessions) as fake:
        section = ingest_section(fake, keepalive_interval_s=0.002, pong_timeout_s=1.0)
        async with running_stream(section) as (stream, receive):
            ticks = await take(receive, 25)
    assert len(ticks) == 25
    assert fake.handshakes == 1
    assert stream.counters.reconnects == 0
    assert stream.stats.pings >= 1
    assert stream.stats.pongs == 0


async def test_keepalive_server_pings_while_we_close_survives_issue_184(
    log_lines: Captured,
) -> None:
    # trio-websocket #184: after our pong timeout we close; a ping from the server
    # arriving while we close makes the library try to pong in CLOSING state and
    # raise LocalProtocolError. The session must end like any other loss.
    sessions = [Session(frames=5, then=End.DEAF, ping_every_s=0.005), Session(frames=5)]
    async with open_fake_exchange("binance", sessions) as fake:
        section = ingest_section(fake, keepalive_interval_s=0.02, pong_timeout_s=0.1)
        async with running_stream(section) as (stream, receive):
            ticks = await take(receive, 10)
    assert len({t.event_id for t in ticks}) == 10
    assert stream.counters.reconnects == 1
    [lost] = log_lines.events("ws_disconnected")
    assert lost["reason"].startswith("no pong within")
    assert "LocalProtocolError" in (lost["teardown_error"] or "")


class _ClosingSocket:
    """A connection already closing: every ping raises ``ConnectionClosed``."""

    async def ping(self) -> None:
        raise trio_websocket.ConnectionClosed(None)


async def test_keepalive_ping_finds_connection_closing_ends_the_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Before issue 10 the keepalive just returned here, leaving a reader stuck on a
    # close that never completes with nobody watching the session.
    keepalive = Keepalive(interval_s=5.0, pong_timeout_s=2.0, stats=LinkStats(),
                          progress=Progress())
    session = LinkSession(opened_at=trio.current_time(), last_rx=trio.current_time())
    with trio.CancelScope() as scope:
        await keepalive.run(_ClosingSocket(), session, scope)  # type: ignore[arg-type]
    assert scope.cancel_called
    assert session.end_reason == "closing while pinging (ConnectionClosed)"
    assert keepalive.stats.pings == 1
