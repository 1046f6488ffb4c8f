"""The real CLI in a subprocess against the fake exchange: exit 10, exit 11, no duplicate
persisted after a reconnect, record -> replay gives the same ticks, the record command.

The fake exchange runs in the test's Trio loop; the engine is a real child process
(``python -m engine ...``); its JSON log lines are awaited in a worker thread.
"""

from __future__ import annotations

import gzip
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.adapters.market.capture import iter_capture
from tests.fakes.engine_process import EngineProcess, run_engine
from tests.fakes.fake_exchange import End, Session, binance_tape, open_fake_exchange
from tests.fakes.feed_cli import final_heartbeat, finish, interrupt_after, wait_log, write_config

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::ResourceWarning")]


def ticks_table(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT event_id, symbol, ts_event, ts_recv, price, qty FROM ticks ORDER BY event_id"
        ).fetchall()


async def test_run_budget_spent_exits_network_10(tmp_path: Path) -> None:
    async with open_fake_exchange("binance", [Session(reject=503)]) as fake:
        config = write_config(tmp_path, fake, max_reconnect_failures=3)
        engine = EngineProcess(["run", "--config", str(config)])
        code = await finish(engine)
    assert code == 10, engine.lines[-5:]
    assert fake.handshakes == 3
    [give_up] = engine.events("ws_give_up")
    assert "3 consecutive attempts without market data" in give_up["reason"]
    assert [e["exit_code"] for e in engine.events("engine_stopped")] == [10]


async def test_run_parse_error_rate_exits_parse_11_good_ticks_kept(tmp_path: Path) -> None:
    async with open_fake_exchange("binance", [Session(frames=200, malformed_every=1)]) as fake:
        config = write_config(tmp_path, fake, max_parse_errors_per_min=5)
        engine = EngineProcess(["run", "--config", str(config)])
        code = await finish(engine)
    assert code == 11, engine.lines[-5:]
    heartbeat = final_heartbeat(engine)
    assert heartbeat["parse_errors"] == 6
    # the good trades accepted before the stop were drained to disk
    assert heartbeat["ingest_processed"] == 6
    assert len(ticks_table(tmp_path / "engine.db")) == 6
    assert [e["exit_code"] for e in engine.events("engine_stopped")] == [11]


async def test_run_reconnect_resend_no_duplicate_persisted_replay_same_ticks(
    tmp_path: Path,
) -> None:
    capture = tmp_path / "live.gz"
    sessions = [Session(frames=150, then=End.ABORT), Session(resend=20, frames=150)]
    async with open_fake_exchange("binance", sessions) as fake:
        # a bar per trade: plenty of decisions for the two runs to agree on
        strategy = "[strategy]\nfast = 2\nslow = 5\nbar_seconds = 0\n"
        config = write_config(tmp_path, fake, strategy, record_path=str(capture))
        engine = EngineProcess(["run", "--config", str(config)])
        try:
            await wait_log(
                engine,
                lambda line: (
                    line.get("event") == "heartbeat" and line.get("ingest_processed") == 300
                ),
            )
            engine.send_signal(signal.SIGINT)
        finally:
            code = await finish(engine)
    assert code == 0, engine.lines[-5:]
    heartbeat = final_heartbeat(engine)
    assert (heartbeat["duplicates"], heartbeat["reconnects"], heartbeat["gaps"]) == (20, 1, 0)
    live = ticks_table(tmp_path / "engine.db")
    expected = sorted(f"binance:BTCUSDT:{f.trade_id}" for f in binance_tape()[:300])
    assert [row[0] for row in live] == expected

    # the recording replays (a fresh process, a fresh database) to the same ticks
    assert len([ln for ln in iter_capture(capture) if ln.ts_recv >= 0]) == 320
    replay_db = tmp_path / "replay.db"
    args = ["replay", str(capture), "--config", str(config), "--db", str(replay_db)]
    result = await trio.to_thread.run_sync(lambda: run_engine(args))
    assert result.returncode == 0, result.stderr
    assert ticks_table(replay_db) == live
    digests = [
        run_engine(["digest", "--db", str(db)]).stdout.strip()
        for db in (tmp_path / "engine.db", replay_db)
    ]
    # ... and to the same decisions: the resent trades are dropped in the replay too
    assert digests[0] == digests[1] != ""
    with sqlite3.connect(replay_db) as conn:
        assert conn.execute("SELECT count(*) FROM signals").fetchone()[0] > 0


