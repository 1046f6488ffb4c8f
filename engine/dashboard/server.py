"""Serve the dashboard app with Hypercorn's Trio worker until SIGINT/SIGTERM.

Binds to loopback unless told otherwise: the dashboard has no authentication,
so exposing it is an explicit operator decision (``--host 0.0.0.0``).
"""

from __future__ import annotations

import signal
from functools import partial
from typing import Final, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import Framework

from engine import logs
from engine.dashboard import DEFAULT_HOST, DEFAULT_PORT
from engine.dashboard.app import allowed_hosts, build_app

GRACEFUL_TIMEOUT_S: Final = 3.0
"""In-flight requests get this long to finish after a stop signal; then they are cancelled."""

KEEP_ALIVE_TIMEOUT_S: Final = 10.0
"""Idle keep-alive connections are closed after this (the page polls every 2 s)."""


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
    app = build_app(db_path, hosts=allowed_hosts(host, extra_hosts))
    config = hypercorn_config(host, port)

    async def run(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await hypercorn_serve(
            cast(Framework, app), config, shutdown_trigger=_stop_signal, task_status=task_status
        )

    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(run)
        logs.info("dashboard_listening", urls=urls, db_path=db_path, read_only=True,
                  hosts=allowed_hosts(host, extra_hosts))
        task_status.started(urls)


def main(db_path: str, host: str, port: int, extra_hosts: tuple[str, ...] = ()) -> int:
    """Run the dashboard process; 0 after a clean stop."""
    trio.run(partial(serve, extra_hosts=extra_hosts), db_path, host, port)
    logs.info("dashboard_stopped")
    return 0
