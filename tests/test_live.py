"""The LIVE path in-process: the real runtime and store, ``engine.runtime.live`` and the fake venue.

The fake Binance (REST + WebSocket-API user stream, ``tests/fake_binance_rest``)
runs on 127.0.0.1 in the test's Trio loop; the engine's pipeline runs in the
same loop with a real SQLite store in ``tmp_path``. Waits are on the engine's
own log lines (a ``Progress`` bumped per line), never sleeps.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from engine import logs
from engine.adapters.backoff import DEFAULT_POLICY
from engine.adapters.binance_spot.credentials import Credentials, Secret
from engine.adapters.binance_spot.signing import client_order_id
from engine.adapters.binance_spot.user_stream import StreamPolicy
from engine.adapters.market.progress import Progress
from engine.config.schema import (
    Config,
    EngineSection,
    LiveSection,
    Mode,
    StrategyChoice,
    StrategySection,
)
from engine.core.choice import build_strategy
from engine.core.events import Order, OrderEvent, OrderState, OrderType, Side, Tick, tick_id
from engine.core.execution import Execution
from engine.core.live_orders import SubmitOrder
from engine.counters import Counters
from engine.exits import ExitCode, Overload
from engine.ports import TickBatch
from engine.runtime.live import INTENT_QUEUE_BATCHES, LiveVenue
from engine.runtime.pipeline import Components, run_engine
from engine.runtime.sdnotify import Notifier
from engine.runtime.state import RunState
from engine.store.report import build_report
from engine.store.restore import load_restored_state
from engine.store.sqlite_store import SqliteStore
from tests.engine_process import REAL_CAPTURE, REPO, engine_env
from tests.fake_binance_rest import API_KEY, API_SECRET, Behaviour, FakeBinance, FakeOrder

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

GUARD_S = 30.0
T0 = 1_723_161_255_000_000_000
UP, DOWN = "50010", "50000"
"""With fast=1, slow=2 and one-trade bars: a rise is an UP regime, a fall DOWN."""


@dataclass
class LogProgress:
    """The captured log (``logs.capture``) with a ``Progress`` bumped by each Trio-thread line."""

    captured: logs.Captured
    progress: Progress

    def has(self, event: str, **fields: object) -> bool:
        return self.captured.has(event, **fields)

    async def until(self, predicate: Callable[[], bool]) -> None:
        with trio.fail_after(GUARD_S):
            await self.progress.wait_until(predicate)


class ScriptedSource:
    """A MarketDataStream fed by the test; it ends (and the engine drains) on ``end``."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[TickBatch](16)
        self.n = 0

    async def stream(self, send: trio.MemorySendChannel[TickBatch]) -> None:
        async with self._receive:
            async for batch in self._receive:
                await send.send(batch)

    async def trade(self, *prices: str) -> list[str]:
        batch = []
        for price in prices:
            self.n += 1
            ts = T0 + self.n * 1_000_000
            tick = Tick(
                event_id=tick_id("binance", "BTCUSDT", self.n), venue="binance",
                symbol="BTCUSDT", trade_id=self.n, ts_event=ts, ts_recv=ts + 2_000_000,
                price=Decimal(price), qty=Decimal(1),
            )  # fmt: skip
            batch.append(tick)
        await self._send.send(batch)
        return [t.event_id for t in batch]

    def end(self) -> None:
        self._send.close()


class WriteAheadCheckingVenue(FakeBinance):
    """The fake venue, noting whether each order was already committed when it arrived."""

    def __init__(self, db: Path) -> None:
        super().__init__()
        self.db = db
        self.committed_at_post: dict[str, bool] = {}

    def _new_order(self, params: dict[str, str]) -> object:
        cid = params["newClientOrderId"]
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            row = conn.execute(
                "SELECT state FROM order_events WHERE order_id = ? AND seq = 0", (cid,)
            ).fetchone()
        self.committed_at_post[cid] = row == ("SUBMITTED",)
        return super()._new_order(params)


def credentials() -> Credentials:
    return Credentials(api_key=API_KEY, secret=Secret(API_SECRET), source="test")


def live_config(fake: FakeBinance) -> Config:
    return Config(
        engine=EngineSection(mode=Mode.LIVE, drain_timeout_s=10.0, heartbeat_interval_s=60.0),
        strategy=StrategyChoice(params=StrategySection(fast=1, slow=2, bar_seconds=0)),
        live=LiveSection(rest_url=fake.rest_url, ws_url=fake.ws_url),
    )


