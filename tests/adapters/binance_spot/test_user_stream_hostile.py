"""The LIVE user stream against a hostile venue.

A peer that answers the subscribe, then breaks RFC 6455 (a text frame with
invalid UTF-8, a 200-byte ping) and keeps TCP open: the user stream does not
stall on the close (its ``ConnectionClosed`` leaves trio-websocket's block as an
error, which cancels the library's reader task) -- the loss is recorded and the
stream subscribes again. A malformed handshake reply is a lost connection (exit 10
when it persists), not a crash (exit 1).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio

from engine.adapters.binance_spot.user_stream import StreamPolicy, run_user_stream
from engine.core.events import FailureKind, VenueFailure
from engine.exits import NetworkBudgetExhausted
from engine.logs import Captured
from tests.fakes.hostile_venue import Handshake, Play, open_hostile_venue, ping_frame, text_frame
from tests.fakes.user_stream import FAST, GUARD_S, Stream, credentials, wall_ms
from tests.fakes.user_stream import stream as stream  # noqa: PLC0414 -- the fixture

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def _started(stream: Stream, nursery: trio.Nursery, url: str, policy: StreamPolicy) -> None:
    """The user stream running against ``url``, once subscribed and reconciled."""
    await nursery.start(
        lambda task_status: run_user_stream(
            stream.live, stream.send, url=url, credentials=credentials(), wall_ms=wall_ms,
            policy=policy, task_status=task_status,
        )
    )  # fmt: skip


def _subscribed(attempt: int) -> bytes:
    return text_frame(f'{{"id":"sub-{attempt}","status":200,"result":{{}}}}')


@pytest.mark.parametrize(
    "violation",
    [text_frame(b'{"subscriptionId":1,"event":{"e":"\xff"}}'), ping_frame(b"p" * 200)],
    ids=["invalid-utf8", "ping-200-bytes"],
)
async def test_user_stream_protocol_violation_then_held_tcp_reconnects(
    stream: Stream, nursery: trio.Nursery, violation: bytes
) -> None:
    plays = [
        Play(await_subscribe=True, frames=(_subscribed(1), violation)),
        Play(await_subscribe=True, frames=(_subscribed(2),)),
    ]
    async with open_hostile_venue(plays) as venue:
        with trio.fail_after(GUARD_S):
            await _started(stream, nursery, venue.url, FAST)
            lost = await stream.records_until(VenueFailure)
            await venue.progress.wait_until(lambda: venue.connections == 2)
    [failure] = [r for r in lost if isinstance(r, VenueFailure)]
    assert failure.kind is FailureKind.NETWORK
    assert failure.message == "user stream lost: ConnectionClosed"


async def _budget_spent(stream: Stream, play: Play, policy: StreamPolicy = FAST) -> int:
    """Run the user stream against ``play`` (every connection) until exit 10; connections."""
    async with open_hostile_venue([play]) as venue:
        with trio.fail_after(GUARD_S), pytest.raises(NetworkBudgetExhausted):
            await run_user_stream(
                stream.live, stream.send, url=venue.url, credentials=credentials(),
                wall_ms=wall_ms, policy=policy,
            )  # fmt: skip
    return venue.connections


async def test_user_stream_bad_handshake_forever_is_network_exit_not_crash(
    stream: Stream,
) -> None:
    assert await _budget_spent(stream, Play(handshake=Handshake.BAD_ACCEPT)) == FAST.max_failures


async def test_user_stream_venue_that_never_answers_the_upgrade_is_bounded(
    stream: Stream,
) -> None:
    # TCP accepted, the upgrade request read, no reply ever: trio-websocket's own
    # connect timeout then waits for its reader task forever
    policy = replace(FAST, connect_timeout_s=0.2)
    assert await _budget_spent(stream, Play(reply=b""), policy) == FAST.max_failures
    failures = [stream.receive.receive_nowait()[0] for _ in range(FAST.max_failures)]
    assert all(
        isinstance(f, VenueFailure) and "no handshake reply within 0.2 s" in f.message
        for f in failures
    )


async def test_user_stream_deaf_after_subscribing_is_lost_by_the_links_keepalive(
    stream: Stream, nursery: trio.Nursery, log_lines: Captured
) -> None:
    # The raw venue never answers a ping: the user stream's keepalive is the feed's
    # rule (ping after keepalive_s without a frame, no pong within pong_timeout_s is
    # a lost connection), with the user stream's numbers; the loss is persisted.
    plays = [
        Play(await_subscribe=True, frames=(_subscribed(1),)),
        Play(await_subscribe=True, frames=(_subscribed(2),)),
    ]
    policy = replace(FAST, keepalive_s=0.05, pong_timeout_s=0.2)
    async with open_hostile_venue(plays) as venue:
        with trio.fail_after(GUARD_S):
            await _started(stream, nursery, venue.url, policy)
            lost = await stream.records_until(VenueFailure)
            await venue.progress.wait_until(lambda: venue.connections == 2)
    [failure] = [r for r in lost if isinstance(r, VenueFailure)]
    assert failure.message == "user stream lost: no pong within 0.2s after 0.05s without a frame"
    # (the second connection may end too while the venue closes: judge the first)
    timeouts = log_lines.events("ws_pong_timeout")
    assert timeouts and all(e["link"] == "user_stream" for e in timeouts)
    first = log_lines.events("ws_disconnected")[0]
    assert first["link"] == "user_stream" and first["worked"] is True
    assert first["reason"] == failure.message.removeprefix("user stream lost: ")
