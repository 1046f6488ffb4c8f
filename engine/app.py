"""The composition root: the one place that picks adapters and wires them together."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import trio

from engine import __version__, logs
from engine.adapters.admission import AdmissionSettings
from engine.adapters.feed_replay import ReplayStream
from engine.config import Config, Mode, Source, config_to_builtins
from engine.core.execution import Execution, RestoredState
from engine.core.strategy import from_config
from engine.counters import Counters
from engine.exits import ConfigError, ExitCode
from engine.ports import MarketDataStream, VenueLink
from engine.run_state import RunState
from engine.runtime import Components, new_run_id, run_engine
from engine.sdnotify import Notifier
from engine.store.restore import load_restored_state
from engine.store.sqlite_store import SqliteStore

if TYPE_CHECKING:  # imported for real only in LIVE (check_mode)
    from engine.adapters.exec_binance_credentials import Credentials


def build_source(
    config: Config, counters: Counters, captures: Sequence[str] = (), speed: float | None = None
) -> MarketDataStream:
    """The market-data adapter named by the configuration (or the captures given)."""
    ingest = config.ingest
    if captures or ingest.source is Source.REPLAY:
        paths = [Path(p) for p in (captures or ingest.captures)]
        if not paths:
            raise ConfigError("ingest.captures: replay source needs at least one capture file")
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"capture file not found: {path}")
        return ReplayStream(
            paths,
            counters,
            speed=ingest.speed if speed is None else speed,
            admission=AdmissionSettings.from_section(ingest),
        )
    if ingest.source is Source.SYNTHETIC:
        from engine.adapters.feed_synthetic import SyntheticStream

        return SyntheticStream(
            symbols=ingest.synthetic_symbols,
            counters=counters,
            seed=ingest.synthetic_seed,
            rate_per_s=ingest.synthetic_rate_per_s,
            start_price=ingest.synthetic_start_price,
            max_ticks=ingest.synthetic_max_ticks,
            admission=AdmissionSettings.from_section(ingest),
        )
    from engine.adapters.feed_ws import WebSocketStream  # only live runs need the socket stack

    return WebSocketStream(ingest, counters)


def check_mode(config: Config, arm_live: bool) -> Credentials | None:
    """Refuse LIVE unless gate G1 holds (engine.gate logs every unmet condition).

    In LIVE, also load the venue credentials now -- before the database or any
    connection is opened -- so a missing key or a loose credentials file is
    exit 12 with nothing touched. ``None`` in SHADOW and PAPER.
    """
    if config.engine.mode is not Mode.LIVE:
        return None
    from engine.adapters.exec_binance_credentials import load_credentials
    from engine.gate import enforce

    enforce(config, environ=os.environ, arm_flag=arm_live)
    credentials = load_credentials(config.live.credentials_file, os.environ)
    logs.info("live_credentials_loaded", source=credentials.source)
    return credentials


def build_venue(
    config: Config,
    execution: Execution,
    credentials: Credentials | None,
    counters: Counters,
    restored: RestoredState,
) -> VenueLink | None:
    """The link to the real venue: LIVE only, after the gate (never built in SHADOW/PAPER, I1)."""
    if credentials is None:
        return None
    from engine.live import LiveVenue  # the LIVE adapter stack is imported in LIVE only

    return LiveVenue(
        config=config,
        core=execution,
        credentials=credentials,
        counters=counters,
        restored=restored,
    )


def run_with(
    config: Config,
    *,
    command: str,
    captures: Sequence[str] = (),
    speed: float | None = None,
    db_path: str | None = None,
    arm_live: bool = False,
) -> int:
    """Open the store, wire the pipeline, run it under Trio; return the exit code."""
    credentials = check_mode(config, arm_live)
    counters = Counters()
    source = build_source(config, counters, captures, speed)
    path = db_path or config.engine.db_path
    store = SqliteStore.open(path, busy_timeout_ms=config.engine.busy_timeout_ms)
    try:
        execution = Execution(config)
        restored = load_restored_state(store.connection)
        execution.restore(restored)
        run_id = new_run_id()
        record_start = partial(
            store.start_run,
            run_id,
            os.getpid(),
            command,
            str(config.engine.mode),
            time.time_ns(),
            __version__,
            msgspec.json.encode(config_to_builtins(config)).decode(),
        )
        state = RunState(
            config=config,
            counters=counters,
            notifier=Notifier.from_env(),
            run_id=run_id,
            trading_state=lambda: execution.trading_state,
            abandon_writes=store.abandon,
        )
        components = Components(
            source=source,
            strategy=from_config(config.strategy),
            execution=execution,
            store=store,
            venue=build_venue(config, execution, credentials, counters, restored),
            record_start=record_start,
        )
        logs.info(
            "engine_starting",
            run_id=run_id,
            command=command,
            db_path=str(path),
            mode=str(config.engine.mode),
            version=__version__,
            python=sys.version.split()[0],
        )
        code = trio.run(run_engine, components, state)
    finally:
        store.close()
    return int(code)


__all__ = ["ExitCode", "build_source", "run_with"]
