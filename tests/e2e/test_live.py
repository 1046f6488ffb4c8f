"""LIVE end to end: ``hybrid-engine run --arm-live`` in a real subprocess against the fakes.

Only local fakes on 127.0.0.1 are ever reached: the fake Binance venue (signed
REST + WebSocket-API user stream, ``tests/fakes/fake_binance_rest``) and a tiny
market-data server speaking Binance's combined trade stream, both in the
test's Trio loop, so the test decides exactly when each trade prints. The
proof bundle is written directly with ``engine.proof.evidence`` for the current code and
this configuration (the gate checks it like any other; the checks themselves
are not re-run here).

With ``fast = 1``, ``slow = 2`` and one-trade bars, a rise is an UP regime and
a fall DOWN, so the trades DOWN UP DOWN | UP | DOWN | UP give: no signal (first
regime), SELL (vetoed: nothing held), BUY, SELL, BUY. The venue fills the first
two orders and lets the third rest; SIGINT must cancel it at the venue.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from engine.adapters.binance_spot.signing import client_order_id
from engine.config.load import load_config
from engine.proof import evidence
from tests.fakes.engine_process import EngineProcess, LogLine, run_engine
from tests.fakes.fake_binance_rest import API_KEY, API_SECRET, Behaviour, FakeBinance

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::ResourceWarning")]

WAIT_S = 60.0
CREDENTIALS = {"BINANCE_API_KEY": API_KEY, "BINANCE_API_SECRET": API_SECRET}
UP, DOWN = "50010.00", "50000.00"


class MarketFeed:
    """Binance ``btcusdt@trade`` frames, sent when the test says so (one client)."""

    def __init__(self) -> None:
        self.port = 0
        self.connected = trio.Event()
        self.connections = 0
        self.trade_id = 100
        self._send, self._receive = trio.open_memory_channel[str](64)

    async def serve(self, nursery: trio.Nursery) -> None:
        server = await nursery.start(serve_websocket, self._handle, "127.0.0.1", 0, None)
        self.port = server.port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        self.connections += 1
        self.connected.set()
        try:
            async for frame in self._receive:
                await ws.send_message(frame)
        except ConnectionClosed:
            pass

    async def trade(self, price: str) -> str:
        """Print one trade now; return the order id a signal on it would get."""
        self.trade_id += 1
        now_ms = time.time_ns() // 1_000_000
        data = {
            "e": "trade", "E": now_ms, "s": "BTCUSDT", "t": self.trade_id, "p": price,
            "q": "0.01000000", "T": now_ms, "m": False, "M": True,
        }  # fmt: skip
        await self._send.send(json.dumps({"stream": "btcusdt@trade", "data": data}))
        return f"ord:sig:binance:BTCUSDT:{self.trade_id}"


def write_config(tmp_path: Path, feed: MarketFeed, venue: FakeBinance) -> Path:
    path = tmp_path / "live.toml"
    path.write_text(
        f"""
[engine]
mode = "live"
db_path = "{tmp_path / "engine.db"}"
proof_path = "{tmp_path / "proof.json"}"
drain_timeout_s = 10.0
heartbeat_interval_s = 1.0

[ingest]
source = "websocket"
venue = "binance"
url = "{feed.url}"
symbols = ["BTCUSDT"]

[strategy]
fast = 1
slow = 2
bar_seconds = 0

