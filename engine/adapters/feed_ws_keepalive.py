"""Keepalive of one WebSocket connection: ping after silence, give up without a pong (S4).

The keepalive pings after ``keepalive_interval_s`` without a frame and forces a
reconnect (it cancels the session's scope) when no pong comes within
``pong_timeout_s``. A frame is proof of life too, so a feed that keeps
delivering is never pinged, and one that delivers while a pong is late is not
killed. A pong is also proof that a quiet connection works (the reconnect
budget is told it is healthy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio
import trio_websocket
import wsproto.utilities

from engine import logs
from engine.adapters.feed_ws_session import LinkStats, Session
from engine.adapters.progress import Progress


@dataclass(frozen=True, slots=True, kw_only=True)
class Keepalive:
    """The keepalive task of each session (``run``), with the stream's settings and stats."""

    venue: str
    interval_s: float
    pong_timeout_s: float
    stats: LinkStats
    progress: Progress
    on_healthy: Callable[[Session, float], None]
    """Called with the session and ``trio.current_time()`` on its first pong (before any frame)."""

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
                except (trio_websocket.ConnectionClosed, wsproto.utilities.LocalProtocolError):
                    return  # closing: the reader sees the close and ends the session
            now = trio.current_time()
            if not timer.cancelled_caught:
                self.stats.pongs += 1
                session.last_pong = now
                if session.healthy_since is None:
                    self.on_healthy(session, now)
                self.progress.bump()
                continue
            if session.last_rx > sent_at:
                continue  # frames kept arriving: alive, the pong is just queued behind them
            session.end_reason = (
                f"no pong within {pong_timeout:g}s after {interval:g}s without a frame"
            )
            logs.warning(
                "ws_pong_timeout",
                venue=self.venue,
                keepalive_interval_s=interval,
                pong_timeout_s=pong_timeout,
            )
            scope.cancel()
            return
