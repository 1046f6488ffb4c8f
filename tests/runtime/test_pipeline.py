"""The runtime in-process: drain order, failure hand-off, overload policy.

Real SQLite store (tmp_path) and real clock where a worker thread is involved;
the mock clock only for the in-memory overload timer.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.schema import Config
from engine.core.execution import Execution
from engine.core.strategy import SmaCross
from engine.counters import Counters
from engine.exits import ExitCode, NetworkBudgetExhausted, Overload
from engine.logs import Captured
from engine.runtime.pipeline import (
    ENQUEUE_TIMEOUT_S,
    Components,
    EnqueuePolicy,
    run_engine,
    send_or_overload,
)
from engine.runtime.sdnotify import Notifier
from engine.runtime.state import RunState
from engine.store.sqlite_store import SqliteStore
from tests.fakes.engine_process import EngineProcess
from tests.fakes.fake_exchange import Session, open_fake_exchange
from tests.fakes.sources import ListSource, make_ticks


def wiring(tmp_path: Path, source: ListSource) -> tuple[Components, RunState, Path]:
    config = Config()
    db = tmp_path / "engine.db"
    store = SqliteStore.open(db)
    components = Components(
        source=source,
        strategy=SmaCross(5, 20, 0),
        execution=Execution(config),
        store=store,
    )
    state = RunState(
        config=config, counters=Counters(), notifier=Notifier.from_env({}), run_id="run-test"
    )
    store.start_run("run-test", 1, "test", "shadow", 0, "test", "{}")
    return components, state, db


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(n)


async def test_run_engine_finished_source_drains_everything_and_exits_0(tmp_path: Path) -> None:
    batches = [make_ticks(i * 100, 100) for i in range(5)]
    components, state, db = wiring(tmp_path, ListSource(batches))
    with trio.fail_after(30):
        code = await run_engine(components, state)
    components.store.close()
    assert code is ExitCode.COMPLETE
    assert count(db, "ticks") == 500
    assert state.counters.tick_count == 500
    assert count(db, "signals") == state.counters.signal_count > 0
    assert count(db, "fills") == state.counters.trade_count
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT clean_shutdown, exit_code FROM runs").fetchall() == [(1, 0)]
        assert conn.execute("SELECT count(*) FROM heartbeats WHERE final = 1").fetchone() == (1,)


async def test_run_engine_source_failure_is_raised_after_the_drain(tmp_path: Path) -> None:
    batches = [make_ticks(i * 50, 50) for i in range(3)]
    source = ListSource(batches, fail_with=NetworkBudgetExhausted("budget spent"))
    components, state, db = wiring(tmp_path, source)
    with trio.fail_after(30):
        code = await run_engine(components, state)
    components.store.close()
    assert code is ExitCode.NETWORK
    assert count(db, "ticks") == 150  # accepted before the failure: all persisted
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT clean_shutdown, exit_code FROM runs").fetchall() == [(0, 10)]


async def test_send_or_overload_waits_then_raises_at_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = trio.open_memory_channel[int](1)
    send.send_nowait(0)  # full
    start = trio.current_time()
    with pytest.raises(Overload, match="record queue stayed full"):
        await send_or_overload(send, 1, "record")
    assert trio.current_time() - start == pytest.approx(ENQUEUE_TIMEOUT_S)
    assert receive.receive_nowait() == 0
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()  # the refused item was not half-queued


async def test_send_or_overload_succeeds_when_space_frees_in_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = trio.open_memory_channel[int](1)
    send.send_nowait(0)

    async def consume_later() -> None:
        await trio.sleep(ENQUEUE_TIMEOUT_S - 1)
        assert await receive.receive() == 0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume_later)
        await send_or_overload(send, 1, "record")
    assert receive.receive_nowait() == 1
    assert trio.current_time() == pytest.approx(ENQUEUE_TIMEOUT_S - 1)


async def test_send_or_overload_with_handler_reports_once_then_keeps_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = trio.open_memory_channel[int](1)
    send.send_nowait(0)
    reported: list[tuple[float, Overload]] = []
    policy = EnqueuePolicy(
        timeout_s=2.0, on_overload=lambda exc: reported.append((trio.current_time(), exc))
    )

    async def consume_late() -> None:
        await trio.sleep(7.0)  # long after the timeout: the item must still arrive
        assert await receive.receive() == 0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume_late)
        await send_or_overload(send, 1, "record", policy)
    assert [(at, str(exc)) for at, exc in reported] == [
        (2.0, "record queue stayed full for 2s (persistence behind); intake stopped,"
         " nothing accepted dropped")
    ]
    assert trio.current_time() == pytest.approx(7.0)
    assert receive.receive_nowait() == 1  # queued, not dropped


def locked_wiring(
    tmp_path: Path, batches: int, *, drain_timeout_s: float
) -> tuple[Components, RunState, Path]:
    """A store whose lock waits are short, and a config that overloads after 0.3 s."""
    db = tmp_path / "engine.db"
    store = SqliteStore.open(db, busy_timeout_ms=1, retry_first_s=0.005, retry_max_s=0.005)
    store.start_run("run-test", 1, "test", "shadow", 0, "test", "{}")
    config = msgspec.structs.replace(
        Config(),
        engine=msgspec.structs.replace(
            Config().engine, enqueue_timeout_s=0.3, drain_timeout_s=drain_timeout_s
        ),
    )
    components = Components(
        # More than everything persistence and the queues hold: two persistence batches
        # (2 x 16,384 records: one being written, one collected) plus every queue.
        source=ListSource([make_ticks(i * 100, 100) for i in range(batches)]),
        strategy=SmaCross(5, 20, 0),
        execution=Execution(config),
        store=store,
    )
    state = RunState(
        config=config,
        counters=Counters(),
        notifier=Notifier.from_env({}),
        run_id="run-test",
        abandon_writes=store.abandon,
    )
    return components, state, db


async def test_run_engine_lock_past_enqueue_timeout_drains_everything_then_exits_13(
    tmp_path: Path, log_lines: Captured
) -> None:
    # The lock outlasts enqueue_timeout_s: the engine stops its intake (the source is
    # cancelled, its unsent batches were never accepted) but loses nothing it accepted:
    # once the lock is released -- within the drain deadline -- every queued tick lands.
    components, state, db = locked_wiring(tmp_path, 1200, drain_timeout_s=60.0)
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")

    async def release_after_overload() -> None:
        await state.drain_started.wait()  # the source cannot end on its own: queues full
        assert state.stop_failure is not None
        assert state.counters.persist_retries > 0  # counted live, the write still stuck
        locker.execute("COMMIT")

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(release_after_overload)
                code = await run_engine(components, state)
    finally:
        locker.close()
        components.store.close()
    assert code is ExitCode.OVERLOAD
    counters = state.counters
    assert 0 < counters.tick_count < 1200 * 100  # the intake stopped early
    assert count(db, "ticks") == counters.tick_count  # every accepted tick landed
    assert count(db, "signals") == counters.signal_count
    assert counters.persist_retries > 0
    assert log_lines.events("stopping_on_fault")[0]["exit_code"] == 13
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT clean_shutdown, exit_code FROM runs").fetchall() == [(0, 13)]
        (final,) = conn.execute("SELECT counters FROM heartbeats WHERE final = 1").fetchone()
    assert json.loads(final)["persist_retries"] == counters.persist_retries


async def test_run_engine_overload_while_database_locked_gives_up_the_write_and_exits_13(
    tmp_path: Path,
) -> None:
    # Overload declared, the drain cannot finish: the drain deadline forces the stop and
    # the write stuck retrying on the lock is abandoned instead of waited for.
    components, state, db = locked_wiring(tmp_path, 1200, drain_timeout_s=0.5)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with trio.fail_after(30):
            code = await run_engine(components, state)
    finally:
        locker.close()
        components.store.close()
    assert code is ExitCode.OVERLOAD
    assert state.stop_failure is not None
    assert state.pipeline_scope.cancelled_caught  # forced, not drained
    assert count(db, "ticks") == 0


async def test_second_sigint_during_final_bookkeeping_gives_up_the_locked_write(
    tmp_path: Path,
) -> None:
    # The signal receiver used to live only as long as the pipeline: once drained, a
    # final heartbeat stuck retrying on a locked database could not be abandoned by a
    # second SIGINT (no receiver: Trio's KeyboardInterrupt waits for the thread; SIGTERM
    # would kill the process outright), so the process hung for as long as the lock held.
    async with open_fake_exchange("binance", [Session(frames=0)]) as fake:
        db = tmp_path / "engine.db"
        config = tmp_path / "engine.toml"
        config.write_text(
            f'[engine]\ndb_path = "{db}"\nheartbeat_interval_s = 3600.0\n'
            "busy_timeout_ms = 1000\ndrain_timeout_s = 30.0\n"
            f'[ingest]\nsource = "websocket"\nurl = "{fake.url}"\nsymbols = ["BTCUSDT"]\n'
        )
        engine = EngineProcess(["run", "--config", str(config)])
        locker = sqlite3.connect(db, isolation_level=None)
        try:
            await trio.to_thread.run_sync(
                engine.wait_for, lambda line: line.get("event") == "pipeline_started", 60
            )
            locker.execute("BEGIN IMMEDIATE")  # the runs row is written; nothing else yet
            engine.send_signal(signal.SIGINT)
            await trio.to_thread.run_sync(
                engine.wait_for,
                lambda line: line.get("event") == "heartbeat" and line.get("final") is True,
                60,
            )  # drained; the final heartbeat's write now waits on the lock
            engine.send_signal(signal.SIGINT)
            code = await trio.to_thread.run_sync(engine.finish, 30)
        finally:
            engine.kill()
            locker.close()
    assert code == 0  # everything drained; only the record of the end was given up
    assert engine.events("shutdown_record_failed")
    assert engine.events("shutdown_forced")
    assert [e["recorded"] for e in engine.events("clean_shutdown")] == [False]


@settings(max_examples=60, deadline=None)
@given(
    delays=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=12),
    size=st.integers(min_value=1, max_value=3),
)
def test_send_or_overload_with_handler_never_drops_and_reports_only_a_timed_out_wait(
    delays: list[int], size: int
) -> None:
    # A consumer that pauses before each receive (mock clock): whatever the pauses,
    # every item arrives once, in order; the handler hears of an overload only if
    # some send waited longer than the timeout.
    timeout_s = 2.5  # waits are whole seconds: never a tie with the timeout
    received: list[int] = []
    reported: list[Overload] = []
    waits: list[float] = []

    async def main() -> None:
        send, receive = trio.open_memory_channel[int](size)
        policy = EnqueuePolicy(timeout_s=timeout_s, on_overload=reported.append)

        async def consume() -> None:
            async with receive:
                for delay in delays:
                    await trio.sleep(delay)
                    received.append(await receive.receive())
                async for item in receive:
                    received.append(item)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            async with send:
                for item in range(len(delays) + size):
                    start = trio.current_time()
                    await send_or_overload(send, item, "record", policy)
                    waits.append(trio.current_time() - start)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert received == list(range(len(delays) + size))
    assert bool(reported) == any(w > timeout_s for w in waits)