[live]
rest_url = "{venue.rest_url}"
ws_url = "{venue.ws_url}"
"""
    )
    return path


def write_bundle(config_path: Path, proof_path: Path) -> None:
    """A valid bundle for the running code and this config (as ``proof`` would write it)."""
    bundle = evidence.build_bundle(
        checks=[
            evidence.CheckResult(name=name, status=evidence.CheckStatus.PASS, duration_s=0.0)
            for name in evidence.REQUIRED_CHECKS
        ],
        created_at_ns=time.time_ns(),
        engine_version=evidence.engine_version(),
        code_hash=evidence.code_hash(),
        config=load_config(config_path, environ={}),
    )
    evidence.write_bundle(bundle, proof_path)


async def wait_log(engine: EngineProcess, predicate: Callable[[LogLine], bool]) -> LogLine:
    return await trio.to_thread.run_sync(engine.wait_for, predicate, WAIT_S)


def is_event(name: str, **fields: Any) -> Callable[[LogLine], bool]:
    return lambda line: (
        line.get("event") == name and all(line.get(k) == v for k, v in fields.items())
    )


async def test_live_run_trades_on_the_fake_venue_and_sigint_cancels_resting(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    venue, feed = FakeBinance(), MarketFeed()
    await venue.serve(nursery)
    await feed.serve(nursery)
    venue.new_order_plan.extend([Behaviour.FILL, Behaviour.FILL, Behaviour.ACCEPT])
    config = write_config(tmp_path, feed, venue)
    write_bundle(config, tmp_path / "proof.json")

    engine = EngineProcess(["run", "--config", str(config), "--arm-live"], env=CREDENTIALS)
    try:
        await wait_log(engine, is_event("live_gate_passed"))
        await wait_log(engine, is_event("pipeline_started", mode="live"))
        with trio.fail_after(WAIT_S):
            await feed.connected.wait()
        for price in (DOWN, UP, DOWN):
            await feed.trade(price)
        buy1 = await feed.trade(UP)
        await wait_log(engine, is_event("live_fill", order_id=buy1))
        sell1 = await feed.trade(DOWN)
        await wait_log(engine, is_event("live_fill", order_id=sell1))
        buy2 = await feed.trade(UP)
        await wait_log(engine, is_event("live_order_event", order_id=buy2, state="ACCEPTED"))
        engine.send_signal(signal.SIGINT)
        code = await trio.to_thread.run_sync(engine.finish, WAIT_S)
    finally:
        engine.kill()
    assert code == 0, engine.lines[-5:]

    # Orders reached the venue with our deterministic client ids, once each.
    assert list(venue.orders) == [client_order_id(o) for o in (buy1, sell1, buy2)]
    assert [p.params["newClientOrderId"] for p in venue.new_order_posts()] == list(venue.orders)
    assert [o.status for o in venue.orders.values()] == ["FILLED", "FILLED", "CANCELED"]
    assert engine.events("live_drain_cancelling")[0]["orders"] == [buy2]
    assert engine.events("clean_shutdown")
    # Fills persisted, transitions persisted, conservation holds.
    db = tmp_path / "engine.db"
    with sqlite3.connect(db) as conn:
        fills = conn.execute("SELECT order_id FROM fills ORDER BY rowid").fetchall()
        last = dict(
            conn.execute(
                "SELECT order_id, state FROM order_events e WHERE seq = "
                "(SELECT MAX(seq) FROM order_events WHERE order_id = e.order_id)"
            ).fetchall()
        )
    assert fills == [(buy1,), (sell1,)]
    assert last == {buy1: "FILLED", sell1: "FILLED", buy2: "CANCELED"}
    report = await trio.to_thread.run_sync(
        lambda: run_engine(["report", "--db", str(db), "--json"], timeout=WAIT_S)
    )
    assert report.returncode == 0, report.stdout + report.stderr
    figures = json.loads(report.stdout)
    assert figures["ok"] is True
    assert figures["fills"] == 2
    # Secrets never reach the logs.
    assert API_SECRET not in json.dumps(engine.lines)


async def test_live_run_without_a_bundle_exits_12_and_sends_nothing(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    venue, feed = FakeBinance(), MarketFeed()
    await venue.serve(nursery)
    await feed.serve(nursery)
    config = write_config(tmp_path, feed, venue)  # no proof.json written

    done = await trio.to_thread.run_sync(
        lambda: run_engine(
            ["run", "--config", str(config), "--arm-live"], env=CREDENTIALS, timeout=WAIT_S
        )
    )
    assert done.returncode == 12, done.stdout + done.stderr
    assert '"condition":"bundle_present"' in done.stdout.replace(" ", "")
    assert venue.requests == [] and not venue.subscribed.is_set()
    assert feed.connections == 0
    assert not (tmp_path / "engine.db").exists()