async def test_record_command_sigint_closes_capture_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "rec" / "btc.gz"
    sessions = [Session(frames=100, then=End.CLOSE), Session(frames=0)]
    async with open_fake_exchange("binance", sessions) as fake:
        config = write_config(tmp_path, fake)
        engine = EngineProcess(
            ["record", "--venue", "binance", "--symbols", "BTCUSDT", "--out", str(out),
             "--url", fake.url, "--config", str(config)]
        )  # fmt: skip
        code = await interrupt_after(
            engine,
            lambda line: line.get("event") == "ws_disconnected",
            lambda line: line.get("event") == "ws_connected",
        )
    assert code == 0, engine.lines[-5:]
    [done] = engine.events("record_finished")
    assert done["stopped_by"] == "SIGINT"
    assert (done["frames_written"], done["frames_dropped"]) == (100, 0)
    raw = gzip.decompress(out.read_bytes())  # a complete gzip stream: closed cleanly
    sent = [f.text.encode() for f in fake.sent]
    assert [line.partition(b" ")[2] for line in raw.splitlines()] == sent
    assert fake.paths[0] == "/stream?streams=btcusdt@trade"


async def test_record_command_duration_coinbase_subscribes(tmp_path: Path) -> None:
    out = tmp_path / "cb.txt"
    async with open_fake_exchange("coinbase", [Session(frames=20)]) as fake:
        engine = EngineProcess(
            ["record", "--venue", "coinbase", "--symbols", "SKL-USD", "BAND-GBP",
             "--out", str(out), "--url", fake.url, "--duration", "1.5"]
        )  # fmt: skip
        code = await finish(engine)
    assert code == 0, engine.lines[-5:]
    assert fake.subscriptions[0]["product_ids"] == ["SKL-USD", "BAND-GBP"]
    lines = out.read_bytes().splitlines()
    assert lines[0].split(b" ", 1)[1].startswith(b'{"type":"subscriptions"')
    assert len(lines) == 1 + len(fake.sent)


def test_record_command_bad_duration_exits_config_12(tmp_path: Path) -> None:
    result = run_engine(["record", "--out", str(tmp_path / "x"), "--duration", "-1"])
    assert result.returncode == 12
    assert "--duration" in result.stderr


async def test_run_coinbase_unknown_product_exits_config_12(tmp_path: Path) -> None:
    async with open_fake_exchange("coinbase") as fake:
        config = write_config(tmp_path, fake, symbols=["BTC-XYZ"])
        engine = EngineProcess(["run", "--config", str(config)])
        code = await finish(engine)
    assert code == 12, engine.lines[-5:]
    assert fake.handshakes == 1
    assert [e["exit_code"] for e in engine.events("engine_stopped")] == [12]


async def test_run_record_path_that_cannot_be_opened_exits_config_12(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    async with open_fake_exchange("binance") as fake:
        config = write_config(tmp_path, fake, record_path=str(blocker / "live.gz"))
        engine = EngineProcess(["run", "--config", str(config)])
        code = await finish(engine)
    assert code == 12, engine.lines[-5:]
    assert [e["exit_code"] for e in engine.events("engine_stopped")] == [12]


def test_record_command_out_that_cannot_be_opened_exits_config_12(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    out = blocker / "x.gz"
    result = run_engine(["record", "--symbols", "BTCUSDT", "--url", "ws://127.0.0.1:9",
                         "--out", str(out), "--duration", "1"])
    assert result.returncode == 12, result.stderr[-500:]
    assert "Traceback" not in result.stderr
    assert f"record path {out}: cannot open" in result.stderr


async def test_record_command_coinbase_unknown_product_exits_config_12(tmp_path: Path) -> None:
    out = tmp_path / "cb.txt"
    async with open_fake_exchange("coinbase") as fake:
        engine = EngineProcess(
            ["record", "--venue", "coinbase", "--symbols", "BTC-XYZ",
             "--out", str(out), "--url", fake.url, "--duration", "30"]
        )  # fmt: skip
        code = await finish(engine)
    assert code == 12, engine.lines[-5:]
    assert fake.handshakes == 1
    assert b"BTC-XYZ is not a valid product" in out.read_bytes()  # the refusal is recorded too


def test_run_unusable_ingest_url_exits_config_12(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(
        f'[engine]\ndb_path = "{tmp_path / "e.db"}"\n'
        '[ingest]\nsource = "websocket"\nsymbols = ["BTCUSDT"]\nurl = "https://127.0.0.1:1"\n'
    )
    result = run_engine(["run", "--config", str(config)], timeout=60)
    assert result.returncode == 12, result.stderr[-500:]
    assert "ingest.url" in result.stdout + result.stderr
