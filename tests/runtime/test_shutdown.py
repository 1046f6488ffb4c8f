"""The process deadline: a stop that cannot finish (a writer stuck in SQLite) still ends.

The real ``os._exit`` is exercised by the subprocess test in ``tests/e2e/test_storage_faults.py``;
here a recording stand-in shows when the deadline fires and when it does not.
"""

from __future__ import annotations

import threading
from pathlib import Path

import trio

from engine.config.schema import Config
from engine.core.execution import Execution
from engine.core.strategy import SmaCross
from engine.counters import Counters
from engine.exits import ExitCode
from engine.logs import Captured
from engine.runtime.pipeline import Components, run_engine
from engine.runtime.sdnotify import Notifier
from engine.runtime.shutdown import HARD_STOP_GRACE_S, HardDeadline
from engine.runtime.state import RunState
from engine.store.sqlite_store import SqliteStore
from tests.fakes.sources import ListSource, make_ticks


class Exits:
    """Records the exit the deadline asked for, instead of ending the test process."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.called = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.called.set()


def test_hard_deadline_fires_with_13_and_logs_why(log_lines: Captured) -> None:
    exits = Exits()
    deadline = HardDeadline(exit_process=exits)
    deadline.arm(0.01, "drain overran")
    assert exits.called.wait(30)
    assert exits.codes == [int(ExitCode.OVERLOAD)]
    (line,) = log_lines.events("shutdown_deadline_exit")
    assert (line["exit_code"], line["reason"]) == (13, "drain overran")


def test_hard_deadline_earliest_arm_wins() -> None:
    exits = Exits()
    deadline = HardDeadline(exit_process=exits)
    deadline.arm(3600, "drain started")
    deadline.arm(0.01, "second signal")  # earlier: replaces the first
    deadline.arm(3600, "later arm")  # later: changes nothing
    assert exits.called.wait(30)
    assert exits.codes == [13]


def test_hard_deadline_disarmed_never_fires() -> None:
    exits = Exits()
    deadline = HardDeadline(exit_process=exits)
    deadline.arm(0.05, "drain started")
    deadline.disarm()
    timer = deadline._timer
    assert timer is not None
    timer.join(30)  # a cancelled timer's thread ends without calling
    assert not timer.is_alive()
    assert exits.codes == []


class Arms:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def arm(self, seconds: float, why: str) -> None:
        self.calls.append((seconds, why))


async def test_run_engine_source_end_arms_the_deadline_drain_plus_grace(tmp_path: Path) -> None:
    # A finished replay drains with nobody sending a signal: that stop is bounded too.
    config = Config()
    store = SqliteStore.open(tmp_path / "engine.db")
    store.start_run("run-test", 1, "test", "shadow", 0, "test", "{}")
    arms = Arms()
    state = RunState(config=config, counters=Counters(), notifier=Notifier.from_env({}),
                     run_id="run-test", process_deadline=arms)
    components = Components(
        source=ListSource([make_ticks(0, 50)]),
        strategy=SmaCross(5, 20, 0),
        execution=Execution(config),
        store=store,
    )
    try:
        with trio.fail_after(30):
            code = await run_engine(components, state)
    finally:
        store.close()
    assert code is ExitCode.COMPLETE
    bound = config.engine.drain_timeout_s + HARD_STOP_GRACE_S
    assert arms.calls[0] == (bound, "source ended")
