"""The systemd notify protocol: a few datagrams to ``$NOTIFY_SOCKET``.

``Type=notify`` units learn the service's state from us: ``READY=1`` once the
database is migrated and the pipeline started, ``STATUS=...`` with the key
counters, ``WATCHDOG=1`` only while the pipeline makes progress (so a stuck
engine misses its pings and systemd restarts it), ``STOPPING=1`` at the drain.

The protocol is one ``AF_UNIX``/``SOCK_DGRAM`` ``sendto`` per message (see
sd_notify(3)); a leading ``@`` in the socket path names Linux's abstract
namespace. The ``sdnotify`` package is unmaintained and ``systemd-python``
needs a C toolchain, so this is written out here.

Error handling: notifying is advisory. A send that fails never raises into the
engine: the first failure is logged as a warning and later ones are counted
silently (``failures``), so a missing or full socket cannot take the engine down
or flood the journal. Without ``NOTIFY_SOCKET`` every method is a no-op.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Final

from engine import logs

MAX_STATUS_CHARS: Final = 1024
"""``STATUS=`` text is cut to this length: it is one line in ``systemctl status``,
and a datagram must stay far below the socket's buffer size. Longer text is truncated."""

NOTIFY_SOCKET_ENV: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV: Final = "WATCHDOG_USEC"
WATCHDOG_PID_ENV: Final = "WATCHDOG_PID"


def _address(path: str) -> str | bytes:
    """``@name`` is the abstract socket ``\\0name``; anything else is a filesystem path."""
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, as sd_watchdog_enabled(3) recommends.

    ``WATCHDOG_PID``, when set, must be ours: a watchdog meant for a parent
    process does not apply to this one.
    """
    raw = environ.get(WATCHDOG_USEC_ENV, "").strip()
    if not raw:
        return None
    pid = environ.get(WATCHDOG_PID_ENV, "").strip()
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000


class Notifier:
    """Sends notify messages to one socket, or does nothing when there is none.

    Resource handling: the datagram socket is opened lazily on the first send
    and kept; ``close()`` releases it (also safe on a no-op notifier).
    """

    def __init__(self, address: str | bytes | None, watchdog_interval_s: float | None = None):
        self._address = address
        self._watchdog_interval_s = watchdog_interval_s
        self._sock: socket.socket | None = None
        self._warned = False
        self.failures = 0
        self.sent = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET`` (no-op when unset) and ``$WATCHDOG_USEC``."""
        path = environ.get(NOTIFY_SOCKET_ENV, "")
        address = _address(path) if path else None
        return cls(address, _watchdog_interval(environ) if address is not None else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half of ``WATCHDOG_USEC``; ``None`` when no watchdog is set."""
        return self._watchdog_interval_s

    def ready(self) -> None:
        self.notify("READY=1")

    def status(self, text: str) -> None:
        # One line: a newline would start a new (bogus) assignment.
        line = " ".join(text.split())[:MAX_STATUS_CHARS]
        self.notify(f"STATUS={line}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def notify(self, message: str) -> bool:
        """Send one datagram; ``True`` when it left, ``False`` (never an exception) otherwise."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            self.failures += 1
            if not self._warned:
                self._warned = True
                logs.warning(
                    "sd_notify_failed",
                    message=message.split("=", 1)[0],
                    error=f"{type(exc).__name__}: {exc}",
                    note="further notify failures are not logged",
                )
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