class Engine:
    def __init__(self, db: Path, fake: FakeBinance) -> None:
        self.db = db
        self.fake = fake
        self.config = live_config(fake)
        self.source = ScriptedSource()
        self.store = SqliteStore.open(db)
        self.counters = Counters()
        self.execution = Execution(self.config)
        self.execution.restore(load_restored_state(self.store.connection))
        self.venue = LiveVenue(
            config=self.config, core=self.execution, credentials=credentials(),
            counters=self.counters,
            stream_policy=StreamPolicy(backoff=replace(DEFAULT_POLICY, initial_s=0.01, max_s=0.05)),
        )  # fmt: skip
        self.code: ExitCode | None = None

    async def run(self) -> None:
        components = Components(
            source=self.source, strategy=build_strategy(self.config.strategy),
            execution=self.execution, store=self.store, venue=self.venue,
        )  # fmt: skip
        state = RunState(
            config=self.config, counters=self.counters, notifier=Notifier.from_env({}),
            run_id="run-live",
        )  # fmt: skip
        self.store.start_run("run-live", 1, "test", "live", 0, "test", "{}")
        try:
            self.code = await run_engine(components, state)
        finally:
            self.store.close()

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql, args).fetchall()

    def last_state(self, order_id: str) -> str:
        ((state,),) = self.rows(
            "SELECT state FROM order_events WHERE order_id = ? ORDER BY seq DESC LIMIT 1",
            order_id,
        )
        return str(state)


@pytest.fixture
def log() -> Iterator[LogProgress]:
    progress = Progress()

    def woke(_line: dict[str, Any]) -> None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:  # a line from the writer thread: the next Trio line wakes us
            return
        progress.bump()

    with logs.capture(woke) as captured:
        yield LogProgress(captured, progress)


async def test_live_pipeline_trades_through_the_venue_and_drain_cancels_resting(
    tmp_path: Path, nursery: trio.Nursery, log: LogProgress
) -> None:
    fake = WriteAheadCheckingVenue(tmp_path / "engine.db")
    await fake.serve(nursery)
    fake.new_order_plan.extend([Behaviour.FILL, Behaviour.FILL, Behaviour.ACCEPT])
    engine = Engine(tmp_path / "engine.db", fake)
    done = trio.Event()

    async def run() -> None:
        await engine.run()
        done.set()

    nursery.start_soon(run)
    await log.until(lambda: log.has("pipeline_started"))
    src = engine.source
    await src.trade(DOWN, UP, DOWN)  # first regime (no signal), then SELL: nothing to sell
    (buy1,) = await src.trade(UP)
    buy1 = f"ord:sig:{buy1}"
    await log.until(lambda: log.has("live_fill", order_id=buy1))
    (sell1,) = await src.trade(DOWN)
    sell1 = f"ord:sig:{sell1}"
    await log.until(lambda: log.has("live_fill", order_id=sell1))
    (buy2,) = await src.trade(UP)
    buy2 = f"ord:sig:{buy2}"
    await log.until(lambda: log.has("live_order_event", order_id=buy2, state="ACCEPTED"))
    src.end()
    with trio.fail_after(GUARD_S):
        await done.wait()

    assert engine.code is ExitCode.COMPLETE
    # Deterministic client ids, each sent once, each committed before it was sent.
    assert list(fake.orders) == [client_order_id(o) for o in (buy1, sell1, buy2)]
    assert [p.params["side"] for p in fake.new_order_posts()] == ["BUY", "SELL", "BUY"]
    assert fake.committed_at_post == dict.fromkeys(fake.orders, True)
    # The drain cancelled the resting BUY at the venue before the adapter closed.
    assert fake.orders[client_order_id(buy2)].status == "CANCELED"
    assert log.has("live_drain_cancelling", orders=[buy2])
    assert engine.last_state(buy2) == "CANCELED"
    assert [engine.last_state(o) for o in (buy1, sell1)] == ["FILLED", "FILLED"]
    assert engine.rows("SELECT count(*) FROM fills") == [(2,)]
    assert engine.rows("SELECT DISTINCT mode FROM orders") == [("LIVE",)]
    assert engine.counters.live_orders == 3 and engine.counters.trade_count == 2
    with sqlite3.connect(engine.db) as conn:
        report = build_report(conn)
    assert report.ok and report.positions.get("BTCUSDT", Decimal(0)) == 0  # flat again
    assert report.fees > 0


