"""Which exceptions out of a WebSocket session are a lost connection, and why, in words.

A session ends for many reasons -- refused, timed out, closed by the peer,
reset -- and none of them should leave the stream: each becomes the *reason*
for the next attempt (logged with it). Anything not listed here is a bug or
a stop (budget, parse rate, a closed channel) and must propagate. A stream's
policy may add its own lost errors and wording (the user stream: a refused
subscription, a malformed frame; exception type names only in what it
persists): docs/architecture.md "Reconnecting".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import h11
import trio
import trio_websocket
import wsproto.utilities

DISCONNECT_TIMEOUT_S: Final = 2.0
"""Upper bound on closing a connection: the close handshake and trio-websocket's
reader task, which otherwise waits for the peer's TCP close forever. A peer we
are leaving because it went deaf or broke the protocol (a text frame with invalid
UTF-8, a control frame above 125 bytes) will not answer; waiting longer only
delays the reconnect."""

HANDSHAKE_PROTOCOL_ERRORS: Final = (
    # A malformed reply to the opening handshake (a wrong Sec-WebSocket-Accept, a
    # 101 without Upgrade/Connection, megabytes of headers, not HTTP at all):
    # wsproto raises RemoteProtocolError inside trio-websocket's reader task, whose
    # attempt to answer it raises h11's LocalProtocolError out of open_websocket.
    h11.LocalProtocolError,
    h11.RemoteProtocolError,
    wsproto.utilities.RemoteProtocolError,
)

CONNECTION_ERRORS: Final = (
    trio_websocket.HandshakeError,  # refused, timed out, DNS/TCP/TLS failure
    trio_websocket.ConnectionClosed,  # e.g. closed while we sent the subscribe
    OSError,
    *HANDSHAKE_PROTOCOL_ERRORS,
    # trio-websocket #184: a pong sent while closing after a heartbeat timeout
    # raises LocalProtocolError out of the library's reader task.
    wsproto.utilities.LocalProtocolError,
    trio_websocket._impl.TrioWebsocketInternalError,
)


class HandshakeTimeout(Exception):
    """No handshake reply within ``connect_timeout_s``: our own deadline fired
    (``link.deadlines``), not trio-websocket's. Its text is ours, so a stream may
    persist it (the user stream does)."""


def describe(exc: BaseException) -> str:
    """A one-line reason for a lost connection."""
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return f"handshake rejected with HTTP {exc.status_code}"
    if isinstance(exc, trio_websocket.ConnectionTimeout | HandshakeTimeout):
        return "connect timed out"
    if isinstance(exc, trio_websocket.DisconnectionTimeout):
        return "closing handshake timed out"
    if isinstance(exc, trio_websocket.ConnectionClosed):
        return close_text(exc)
    if isinstance(exc, trio_websocket.HandshakeError) and exc.__cause__ is not None:
        return f"connect failed: {exc.__cause__!r}"
    if isinstance(exc, HANDSHAKE_PROTOCOL_ERRORS):
        return f"protocol error ({type(exc).__module__.split('.')[0]} {type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"


def close_text(exc: trio_websocket.ConnectionClosed) -> str:
    """The close code, its name and the peer's reason, as the log shows them."""
    reason = exc.reason
    if reason is None:
        return "connection closed"
    text = f"closed {reason.code} {reason.name}"
    return f"{text}: {reason.reason}" if reason.reason else text


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions of a (nested) group, in order; ``[exc]`` for a plain one."""
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for inner in exc.exceptions for leaf in leaves(inner)]


def connection_failure(
    exc: BaseException,
    lost: tuple[type[BaseException], ...] = CONNECTION_ERRORS,
    words: Callable[[BaseException], str] = describe,
) -> str | None:
    """A reason if ``exc`` (or every leaf of a group) is one of ``lost``, else None."""
    found = leaves(exc)
    if all(isinstance(leaf, lost) for leaf in found):
        return "; ".join(words(leaf) for leaf in found)
    return None


def stray_cancel(exc: BaseException) -> str | None:
    """A reason if ``exc`` is a ``Cancelled`` that no scope of ours asked for.

    trio-websocket #184: after a keepalive timeout we close; a ping arriving
    meanwhile makes the library's reader task try to pong in CLOSING state and
    die with ``LocalProtocolError``. That cancels the library's own nursery, and
    the ``Cancelled`` it put into the closing handshake can then escape
    ``open_websocket`` in place of the error. Let through, it would cancel
    whatever nursery it reaches next; when no enclosing scope of this task is
    cancelled it is the library's, and the session simply ended.
    """
    if not isinstance(exc, trio.Cancelled) or trio.current_effective_deadline() == -math.inf:
        return None
    hidden = exc.__context__
    return describe(hidden) if hidden is not None else "cancelled by trio-websocket"
