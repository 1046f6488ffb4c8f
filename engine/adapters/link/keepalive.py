"""Keepalive of one WebSocket connection: ping after silence, give up without a pong (S4).

One rule for every link (the market feed's and the user stream's, each with its
own numbers: docs/architecture.md "Reconnecting"). The keepalive pings after
``keepalive_interval_s`` without a frame and forces a reconnect (it cancels the
session's scope) when no pong comes within ``pong_timeout_s``. A frame is proof
of life too, so a stream that keeps delivering is never pinged, and one that
delivers while a pong is late is not killed. A pong keeps a quiet connection
open but proves nothing about the data: only a delivery tells the reconnect
budget the connection works (the feed's silence watch,
``engine.adapters.market.ws.silence``, ends a connection that answers pings yet
delivers no market data).

The keepalive never just stops: if the ping finds the connection closing
(``ConnectionClosed``, or trio-websocket #184's ``LocalProtocolError``) it ends
the session too, so a reader left waiting on a close handshake that never
completes cannot keep the session alive with nobody watching it.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
import trio_websocket
import wsproto.utilities

from engine import logs
from engine.adapters.link.session import LinkStats, Session
from engine.adapters.progress import Progress


@dataclass(frozen=True, slots=True, kw_only=True)
class Keepalive:
    """The keepalive task of each session (``run``), with the stream's settings and stats.

    Its log lines name the stream through the stream's ``logs.bind``."""

    interval_s: float
    pong_timeout_s: float
    stats: LinkStats
    progress: Progress

    async def run(
        self,
        ws: trio_websocket.WebSocketConnection,
        session: Session,
        scope: trio.CancelScope,
    ) -> None:
        """Ping after silence; cancel the session when the pong does not come."""
        interval = self.interval_s
        pong_timeout = self.pong_timeout_s
        while True:
            quiet_since = max(session.last_rx, session.last_pong)
            wake_at = quiet_since + interval
            if trio.current_time() < wake_at:
                await trio.sleep_until(wake_at)
                continue
            sent_at = trio.current_time()
            self.stats.pings += 1
            with trio.move_on_after(pong_timeout) as timer:
                try:
                    await ws.ping()
                except (
                    trio_websocket.ConnectionClosed,
                    wsproto.utilities.LocalProtocolError,
                ) as exc:
                    # closing: end the session rather than leave the reader unwatched
                    if session.end_reason is None:
                        session.end_reason = f"closing while pinging ({type(exc).__name__})"
                    scope.cancel()
                    return
            now = trio.current_time()
            if not timer.cancelled_caught:
                self.stats.pongs += 1
                session.last_pong = now
                self.progress.bump()
                continue
            if session.last_rx > sent_at:
                continue  # frames kept arriving: alive, the pong is just queued behind them
            session.end_reason = (
                f"no pong within {pong_timeout:g}s after {interval:g}s without a frame"
            )
            logs.warning(
                "ws_pong_timeout",
                keepalive_interval_s=interval,
                pong_timeout_s=pong_timeout,
            )
            scope.cancel()
            return
