"""The LIVE pipeline in-process against the fake venue: a scripted market, the engine, its log.

Shared by ``tests/runtime/test_live.py`` and ``tests/runtime/test_live_strategy.py``.
The fake Binance (REST + WebSocket-API user stream, ``tests/fakes/fake_binance_rest.py``)
runs on 127.0.0.1 in the test's Trio loop; the engine's pipeline runs in the same
loop with a real SQLite store. Waits are on the engine's own log lines (a
``Progress`` bumped per line), never sleeps.
"""

from __future__ import annotations

import sqlite3
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
from engine.adapters.binance_spot.user_stream import StreamPolicy
from engine.adapters.progress import Progress
from engine.config.schema import (
    Config,
    EngineSection,
    LiveSection,
    Mode,
    StrategyChoice,
    StrategySection,
)
from engine.core.choice import build_strategy
from engine.core.events import Tick, tick_id
from engine.core.execution import Execution
from engine.counters import Counters
from engine.exits import ExitCode
from engine.ports import TickBatch
from engine.runtime.live import LiveVenue
from engine.runtime.pipeline import Components, run_engine
from engine.runtime.sdnotify import Notifier
from engine.runtime.state import RunState
from engine.store.restore import load_restored_state
from engine.store.sqlite_store import SqliteStore
from tests.fakes.fake_binance_rest import API_KEY, API_SECRET, FakeBinance

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
