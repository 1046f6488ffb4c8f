"""The two bounded waits of every WebSocket connection: the handshake and the close.

Every session of the one link (``link.reconnect``, run by the market feed and
the LIVE user stream) runs under it. Why our own scope rather than
trio-websocket's ``connect_timeout``: the library's timeout raises, then waits
for its reader task, which waits forever for a peer that accepted TCP and never
answers the upgrade. One cancel scope around ``open_websocket_url`` carries the
handshake deadline, is lifted once connected, and carries the close deadline once
our side of the connection is done (the session sets it before it leaves the block).
"""

from __future__ import annotations

import math

import trio


class ConnectionDeadlines:
    """One connection's cancel scope: ``with deadlines.scope:`` around the library's block."""

    def __init__(self, connect_timeout_s: float, disconnect_timeout_s: float) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.disconnect_timeout_s = disconnect_timeout_s
        self.scope = trio.CancelScope(deadline=trio.current_time() + connect_timeout_s)
        self.connected = False

    def opened(self) -> None:
        """The handshake completed: no deadline while the connection works."""
        self.connected = True
        self.scope.deadline = math.inf

    def closing(self) -> None:
        """Our side is done: the close (frame, answer, the library's reader) is bounded."""
        self.scope.deadline = trio.current_time() + self.disconnect_timeout_s

    @property
    def handshake_timed_out(self) -> bool:
        return self.scope.cancelled_caught and not self.connected

    @property
    def close_timed_out(self) -> bool:
        return self.scope.cancelled_caught and self.connected
