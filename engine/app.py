"""The composition root: the one place that picks adapters and wires them together."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import msgspec
import trio

from engine import __version__, logs
from engine.adapters.market.admission import AdmissionSettings
from engine.adapters.market.capture import expand_captures, sniff_capture
from engine.adapters.market.replay import ReplayStream
from engine.config.load import admit_db_path, config_to_builtins
from engine.config.schema import Config, Mode, Source
from engine.config.strategies import user_class_of
from engine.core.choice import build_strategy
from engine.core.execution import Execution
from engine.counters import Counters
from engine.exits import ConfigError, ExitCode, StoppedDuringStartup
from engine.ports import MarketDataStream, VenueLink
from engine.runtime.console import start_line
from engine.runtime.identity import identify_run
from engine.runtime.pipeline import Components, new_run_id, run_engine
from engine.runtime.sdnotify import Notifier
from engine.runtime.shutdown import HardDeadline
from engine.runtime.startup import StartupStop
from engine.runtime.state import RunState
from engine.store.connection import DatabaseCorrupt
from engine.store.restore import load_restored_state
from engine.store.runs import check_continuation
from engine.store.sqlite_store import SqliteStore
from engine.store.summary import print_run_summary

if TYPE_CHECKING:  # imported for real only in LIVE (check_mode)
    from engine.adapters.binance_spot.credentials import Credentials


def build_source(
    config: Config, counters: Counters, captures: Sequence[str] = (), speed: float | None = None
) -> MarketDataStream:
    """The market-data adapter named by the configuration (or the captures given)."""
    ingest = config.ingest
    if captures or ingest.source is Source.REPLAY:
        paths = expand_captures(captures or ingest.captures)
        if not paths:
            raise ConfigError("ingest.captures: replay source needs at least one capture file")
        for path in paths:
            sniff_capture(path)  # exit 12 unless it holds market data in a known format
        return ReplayStream(
            paths,
            counters,
            speed=ingest.speed if speed is None else speed,
            admission=AdmissionSettings.from_section(ingest),
        )
    if ingest.source is Source.SYNTHETIC:
        from engine.adapters.market.synthetic import SyntheticStream

        return SyntheticStream(
            symbols=ingest.synthetic_symbols,
            counters=counters,
            seed=ingest.synthetic_seed,
            rate_per_s=ingest.synthetic_rate_per_s,
            start_price=ingest.synthetic_start_price,
            max_ticks=ingest.synthetic_max_ticks,
            admission=AdmissionSettings.from_section(ingest),
        )
    from engine.adapters.market.ws.stream import (
        WebSocketStream,  # only live runs need the socket stack
    )

    return WebSocketStream(ingest, counters)


def check_mode(config: Config, arm_live: bool) -> Credentials | None:
    """Refuse LIVE unless gate G1 holds (engine.proof.gate logs every unmet condition).

    In LIVE, also load the venue credentials now -- before the database or any
    connection is opened -- so a missing key or a loose credentials file is
    exit 12 with nothing touched. ``None`` in SHADOW and PAPER.
    """
    if config.engine.mode is not Mode.LIVE:
        return None
    from engine.adapters.binance_spot.credentials import load_credentials
    from engine.proof.gate import enforce

    enforce(config, environ=os.environ, arm_flag=arm_live)
    credentials = load_credentials(config.live.credentials_file, os.environ)
    logs.info("live_credentials_loaded", source=credentials.source)
    return credentials


def build_venue(
    config: Config,
    execution: Execution,
    credentials: Credentials | None,
    counters: Counters,
) -> VenueLink | None:
    """The link to the real venue: LIVE only, after the gate (never built in SHADOW/PAPER, I1)."""
    if credentials is None:
        return None
    from engine.runtime.live import LiveVenue  # the LIVE adapter stack is imported in LIVE only

    return LiveVenue(
        config=config,
        core=execution,
        credentials=credentials,
        counters=counters,
    )


def open_store(
    path: str, key: str, config: Config, stop: StartupStop | None = None
) -> SqliteStore:
    """Open the database, refusing a path that cannot hold it with one line naming ``key``."""
    admit_db_path(path, key)
    try:
        return SqliteStore.open(path, busy_timeout_ms=config.engine.busy_timeout_ms, stop=stop)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def run_with(
    config: Config,
    *,
    command: str,
    captures: Sequence[str] = (),
    speed: float | None = None,
    db_path: str | None = None,
    arm_live: bool = False,
) -> int:
    """Open the store, wire the pipeline, run it under Trio; return the exit code.

    A run that would not continue the database's account (another mode, risk
    config or strategy, an older capture: ``engine.store.runs``) is refused with exit 12
    before anything is written. On exit the summary (``engine.store.report``) states
    this run's counts and the database's totals. SIGINT/SIGTERM before the pipeline
    runs (``engine.runtime.startup``) ends the start-up at its next step: exit 0, no
    run recorded, ingest never started.
    """
    with StartupStop() as startup:
        try:
            return _start_and_run(
                config, startup, command=command, captures=captures, speed=speed,
                db_path=db_path, arm_live=arm_live,
            )
        except StoppedDuringStartup as stop:
            logs.info("startup_stopped", signal=stop.signal_name, step=stop.step, exit_code=0)
            logs.human(
                f"hybrid-engine: {stop.signal_name} during start-up ({stop.step}): stopped"
                " before the run started; no run recorded, nothing traded; exit 0"
            )
            return int(ExitCode.COMPLETE)


def _start_and_run(
    config: Config,
    startup: StartupStop,
    *,
    command: str,
    captures: Sequence[str],
    speed: float | None,
    db_path: str | None,
    arm_live: bool,
) -> int:
    credentials = check_mode(config, arm_live)
    counters = Counters()
    strategy = build_strategy(config.strategy, user_class_of(config.strategy))
    source = build_source(config, counters, captures, speed)
    identity = identify_run(config, captures)
    startup.check("identifying the run")
    if not config.engine.store_ticks and identity.source_kind != "replay":
        raise ConfigError(
            "engine.store_ticks: false is for a replay only (its ticks are on disk already);"
            f" this run's source is {identity.source_kind}"
        )
    path = db_path or config.engine.db_path
    store = open_store(path, "--db" if db_path else "engine.db_path", config, startup)
    store.store_ticks = config.engine.store_ticks
    deadline = HardDeadline()
    try:
        check_continuation(store.connection, identity, str(path))
        execution = Execution(config)
        try:
            restored = load_restored_state(store.connection)
        except sqlite3.DatabaseError as exc:  # damage quick_check did not see
            raise DatabaseCorrupt(f"engine.db_path: cannot restore from {path!r}: {exc}") from None
        execution.restore(restored)
        startup.check("restoring the account")
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
            identity,
        )
        state = RunState(
            config=config,
            counters=counters,
            notifier=Notifier.from_env(),
            run_id=run_id,
            trading_state=lambda: execution.trading_state,
            abandon_writes=store.abandon,
            process_deadline=deadline,
            startup_signal=lambda: startup.signal_name,
        )
        components = Components(
            source=source,
            strategy=strategy,
            execution=execution,
            store=store,
            venue=build_venue(config, execution, credentials, counters),
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
        logs.human(
            start_line(
                config,
                command=command,
                db_path=path,
                captures=captures,
                speed=speed,
                strategy=strategy.describe(),
            )
        )
        code = trio.run(run_engine, components, state)
    finally:
        store.close()  # still under the process deadline if the stop has begun
        deadline.disarm()
    print_run_summary(str(path), run_id, command, int(code))
    return int(code)


