"""What the shell tasks of one run share: config, counters, cancel scopes, drain state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from engine.config.schema import Config
from engine.counters import Counters
from engine.exits import EngineError
from engine.runtime.sdnotify import Notifier


class ProcessDeadline(Protocol):
    """Ends the process if it still runs at a deadline
    (``engine.runtime.shutdown.HardDeadline``)."""

    def arm(self, seconds: float, why: str) -> None:
        """End the process ``seconds`` from now (the earliest deadline armed wins)."""
        ...


@dataclass
class RunState:
    """What the shell tasks share about one run (single Trio thread, no locks)."""

    config: Config
    counters: Counters
    notifier: Notifier
    run_id: str
    ingest_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    pipeline_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    draining: bool = False
    drain_started: trio.Event = field(default_factory=trio.Event)
    ingest_failure: BaseException | None = None
    trading_state: Callable[[], str] = lambda: "ACTIVE"
    abandon_writes: Callable[[], None] = lambda: None
    """Tells a write stuck retrying on a lock to give up (``SqliteStore.abandon``)."""
    stop_failure: EngineError | None = None
    """The fault that made the engine stop its intake and drain (a queue that stayed
    full, disk full): raised after the drain, so it picks the exit code (13) while
    everything already accepted is still written."""
    startup_signal: Callable[[], str | None] = lambda: None
    """The signal that arrived during start-up, after its last check
    (``engine.runtime.startup``): ``signal_task`` starts the drain on it at once."""
    process_deadline: ProcessDeadline | None = None
    """Set by the composition root in a real process: once the stop began, the
    process ends by ``drain_timeout_s`` + ``HARD_STOP_GRACE_S`` even if the writer
    thread is stuck in SQLite. ``None`` in in-process tests."""
