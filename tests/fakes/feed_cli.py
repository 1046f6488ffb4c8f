"""Driving a real engine process against the fake exchange: its config, its log, its end.

Shared by the subprocess tests of the market feed (``tests/e2e/test_ws_feed.py``,
``tests/e2e/test_hostile_venue.py``, ``tests/adapters/market/test_admission_live.py``)
and ``bench/hostile_venues.py``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from tests.fakes.engine_process import EngineProcess, LogLine
from tests.fakes.fake_exchange import Endpoint

WAIT_S = 60.0


def write_config(tmp_path: Path, fake: Endpoint, strategy: str = "", **ingest: Any) -> Path:
    values: dict[str, Any] = {
        "source": "websocket",
        "venue": fake.venue,
        "url": fake.url,
        "symbols": ["BTCUSDT"],
        "connect_timeout_s": 2.0,
        "keepalive_interval_s": 5.0,
        "pong_timeout_s": 2.0,
        "initial_backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "max_reconnect_failures": 10,
        "max_downtime_s": 60.0,
        "max_parse_errors_per_min": 1000,
    }
    values.update(ingest)
    lines = [
        "[engine]",
        f'db_path = "{tmp_path / "engine.db"}"',
        "heartbeat_interval_s = 0.05",
        "drain_timeout_s = 10.0",
        "[ingest]",
    ]
    for key, value in values.items():
        if isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, list):
            lines.append(f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]")
        else:
            lines.append(f"{key} = {value}")
    path = tmp_path / "engine.toml"
    path.write_text("\n".join(lines) + "\n" + strategy)
    return path


async def wait_log(engine: EngineProcess, predicate: Callable[[LogLine], bool]) -> LogLine:
    return await trio.to_thread.run_sync(engine.wait_for, predicate, WAIT_S)


async def finish(engine: EngineProcess) -> int:
    try:
        return await trio.to_thread.run_sync(engine.finish, WAIT_S)
    finally:
        engine.kill()


async def interrupt_after(engine: EngineProcess, *seen: Callable[[LogLine], bool]) -> int:
    """Wait for a log line matching each of ``seen`` in turn, send SIGINT; the exit code.

    The process is reaped (killed at worst) whether or not the lines came.
    """
    try:
        for predicate in seen:
            await wait_log(engine, predicate)
        engine.send_signal(signal.SIGINT)
    finally:
        code = await finish(engine)
    return code


def final_heartbeat(engine: EngineProcess) -> LogLine:
    return [h for h in engine.events("heartbeat") if h.get("final")][-1]