async def test_live_venue_failure_is_logged_and_persisted(
    tmp_path: Path, nursery: trio.Nursery, log: LogProgress
) -> None:
    fake = FakeBinance()
    await fake.serve(nursery)
    fake.new_order_plan.append(Behaviour.FILL)
    engine = Engine(tmp_path / "engine.db", fake)
    nursery.start_soon(engine.run)
    await log.until(lambda: log.has("pipeline_started"))
    fake.rate_limit_next = 1  # the first send gets 429 Retry-After 0, the retry fills
    await engine.source.trade(DOWN, UP, DOWN)
    (buy,) = await engine.source.trade(UP)
    order_id = f"ord:sig:{buy}"
    await log.until(lambda: log.has("live_fill", order_id=order_id))
    engine.source.end()
    await log.until(lambda: log.has("clean_shutdown"))
    assert log.has("venue_failure", order_id=order_id, kind="RATE_LIMITED")
    assert engine.rows("SELECT order_id, operation, kind, http_status FROM venue_failures") == [
        (order_id, "new_order", "RATE_LIMITED", 429)
    ]
    assert engine.counters.venue_failures == 1
    assert len(fake.new_order_posts()) == 2


async def test_live_restart_reconciles_an_order_that_filled_while_away(
    tmp_path: Path, nursery: trio.Nursery, log: LogProgress
) -> None:
    fake = FakeBinance()
    await fake.serve(nursery)
    db = tmp_path / "engine.db"
    order = Order(
        order_id="ord:sig:binance:BTCUSDT:7", signal_id="sig:binance:BTCUSDT:7", mode="LIVE",
        symbol="BTCUSDT", side=Side.BUY, order_type=OrderType.MARKET, qty=Decimal("0.002"),
        price=Decimal("50000"), ts_event=T0,
    )  # fmt: skip
    # What an earlier run persisted: the order, SUBMITTED, ACCEPTED by the venue ...
    earlier = [
        order,
        OrderEvent(order_id=order.order_id, seq=0, state=OrderState.SUBMITTED, ts_event=T0,
                   reason="live", filled_qty=Decimal(0), leaves_qty=order.qty),
        OrderEvent(order_id=order.order_id, seq=1, state=OrderState.ACCEPTED, ts_event=T0,
                   reason="venue: accepted", filled_qty=Decimal(0), leaves_qty=order.qty),
    ]  # fmt: skip
    store = SqliteStore.open(db)
    store.write_records(earlier)
    store.close()
    # ... and the venue filled it while the engine was down (no stream was listening).
    cid = client_order_id(order.order_id)
    fake.orders[cid] = FakeOrder(
        order_id=4242, client_id=cid, symbol="BTCUSDT", side="BUY", type="MARKET",
        qty=order.qty, price=Decimal(0), time_ms=T0 // 1_000_000,
    )  # fmt: skip
    fake.trade(cid, order.qty)
    engine = Engine(db, fake)
    assert list(engine.execution.open_orders) == [order.order_id]
    nursery.start_soon(engine.run)
    await log.until(lambda: log.has("live_fill", order_id=order.order_id))
    assert engine.execution.open_orders == {}
    assert engine.execution.ledger.position("BTCUSDT") == order.qty
    engine.source.end()
    await log.until(lambda: log.has("clean_shutdown"))
    assert engine.last_state(order.order_id) == "FILLED"
    assert fake.new_order_posts() == []  # reconciled, never re-sent
    assert engine.rows("SELECT count(*) FROM fills WHERE order_id = ?", order.order_id) == [(1,)]


def test_live_dispatch_with_a_full_intent_queue_stops_with_overload() -> None:
    class Core:
        mode = "LIVE"

        def take_intents(self) -> list[SubmitOrder]:
            return [SubmitOrder(order=None)]  # type: ignore[arg-type]

    config = Config(engine=EngineSection(mode=Mode.LIVE))
    venue = LiveVenue(
        config=config, core=Core(), credentials=credentials(),  # type: ignore[arg-type]
        counters=Counters(),
    )  # fmt: skip
    for _ in range(INTENT_QUEUE_BATCHES):
        venue.dispatch()
    with pytest.raises(Overload, match="intent queue full"):
        venue.dispatch()


PROBE = """
import json, sys
from engine.cli import main
code = main(["replay", sys.argv[1], "--db", sys.argv[2]])
live = ("engine.runtime.live", "engine.adapters.binance_spot.execution", "httpx")
loaded = [m for m in live if m in sys.modules]
sys.stderr.write("PROBE " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["shadow", "paper"])
def test_shadow_and_paper_runs_never_load_the_live_path(tmp_path: Path, mode: str) -> None:
    """I1: outside LIVE neither ``engine.runtime.live`` nor the venue adapter (nor httpx)
    is imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(REAL_CAPTURE), str(tmp_path / "e.db")],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
        env=engine_env({"ENGINE_ENGINE_MODE": mode}),
    )  # fmt: skip
    (probe,) = [line for line in done.stderr.splitlines() if line.startswith("PROBE ")]
    assert json.loads(probe.removeprefix("PROBE ")) == {"code": 0, "loaded": []}
