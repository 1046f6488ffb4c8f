"""Helpers shared by the dashboard, metrics and health tests (not a test module).

* ``replay_database`` runs the real replay (``python -m engine replay``) of the
  bundled Binance capture into a database in a fresh process;
* ``live_copy`` copies such a database and records a *running* engine in it
  (a run that has not ended, with a fresh heartbeat), through the store API;
* ``asgi_get`` calls an ASGI app in-process, as a server would, without a
  network or an HTTP client library;
* ``serve_dashboard`` runs the real Hypercorn server on 127.0.0.1, port 0.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from hypercorn.trio import serve

from engine.counters import Counters
from engine.dashboard.app import build_app
from engine.dashboard.server import hypercorn_config
from engine.store.sqlite_store import SqliteStore
from tests.fakes.engine_process import REAL_CAPTURE, run_engine


def replay_database(path: Path, env: dict[str, str] | None = None) -> Path:
    """Replay the real capture into ``path`` in a fresh process (with ``env``'s
    ``ENGINE_*`` overrides); return ``path``."""
    result = run_engine(["replay", str(REAL_CAPTURE), "--db", str(path)], env=env)
    if result.returncode != 0:
        raise AssertionError(f"replay failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return path


def live_copy(source: Path, target: Path, *, heartbeat_age_s: float = 1.0,
              interval_s: float = 10.0, counters: dict[str, int] | None = None) -> str:
    """Copy ``source`` and record a running engine in the copy; return its run id.

    The run has not ended and its last heartbeat was written ``heartbeat_age_s``
    ago (wall clock), so the copy looks like an engine that is up.
    """
    shutil.copyfile(source, target)
    store = SqliteStore.open(target)
    try:
        now = time.time_ns()
        run_id = f"run-live-{now}"
        store.start_run(run_id, os.getpid(), "run", "shadow", now - 60 * 10**9, "test",
                        json.dumps({"engine": {"heartbeat_interval_s": interval_s},
                                    "strategy": {"fast": 5, "slow": 20, "bar_seconds": 1}}))
        snapshot = counters or Counters(tick_count=100, persist_count=100).snapshot()
        older = dict(snapshot, tick_count=snapshot["tick_count"] - 50)
        store.write_heartbeat(run_id, now - int((heartbeat_age_s + interval_s) * 1e9), interval_s,
                              older, False, "shadow", "ACTIVE")
        store.write_heartbeat(run_id, now - int(heartbeat_age_s * 1e9), interval_s, snapshot,
                              False, "shadow", "ACTIVE")
    finally:
        store.close()
    return run_id


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


async def asgi_get(app: Any, path: str, query: str = "", method: str = "GET",
                   host: str | None = "127.0.0.1") -> Reply:
    """One request through the ASGI interface; an exception raised after the response
    was sent (Starlette re-raises 500s for the server's log) is swallowed here.
    ``host`` is the ``Host:`` header (``None``: none sent)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "root_path": "",
        "headers": [] if host is None else [(b"host", host.encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
    }
    sent_request = False
    status = 0
    headers: dict[str, str] = {}
    body = bytearray()
    done = trio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.update({k.decode(): v.decode() for k, v in message["headers"]})
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    try:
        await app(scope, receive, send)
    except Exception:
        if not done.is_set():
            raise
    return Reply(status, headers, bytes(body))


async def http_get(url: str, timeout_s: float = 10.0) -> Reply:
    """A real HTTP GET (stdlib client in a worker thread)."""
    def get() -> Reply:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read())

    return await trio.to_thread.run_sync(get)


async def serve_dashboard(nursery: trio.Nursery, db_path: Path,
                          now_wall_ns: Callable[[], int] = time.time_ns) -> str:
    """Start the real Hypercorn server for ``db_path`` on 127.0.0.1:0; return its base URL."""
    app = build_app(str(db_path), now_wall_ns=now_wall_ns)
    config = hypercorn_config("127.0.0.1", 0)
    config.errorlog = None
    urls: list[str] = await nursery.start(lambda task_status: serve(app, config,
                                                                    task_status=task_status))
    return urls[0]
