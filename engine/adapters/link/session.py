"""The state of one WebSocket connection, and what the link did on the wire overall.

A ``Session`` is shared by the tasks of one connection (the stream's reader
stamps frames into it, the keepalive and the stream's watchers read and write
it) and tells the reconnect loop (``link.reconnect``) how the connection ended;
``LinkStats`` accumulates over the whole run. See docs/architecture.md
"Reconnecting".
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class LinkStats:
    """What the link did on the wire since it started (beyond ``Counters``)."""

    attempts: int = 0
    sessions: int = 0
    pings: int = 0
    pongs: int = 0
    oversize_frames: int = 0
    silences: int = 0  # sessions the feed ended because no market data came (``ws.silence``)
    teardown_timeouts: int = 0  # closes cut short at ``DISCONNECT_TIMEOUT_S``


@dataclass
class Session:
    """One connection's state, shared by its reader, keepalive and watcher tasks.

    *Delivered* is the stream's word (its policy, docs/architecture.md
    "Reconnecting"): for the market feed an admitted tick, for the user stream
    the venue's confirmation of the subscription.
    """

    opened_at: float
    last_rx: float
    attempt: int = 0  # the link's attempt number (1 for the first connection)
    connected: bool = False  # the handshake completed
    last_pong: float = -math.inf
    last_delivery: float | None = None  # the last delivery (``trio.current_time()``)
    healthy_since: float | None = None  # the first delivery: the connection works
    answered: bool = False  # a frame other than an ``error`` arrived (the subscribe was taken)
    frames: int = 0
    end_reason: str | None = None
    teardown_error: str | None = None  # what closing raised after the session had ended
