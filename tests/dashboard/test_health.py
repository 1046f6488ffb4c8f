"""Health verdict, /healthz and the command-line healthcheck: PASS and each FAIL reason."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from engine.config.schema import Config, EngineSection, IngestSection, Source
from engine.counters import Counters
from engine.dashboard.app import build_app
from engine.dashboard.db import ReadOnlyDatabase
from engine.dashboard.health import (
    FRESH_INTERVALS,
    dashboard_problems,
    database_verdict,
    format_result,
    judge,
    service_problems,
    systemd_booted,
)
from engine.runtime.heartbeat import watchdog_task
from engine.runtime.sdnotify import Notifier
from engine.runtime.state import RunState
from engine.store.sqlite_store import SqliteStore
from tests.fakes.dashboard_support import asgi_get, live_copy, replay_database, serve_dashboard
from tests.fakes.engine_process import REPO, EngineProcess, engine_env

NOW = 1_800_000_000_000_000_000
S = 1_000_000_000
GOOD_PRAGMAS = {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 5000, "temp_store": 2}
SCRIPT = REPO / "systemd" / "healthcheck.sh"


def _run(**overrides: Any) -> dict[str, Any]:
    run = {"run_id": "run-1", "mode": "shadow", "started_wall_ns": NOW - 100 * S,
           "ended_wall_ns": None, "exit_code": None, "clean_shutdown": False,
           "pragmas": dict(GOOD_PRAGMAS), "config": {"engine": {"heartbeat_interval_s": 10.0}}}
    run.update(overrides)
    return run


def _beat(age_s: float, **overrides: Any) -> dict[str, Any]:
    beat = {"run_id": "run-1", "ts_wall_ns": NOW - int(age_s * S), "interval_s": 10.0,
            "final": False, "trading_state": "ACTIVE", "counters": {}}
    beat.update(overrides)
    return beat


# -- the pure verdict ----------------------------------------------------------------


def test_judge_fresh_heartbeat_running_run_is_ok() -> None:
    verdict = judge(_run(), _beat(5.0), [], NOW)
    assert verdict.ok and verdict.as_json()["status"] == "ok"
    assert verdict.details["heartbeat_age_s"] == 5.0
    assert verdict.details["limit_s"] == FRESH_INTERVALS * 10.0


def test_judge_heartbeat_just_inside_limit_is_ok_just_past_is_stale() -> None:
    assert judge(_run(), _beat(29.999), [], NOW).ok
    verdict = judge(_run(), _beat(30.5), [], NOW)
    assert verdict.problems == ("heartbeat stale: last one 30.5 s ago, limit 30 s (3 x 10 s)",)


def test_judge_limit_follows_the_interval_recorded_with_the_heartbeat() -> None:
    assert not judge(_run(), _beat(4.0, interval_s=1.0), [], NOW).ok
    assert judge(_run(), _beat(40.0, interval_s=20.0), [], NOW).ok


def test_judge_ended_run_is_unhealthy_even_when_clean() -> None:
    run = _run(ended_wall_ns=NOW - S, exit_code=0, clean_shutdown=True)
    verdict = judge(run, _beat(1.0, final=True), [], NOW)
    assert verdict.problems == ("engine stopped: run run-1 ended cleanly with exit code 0",)


def test_judge_final_heartbeat_without_run_end_is_unhealthy() -> None:
    verdict = judge(_run(), _beat(1.0, final=True), [], NOW)
    assert verdict.problems == ("engine stopped: run run-1 wrote its final heartbeat",)


def test_judge_no_run_is_unhealthy() -> None:
    assert judge(None, None, [], NOW).problems == ("no engine run recorded in the database",)


def test_judge_no_heartbeat_yet_ok_during_grace_then_unhealthy() -> None:
    assert judge(_run(started_wall_ns=NOW - 5 * S), None, [], NOW).ok
    verdict = judge(_run(started_wall_ns=NOW - 31 * S), None, [], NOW)
    assert verdict.problems == (
        "no heartbeat from run run-1 in 31.0 s since it started (limit 30 s = 3 x 10 s)",
    )


def test_judge_pragma_problems_file_and_engine_connection_reported() -> None:
    run = _run(pragmas={**GOOD_PRAGMAS, "synchronous": 2, "busy_timeout": 10})
    verdict = judge(run, _beat(1.0), ["PRAGMA journal_mode is 'delete', required wal"], NOW)
    assert verdict.problems == (
        "PRAGMA journal_mode is 'delete', required wal",
        "engine connection: PRAGMA synchronous is 2, required 1",
        "engine connection: PRAGMA busy_timeout is 10, required >= 1000",
    )
    assert not judge(_run(pragmas=None), _beat(1.0), [], NOW).ok


LIVE_CONFIG = {"engine": {"heartbeat_interval_s": 1.0},
               "ingest": {"source": "websocket", "max_downtime_s": 5.0}}


def _live_beat(tick_age_s: float | None, **overrides: Any) -> dict[str, Any]:
    last = 0 if tick_age_s is None else NOW - int(tick_age_s * S)
    return _beat(0.5, interval_s=1.0, counters={"connected": 1, "last_tick_wall_ns": last},
                 **overrides)


def test_judge_live_feed_connected_but_no_tick_for_20s_fails_on_progress() -> None:
    # the reproduction: max_downtime_s = 5, 20 s of silence, `connected` still 1
    verdict = judge(_run(config=LIVE_CONFIG), _live_beat(20.0), [], NOW)
    assert verdict.problems == (
        "live feed stalled: last admitted tick 20.0 s ago, limit 6 s"
        " (max_downtime_s 5 + heartbeat interval 1)",
    )
    assert verdict.details["tick_limit_s"] == 6.0


def test_judge_live_feed_tick_just_inside_bound_ok_just_past_fails() -> None:
    assert judge(_run(config=LIVE_CONFIG), _live_beat(5.999), [], NOW).ok
    assert not judge(_run(config=LIVE_CONFIG), _live_beat(6.001), [], NOW).ok


def test_judge_live_feed_no_tick_yet_judged_from_the_run_start() -> None:
    assert judge(_run(config=LIVE_CONFIG, started_wall_ns=NOW - 3 * S), _live_beat(None),
                 [], NOW).ok
    verdict = judge(_run(config=LIVE_CONFIG), _live_beat(None), [], NOW)  # started 100 s ago
    assert verdict.problems[0].startswith(
        "live feed stalled: no tick admitted since the run started 100.0 s ago"
    )


def test_judge_progress_applies_only_to_a_running_live_feed() -> None:
    quiet = _live_beat(500.0)
    assert judge(_run(), quiet, [], NOW).ok  # synthetic source: no network progress to judge
    replay = _run(command="replay", config=LIVE_CONFIG)
    assert judge(replay, quiet, [], NOW).ok
    ended = _run(config=LIVE_CONFIG, ended_wall_ns=NOW - S, exit_code=10)
    assert judge(ended, quiet, [], NOW).problems == (
        "engine stopped: run run-1 ended not cleanly with exit code 10",
    )


def test_judge_live_feed_without_max_downtime_recorded_fails() -> None:
    config = {"engine": {"heartbeat_interval_s": 1.0}, "ingest": {"source": "websocket"}}
    verdict = judge(_run(config=config), _live_beat(1.0), [], NOW)
    assert verdict.problems == (
        "live feed: no max_downtime_s recorded with the run's configuration",
    )


def test_format_result_pass_and_fail_lines() -> None:
    assert format_result([]) == "PASS"
    assert format_result(["a", "b"]) == "FAIL: a; b"


# -- against real databases ------------------------------------------------------------


@pytest.fixture(scope="module")
def replay_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay_database(tmp_path_factory.mktemp("health") / "replay.db")


@pytest.fixture
def live_db(replay_db: Path, tmp_path: Path) -> Path:
    path = tmp_path / "live.db"
    live_copy(replay_db, path, heartbeat_age_s=1.0)
    return path


def test_database_verdict_live_copy_passes(live_db: Path) -> None:
    verdict = database_verdict(ReadOnlyDatabase(live_db), time.time_ns())
    assert verdict.ok, verdict.problems


def test_database_verdict_journal_mode_delete_fails(live_db: Path) -> None:
    with sqlite3.connect(live_db) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    verdict = database_verdict(ReadOnlyDatabase(live_db), time.time_ns())
    assert verdict.problems == ("PRAGMA journal_mode is 'delete', required wal",)


def test_database_verdict_missing_file_fails(tmp_path: Path) -> None:
    verdict = database_verdict(ReadOnlyDatabase(tmp_path / "none.db"), time.time_ns())
    assert len(verdict.problems) == 1 and "does not exist" in verdict.problems[0]


async def test_healthz_live_copy_200_then_stale_clock_503(live_db: Path) -> None:
    app = build_app(str(live_db))
    reply = await asgi_get(app, "/healthz")
    assert reply.status == 200, reply.text
    assert reply.json()["status"] == "ok"
    later = build_app(str(live_db), now_wall_ns=lambda: time.time_ns() + 60 * S)
    reply = await asgi_get(later, "/healthz")
    assert reply.status == 503
    assert reply.json()["problems"][0].startswith("heartbeat stale")


# -- host checks -----------------------------------------------------------------------


def _fake_systemctl(tmp_path: Path, state: str, code: int) -> str:
    path = tmp_path / "systemctl"
    path.write_text(f"#!/bin/sh\necho {state}\nexit {code}\n")
    path.chmod(0o755)
    return str(path)


def test_service_problems_active_unit_passes(tmp_path: Path) -> None:
    systemctl = _fake_systemctl(tmp_path, "active", 0)
    assert service_problems("x.service", systemctl=systemctl, booted=lambda: True) == []


def test_service_problems_inactive_unit_fails_with_state(tmp_path: Path) -> None:
    systemctl = _fake_systemctl(tmp_path, "failed", 3)
    assert service_problems("x.service", systemctl=systemctl, booted=lambda: True) == [
        "service x.service is not active (failed)"
    ]


def test_service_problems_without_systemd_is_skipped(tmp_path: Path) -> None:
    systemctl = _fake_systemctl(tmp_path, "failed", 3)
    assert service_problems("x.service", systemctl=systemctl, booted=lambda: False) == []


async def test_dashboard_problems_200_passes_503_reports_reasons_closed_port_fails(
    live_db: Path, replay_db: Path
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            live_url = await serve_dashboard(nursery, live_db)
            stopped_url = await serve_dashboard(nursery, replay_db)
            assert await trio.to_thread.run_sync(dashboard_problems, live_url) == []
            [problem] = await trio.to_thread.run_sync(dashboard_problems, stopped_url)
            expected = f"dashboard {stopped_url}/healthz answered 503: engine stopped"
            assert problem.startswith(expected)
            nursery.cancel_scope.cancel()
    [problem] = dashboard_problems(live_url, timeout_s=5)
    assert problem.startswith(f"dashboard {live_url}/healthz not answering")


# -- the command and the script, in real processes ------------------------------------


async def _health_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "engine", "health", "--unit", "", *args],
        capture_stdout=True, capture_stderr=True, check=False, cwd=REPO, env=engine_env(),
    )


async def _script(db: Path, url: str) -> subprocess.CompletedProcess[bytes]:
    env = engine_env({"HYBRID_ENGINE": f"{sys.executable} -m engine", "HYBRID_ENGINE_DB": str(db),
                      "HYBRID_DASHBOARD_URL": url, "HYBRID_ENGINE_UNIT": ""})
    return await trio.run_process(
        ["sh", str(SCRIPT)], capture_stdout=True, capture_stderr=True, check=False, cwd=REPO,
        env=env,
    )


async def test_health_cli_and_script_pass_then_fail_for_each_reason(
    live_db: Path, replay_db: Path, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            url = await serve_dashboard(nursery, live_db)
            stopped_url = await serve_dashboard(nursery, replay_db)

            result = await _health_cli("--db", str(live_db), "--url", url)
            assert (result.returncode, result.stdout.decode()) == (0, "PASS\n")
            result = await _script(live_db, url)
            assert (result.returncode, result.stdout.decode()) == (0, "PASS\n")

            # the engine stopped: the database says so and so does the dashboard
            result = await _health_cli("--db", str(replay_db), "--url", stopped_url)
            out = result.stdout.decode()
            assert result.returncode == 1 and out.startswith("FAIL: engine stopped")
            assert f"dashboard {stopped_url}/healthz answered 503" in out
            result = await _script(replay_db, stopped_url)
            assert result.returncode == 1 and result.stdout.decode().startswith("FAIL: ")

            # stale heartbeat (a copy whose last heartbeat is 10 minutes old)
            stale = tmp_path / "stale.db"
            live_copy(replay_db, stale, heartbeat_age_s=600)
            result = await _health_cli("--db", str(stale), "--url", "")
            assert result.returncode == 1
            assert result.stdout.decode().startswith("FAIL: heartbeat stale: last one 6")

            # PRAGMAs: the file left WAL mode
            bad = tmp_path / "delete.db"
            live_copy(replay_db, bad)
            with sqlite3.connect(bad) as conn:
                conn.execute("PRAGMA journal_mode = DELETE")
            result = await _health_cli("--db", str(bad), "--url", "")
            assert result.stdout.decode() == "FAIL: PRAGMA journal_mode is 'delete', required wal\n"

            nursery.cancel_scope.cancel()

    # dashboard not answering
    result = await _health_cli("--db", str(live_db), "--url", url)
    assert result.returncode == 1
    assert result.stdout.decode().startswith(f"FAIL: dashboard {url}/healthz not answering")
    # no database at all
    result = await _health_cli("--db", str(tmp_path / "none.db"), "--url", "")
    assert result.returncode == 1 and "does not exist" in result.stdout.decode()


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl not installed")
async def test_health_cli_service_check_runs_only_under_systemd(live_db: Path) -> None:
    result = await _health_cli("--db", str(live_db), "--url", "")
    booted = systemd_booted()
    assert result.returncode == (1 if booted else 0)


# -- a real engine: /healthz 200 while it runs, 503 once it stopped --------------------


async def test_healthz_real_engine_200_while_running_503_after_stop(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    engine = EngineProcess(
        ["run", "--db", str(db)],
        env={"ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "1", "PYTHONPATH": str(REPO)},
    )
    try:
        await trio.to_thread.run_sync(
            lambda: engine.wait_for(lambda line: line.get("event") == "heartbeat", timeout=30)
        )
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                url = await serve_dashboard(nursery, db)
                reply = await asgi_get(build_app(str(db)), "/healthz")
                assert reply.status == 200, reply.text
                result = await _health_cli("--db", str(db), "--url", url)
                assert result.stdout.decode() == "PASS\n"

                engine.send_signal(signal.SIGINT)
                code = await trio.to_thread.run_sync(engine.finish)
                assert code == 0

                reply = await asgi_get(build_app(str(db)), "/healthz")
                assert reply.status == 503
                assert reply.json()["problems"] == [
                    f"engine stopped: run {reply.json()['run_id']} ended cleanly with exit code 0"
                ]
                result = await _health_cli("--db", str(db), "--url", url)
                assert result.returncode == 1
                assert result.stdout.decode().startswith("FAIL: engine stopped")
                nursery.cancel_scope.cancel()
    finally:
        engine.kill()


def _not_a_database(tmp_path: Path) -> Path:
    path = tmp_path / "not.db"
    path.write_bytes(b"this is a text file, not SQLite\n" * 64)
    return path


def test_database_verdict_not_a_database_file_fails_not_raises(tmp_path: Path) -> None:
    verdict = database_verdict(ReadOnlyDatabase(_not_a_database(tmp_path)), time.time_ns())
    assert len(verdict.problems) == 1 and "not a database" in verdict.problems[0]


async def test_healthz_not_a_database_file_503_with_reason(tmp_path: Path) -> None:
    reply = await asgi_get(build_app(str(_not_a_database(tmp_path))), "/healthz")
    assert reply.status == 503, reply.text
    assert "not a database" in reply.json()["problems"][0]


async def test_health_cli_not_a_database_and_not_http_prints_one_fail_line(
    tmp_path: Path,
) -> None:
    async def not_http(stream: trio.SocketStream) -> None:
        await stream.send_all(b"SSH-2.0-OpenSSH_9.2\r\n")  # not an HTTP status line
        await stream.aclose()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, not_http, 0, host="127.0.0.1")
            [listener] = await nursery.start(serve)
            port = listener.socket.getsockname()[1]
            result = await _health_cli(
                "--db", str(_not_a_database(tmp_path)), "--url", f"http://127.0.0.1:{port}"
            )
            nursery.cancel_scope.cancel()
    out = result.stdout.decode()
    assert result.returncode == 1, result.stderr.decode()[-500:]
    assert out.startswith("FAIL: ") and out.count("\n") == 1, out
    assert "not a database" in out
    assert f"dashboard http://127.0.0.1:{port}/healthz" in out
    assert b"Traceback" not in result.stderr


# -- liveness on progress: a real database, the real CLI, the systemd watchdog ----------


def _live_feed_database(path: Path, tick_age_s: float) -> None:
    """A running live-feed run whose heartbeat is fresh but whose last tick is old."""
    store = SqliteStore.open(path)
    try:
        now = time.time_ns()
        store.start_run("run-live", os.getpid(), "run", "shadow", now - 60 * S, "test",
                        json.dumps(LIVE_CONFIG))
        counters = Counters(connected=1, last_tick_wall_ns=now - int(tick_age_s * S))
        store.write_heartbeat("run-live", now, 1.0, counters.snapshot(), False, "shadow",
                              "ACTIVE")
    finally:
        store.close()


async def test_health_cli_live_feed_connected_yet_silent_fails_fresh_ticks_pass(
    tmp_path: Path,
) -> None:
    stalled, flowing = tmp_path / "stalled.db", tmp_path / "flowing.db"
    _live_feed_database(stalled, tick_age_s=20.0)
    _live_feed_database(flowing, tick_age_s=0.5)
    result = await _health_cli("--db", str(stalled), "--url", "")
    assert result.returncode == 1
    assert result.stdout.decode().startswith("FAIL: live feed stalled: last admitted tick 2")
    result = await _health_cli("--db", str(flowing), "--url", "")
    assert (result.returncode, result.stdout.decode()) == (0, "PASS\n")


async def test_healthz_and_metrics_live_feed_connected_yet_silent_503_healthy_0(
    tmp_path: Path,
) -> None:
    stalled = tmp_path / "stalled.db"
    _live_feed_database(stalled, tick_age_s=20.0)
    app = build_app(str(stalled))
    reply = await asgi_get(app, "/healthz")
    assert reply.status == 503
    body = reply.json()
    assert body["problems"][0].startswith("live feed stalled: last admitted tick 2")
    assert body["tick_limit_s"] == 6.0 and body["tick_age_s"] >= 20.0
    metrics = (await asgi_get(app, "/metrics")).text
    assert "hybrid_engine_healthy 0.0" in metrics
    assert "hybrid_engine_connected 1.0" in metrics  # the flag says up; progress says no


class _Notifier(Notifier):
    def __init__(self) -> None:
        super().__init__(None, watchdog_interval_s=1.0)
        self.pings: list[float] = []

    def watchdog(self) -> None:
        self.pings.append(trio.current_time())


async def test_watchdog_withheld_once_the_live_feed_admits_no_tick_past_the_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # max_downtime_s 5 + heartbeat 1: pings while a tick moved within 6 s, then none
    config = Config(engine=EngineSection(heartbeat_interval_s=1.0),
                    ingest=IngestSection(source=Source.WEBSOCKET, max_downtime_s=5.0))
    notifier = _Notifier()
    state = RunState(config=config, counters=Counters(), notifier=notifier, run_id="r")
    start = trio.current_time()
    with trio.move_on_after(20.5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watchdog_task, state, lambda: 0)
            await trio.sleep(2.5)
            state.counters.last_tick_wall_ns = 123  # a tick at 2.5 s
            await trio.sleep(1000)
    assert [t - start for t in notifier.pings] == [float(t) for t in range(10)]


async def test_watchdog_replay_source_not_judged_on_feed_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(ingest=IngestSection(source=Source.REPLAY, max_downtime_s=5.0))
    notifier = _Notifier()
    state = RunState(config=config, counters=Counters(), notifier=notifier, run_id="r")
    with trio.move_on_after(20.5):
        await watchdog_task(state, lambda: 0)
    assert len(notifier.pings) == 21


@pytest.mark.parametrize("interval", ["abc", "NaN"])
async def test_health_cli_hostile_heartbeat_row_prints_one_fail_line_no_traceback(
    live_db: Path, interval: str
) -> None:
    # The engine writes a finite interval; a row holding anything else (corruption, a
    # hand edit) is an unhealthy verdict, never a traceback from the healthcheck.
    with sqlite3.connect(live_db) as conn:
        conn.execute(
            "UPDATE heartbeats SET interval_s = ?"
            " WHERE hb_id = (SELECT MAX(hb_id) FROM heartbeats)",
            (interval,),
        )
    result = await _health_cli("--db", str(live_db), "--url", "", "--unit", "")
    out = result.stdout.decode()
    assert result.returncode == 1, result.stderr.decode()[-500:]
    assert out == "FAIL: health unreadable: ValueError reading the latest run or heartbeat\n"
    assert b"Traceback" not in result.stderr
