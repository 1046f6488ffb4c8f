"""LIVE: a strategy that raises stops the engine cleanly and the resting order is cancelled.

The real LIVE path (``LiveVenue``) against the fake Binance REST + user-data servers
on 127.0.0.1; the strategy is ``sma_cross`` that raises at the tick the test chooses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from engine.adapters.binance_spot.signing import client_order_id
from engine.core.events import Signal, Tick
from engine.core.strategy import SmaCross
from engine.exits import ExitCode
from engine.runtime.pipeline import Components, run_engine
from engine.runtime.sdnotify import Notifier
from engine.runtime.state import RunState
from tests.fakes.fake_binance_rest import Behaviour, FakeBinance
from tests.fakes.live_engine import DOWN, GUARD_S, UP, Engine, LogProgress
from tests.fakes.live_engine import log as log  # noqa: PLC0414 -- the fixture

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class Exploding:
    """``sma_cross`` (fast 1, slow 2, trade bars) until ``armed``; then its next batch raises."""

    def __init__(self) -> None:
        self.inner = SmaCross(1, 2, 0)
        self.armed = False

    def describe(self) -> str:
        return "sma_cross that raises when armed"

    def on_batch(self, ticks: Sequence[Tick]) -> list[Tick | Signal]:
        if self.armed:
            raise RuntimeError("strategy bug in LIVE")
        return self.inner.on_batch(ticks)


async def test_live_strategy_raising_drains_cancels_resting_and_exits_1(
    tmp_path: Path, nursery: trio.Nursery, log: LogProgress
) -> None:
    fake = FakeBinance()
    await fake.serve(nursery)
    fake.new_order_plan.extend([Behaviour.ACCEPT])  # the BUY rests at the venue
    engine = Engine(tmp_path / "engine.db", fake)
    strategy = Exploding()
    done = trio.Event()
    code: list[ExitCode] = []

    async def run() -> None:
        components = Components(
            source=engine.source, strategy=strategy, execution=engine.execution,
            store=engine.store, venue=engine.venue,
        )  # fmt: skip
        state = RunState(config=engine.config, counters=engine.counters,
                         notifier=Notifier.from_env({}), run_id="run-live")  # fmt: skip
        engine.store.start_run("run-live", 1, "test", "live", 0, "test", "{}")
        try:
            code.append(await run_engine(components, state))
        finally:
            engine.store.close()
        done.set()

    nursery.start_soon(run)
    await log.until(lambda: log.has("pipeline_started"))
    await engine.source.trade(DOWN, UP, DOWN)  # first regime, then a SELL with nothing to sell
    (buy,) = await engine.source.trade(UP)
    buy = f"ord:sig:{buy}"
    await log.until(lambda: log.has("live_order_event", order_id=buy, state="ACCEPTED"))
    strategy.armed = True
    await engine.source.trade(DOWN)  # the strategy raises on this batch
    with trio.fail_after(GUARD_S):
        await done.wait()

    assert code == [ExitCode.CRASH]
    failed = [line for line in log.captured.lines if line.get("event") == "strategy_failed"]
    assert len(failed) == 1
    assert "RuntimeError: strategy bug in LIVE" in failed[0]["error"]
    assert "in on_batch" in failed[0]["traceback"]
    # The drain cancelled the resting BUY at the venue, and every tick was persisted.
    assert fake.orders[client_order_id(buy)].status == "CANCELED"
    assert log.has("live_drain_cancelling", orders=[buy])
    assert engine.rows("SELECT COUNT(*) FROM ticks") == [(5,)]
    assert engine.last_state(buy) == "CANCELED"
