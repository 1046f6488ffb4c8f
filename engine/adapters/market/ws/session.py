"""The state of one WebSocket connection, and what the stream did on the wire overall.

A ``Session`` is shared by the tasks of one connection (the reader stamps
frames into it, the keepalive reads and writes it) and tells the reconnect
loop how the connection ended; ``LinkStats`` accumulates over the whole run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class LinkStats:
    """What the stream did on the wire since it started (beyond ``Counters``)."""

    attempts: int = 0
    sessions: int = 0
    pings: int = 0
    pongs: int = 0
    oversize_frames: int = 0
    silences: int = 0  # sessions ended because no market data came (``ws.silence``)
    teardown_timeouts: int = 0  # closes cut short at ``DISCONNECT_TIMEOUT_S``


@dataclass
class Session:
    """One connection's state, shared by its reader and keepalive tasks."""

    opened_at: float
    last_rx: float
    last_pong: float = -math.inf
    last_tick: float | None = None  # the last admitted tick (``trio.current_time()``)
    healthy_since: float | None = None  # the first admitted tick: the connection works
    answered: bool = False  # a frame other than an ``error`` arrived (the subscribe was taken)
    frames: int = 0
    end_reason: str | None = None
    teardown_error: str | None = None  # what closing raised after the session had ended
