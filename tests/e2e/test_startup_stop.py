"""A stop asked for during start-up (engine.runtime.startup): real processes, real signals,
a real (big) SQLite file; in process, the same handler and the interrupted quick_check.

The big database is a real WAL file padded to ~430 MB (2M rows of a 200-byte blob
in a table of its own), so the writer's ``PRAGMA quick_check`` reads pages for a
while (about 0.4 s warm on this machine): the test waits for the engine's
``integrity_check_started`` line, then signals.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
import trio

from engine.config.schema import Config
from engine.counters import Counters
from engine.exits import StoppedDuringStartup
from engine.runtime.sdnotify import Notifier
from engine.runtime.shutdown import signal_task
from engine.runtime.startup import StartupStop
from engine.runtime.state import RunState
from engine.store.connection import open_writer, quick_check
from tests.fakes.engine_process import REAL_CAPTURE, EngineProcess

PAD_ROWS = 2_000_000


def pad_database(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE pad (id INTEGER PRIMARY KEY, x BLOB)")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO pad (x) SELECT zeroblob(200) FROM n", (rows,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("big") / "engine.db"
    pad_database(db, PAD_ROWS)
    return db


def tables_rows(db: Path, table: str) -> int | None:
    """Rows of ``table`` (``None``: no such table)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is None:
            return None
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "args"),
    [
        (signal.SIGTERM, ["run"]),  # systemd's stop of the service
        (signal.SIGINT, ["replay", str(REAL_CAPTURE)]),  # Ctrl-C at the terminal
    ],
)
def test_signal_during_start_up_quick_check_exits_0_before_anything_runs(
    big_db: Path, signum: signal.Signals, args: list[str]
) -> None:
    engine = EngineProcess([*args, "--db", str(big_db)])
    try:
        started = engine.wait_for(lambda e: e.get("event") == "integrity_check_started")
        engine.send_signal(signum)
        code = engine.finish()
    finally:
        engine.kill()
    assert engine.proc.stderr is not None
    stderr = engine.proc.stderr.read()
    assert code == 0, stderr[-2000:]
    assert started["bytes"] > 400_000_000  # the check really had a big file to read
    [stopped] = engine.events("startup_stopped")
    assert stopped["signal"] == signum.name and stopped["exit_code"] == 0
    assert f"{signum.name} during start-up" in stderr and "no run recorded" in stderr
    assert "Traceback" not in stderr
    # nothing ran: no run started, no ingest, no run row, no trade
    for event in ("engine_starting", "replay_file_started", "ingest_stopped", "clean_shutdown"):
        assert not engine.events(event), event
    assert tables_rows(big_db, "runs") in (None, 0)
    assert tables_rows(big_db, "ticks") in (None, 0)
    assert tables_rows(big_db, "pad") == PAD_ROWS  # the file is whole
    with sqlite3.connect(big_db) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_startup_stop_notes_a_real_signal_and_interrupts_the_writers_check(
    tmp_path: Path,
) -> None:
    db = tmp_path / "e.db"
    pad_database(db, 20_000)
    before = signal.getsignal(signal.SIGTERM)
    with StartupStop() as startup:
        assert not startup.requested()
        open_writer(db, stop=startup).close()  # no signal: the check runs to the end
        os.kill(os.getpid(), signal.SIGTERM)  # delivered before the next bytecode completes
        assert startup.signal_name == "SIGTERM"
        with pytest.raises(StoppedDuringStartup) as caught:
            open_writer(db, stop=startup)
        assert caught.value.step == "PRAGMA quick_check"
        conn = sqlite3.connect(db)
        with pytest.raises(StoppedDuringStartup):
            quick_check(conn, 60.0, startup)
        assert quick_check(conn, 60.0) == "ok"  # the handler was cleared after the stop
        conn.close()
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back


def test_signal_after_the_last_start_up_check_drains_at_once() -> None:
    state = RunState(config=Config(), counters=Counters(), notifier=Notifier(None),
                     run_id="run-x", startup_signal=lambda: "SIGINT")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(signal_task, state)
            assert state.draining and state.ingest_scope.cancel_called
            nursery.cancel_scope.cancel()

    trio.run(main)
