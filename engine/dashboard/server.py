"""Serve the dashboard app with Hypercorn's Trio worker until SIGINT/SIGTERM.

Binds to loopback unless told otherwise: the dashboard has no authentication,
so exposing it is an explicit operator decision (``--host 0.0.0.0``).

*Error handling:* an address that cannot be listened on is configuration no
restart can fix -- exit 12 with one line naming ``--host`` or ``--port``
(``ConfigError``), never a traceback: a dotted number that is no IPv4 address
(``256.1.1.1``), a name that does not resolve within ``RESOLVE_TIMEOUT_S``
(``nonexistent.invalid``), an address of another machine, a port in use or
one that needs privileges. Hypercorn is handed the resolved address, so it
never resolves a name itself (its ``bind`` would wait on DNS unbounded).
"""

from __future__ import annotations

import errno
import ipaddress
import re
import signal
import socket
from functools import partial
from typing import Final, TypeVar, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import Framework

from engine import logs
from engine.dashboard.app import allowed_hosts, build_app
from engine.exits import ConfigError

DEFAULT_HOST: Final = "127.0.0.1"
"""Loopback: the dashboard has no authentication, so exposing it is an explicit choice."""


DEFAULT_PORT: Final = 8080


GRACEFUL_TIMEOUT_S: Final = 3.0
"""In-flight requests get this long to finish after a stop signal; then they are cancelled."""

KEEP_ALIVE_TIMEOUT_S: Final = 10.0
"""Idle keep-alive connections are closed after this (the page polls every 2 s)."""

E = TypeVar("E", bound=BaseException)

RESOLVE_TIMEOUT_S: Final = 5.0
"""Longest wait for ``--host`` to resolve (DNS); then it is refused (exit 12)."""

_DOTTED_NUMBER: Final = re.compile(r"[0-9.]+")


async def resolve_host(host: str, port: int) -> str:
    """The IP address to bind for ``--host`` (a literal is returned as given).

    *Error handling:* ``ConfigError`` naming ``--host`` (see the module docstring).
    """
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return host
    if _DOTTED_NUMBER.fullmatch(host):
        raise ConfigError(f"--host: {host} is not an IPv4 address")
    infos: list[tuple[object, ...]] = []
    with trio.move_on_after(RESOLVE_TIMEOUT_S):
        try:
            infos = list(await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:  # gaierror; UnicodeError: a label too long
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise ConfigError(f"--host: cannot resolve {host!r} ({reason})") from None
    if not infos:
        raise ConfigError(f"--host: {host!r} did not resolve within {RESOLVE_TIMEOUT_S:g} s")
    sockaddr = infos[0][4]
    assert isinstance(sockaddr, tuple)
    return str(sockaddr[0])


def bind_refusal(exc: OSError, host: str, port: int) -> ConfigError:
    """One line naming the argument that made listening fail."""
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"--port: {port} is already in use on {host}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"--host: {host} is not an address of this machine")
    if exc.errno == errno.EACCES:
        return ConfigError(f"--port: listening on {port} needs privileges")
    return ConfigError(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror or exc})")


def hypercorn_config(host: str, port: int) -> HypercornConfig:
    config = HypercornConfig()
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    config.bind = [f"{bind_host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
    return config


async def _stop_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logs.info("dashboard_stopping", signal=signal.Signals(signum).name)
            return


async def serve(
    db_path: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    extra_hosts: tuple[str, ...] = (),
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGINT/SIGTERM; ``task_status.started`` gets the bound URLs.

    *Resource handling:* the listening socket is closed when this returns.
    """
    address = await resolve_host(host, port)
    app = build_app(db_path, hosts=allowed_hosts(host, extra_hosts))
    config = hypercorn_config(address, port)

    async def run(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await hypercorn_serve(
            cast(Framework, app), config, shutdown_trigger=_stop_signal, task_status=task_status
        )

    async with trio.open_nursery() as nursery:
        try:
            urls: list[str] = await nursery.start(run)
        except BaseExceptionGroup as group:  # raised while binding: nothing was served yet
            failed = _first(group, OSError)
            if failed is None:
                raise
            raise bind_refusal(failed, host, port) from None
        except OSError as exc:
            raise bind_refusal(exc, host, port) from None
        logs.info("dashboard_listening", urls=urls, db_path=db_path, read_only=True,
                  hosts=allowed_hosts(host, extra_hosts))
        task_status.started(urls)


def _first(group: BaseExceptionGroup, kind: type[E]) -> E | None:
    """The first leaf of ``group`` (nested groups walked) that is a ``kind``."""
    matched = group.subgroup(kind)
    leaf: BaseException | None = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, kind) else None


def main(db_path: str, host: str, port: int, extra_hosts: tuple[str, ...] = ()) -> int:
    """Run the dashboard process; 0 after a clean stop.

    *Error handling:* ``ConfigError`` (exit 12) when ``host``/``port`` cannot be listened on.
    """
    try:
        trio.run(partial(serve, extra_hosts=extra_hosts), db_path, host, port)
    except BaseExceptionGroup as group:  # the nursery wraps the refusal
        refusal = _first(group, ConfigError)
        if refusal is None:
            raise
        raise refusal from None
    logs.info("dashboard_stopped")
    return 0
