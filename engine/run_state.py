"""What the shell tasks of one run share: config, counters, cancel scopes, drain state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from engine.config import Config
from engine.counters import Counters
from engine.sdnotify import Notifier


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
