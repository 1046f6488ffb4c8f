"""The handshake/close deadlines every WebSocket connection runs under (link.deadlines)."""

from __future__ import annotations

import math

import trio
import trio.testing

from engine.adapters.link.deadlines import ConnectionDeadlines


async def test_handshake_deadline_cancels_a_connect_that_never_completes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines = ConnectionDeadlines(connect_timeout_s=3.0, disconnect_timeout_s=1.0)
    start = trio.current_time()
    with deadlines.scope:
        await trio.sleep_forever()
    assert deadlines.handshake_timed_out and not deadlines.close_timed_out
    assert trio.current_time() - start == 3.0


async def test_opened_lifts_the_deadline_and_closing_bounds_the_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines = ConnectionDeadlines(connect_timeout_s=3.0, disconnect_timeout_s=1.0)
    with deadlines.scope:
        deadlines.opened()
        assert deadlines.scope.deadline == math.inf
        await trio.sleep(100.0)  # a working connection outlives the handshake bound
        closing_at = trio.current_time()
        deadlines.closing()
        await trio.sleep_forever()  # a peer that never answers our close
    assert deadlines.close_timed_out and not deadlines.handshake_timed_out
    assert trio.current_time() - closing_at == 1.0


async def test_neither_timed_out_when_the_block_ends_in_time() -> None:
    deadlines = ConnectionDeadlines(connect_timeout_s=3.0, disconnect_timeout_s=1.0)
    with deadlines.scope:
        deadlines.opened()
        deadlines.closing()
    assert not deadlines.handshake_timed_out and not deadlines.close_timed_out
