"""No market data, no working connection: end a session that delivers no ticks.

A connection can answer every ping and still deliver nothing: a venue that acks
the subscribe and then sends only heartbeats, a stream the venue silently
stopped, a peer stuck half-way through a close. The keepalive (S4) cannot see
that -- pongs keep coming --, so liveness is judged on *progress*: admitted
ticks. The silence watch of each session ends it (reason ``no market data for
...``, logged as ``ws_no_market_data``) at the earlier of

* ``silence_s`` (``max_downtime_s * SILENCE_FRACTION``) after the later of the
  session's opening and its last admitted tick: a fresh connection is tried
  while half of the downtime budget is still left;
* ``max_downtime_s`` after the feed's last admitted tick anywhere (or its start):
  the budget is spent, and the reconnect loop gives up with exit 10 on time
  instead of whenever the connection happens to end.

Choose ``max_downtime_s`` above the longest quiet spell of the least active
configured symbol: a symbol that does not trade for that long is, to the engine,
a feed that does not work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from engine import logs
from engine.adapters.link.session import LinkStats, Session
from engine.adapters.progress import Progress

SILENCE_FRACTION: Final = 0.5
"""A session without market data for this fraction of ``max_downtime_s`` is replaced."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SilenceWatch:
    """The silence watch task of each session (``run``), with the stream's settings.

    Its log lines name the venue through the stream's ``logs.bind``."""

    max_downtime_s: float
    stats: LinkStats
    progress: Progress

    @property
    def silence_s(self) -> float:
        return self.max_downtime_s * SILENCE_FRACTION

    def deadline(self, session: Session, feed_last_data: float) -> float:
        """When ``session`` must end unless a tick arrives first (``trio.current_time()``)."""
        if session.last_delivery is None:
            return min(session.opened_at + self.silence_s, feed_last_data + self.max_downtime_s)
        return session.last_delivery + self.silence_s

    async def run(
        self,
        session: Session,
        feed_last_data: Callable[[], float],
        scope: trio.CancelScope,
    ) -> None:
        """Sleep until the deadline; end the session if no tick moved it meanwhile."""
        while True:
            deadline = self.deadline(session, feed_last_data())
            if trio.current_time() < deadline:
                await trio.sleep_until(deadline)
                continue
            now = trio.current_time()
            quiet = now - max(session.opened_at, session.last_delivery or -float("inf"))
            session.end_reason = (
                f"no market data for {quiet:.1f}s on this connection"
                f" ({now - feed_last_data():.1f}s in all; max_downtime_s={self.max_downtime_s:g})"
            )
            self.stats.silences += 1
            logs.warning(
                "ws_no_market_data",
                quiet_s=round(quiet, 3),
                downtime_s=round(now - feed_last_data(), 3),
                frames=session.frames,
                max_downtime_s=self.max_downtime_s,
            )
            self.progress.bump()
            scope.cancel()
            return
