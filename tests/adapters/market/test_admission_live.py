"""Admission on the live feed: a hostile venue over a real WebSocket (the fake exchange on
127.0.0.1, port 0) sends unsubscribed and junk symbols, an outlier print, a huge trade id
and trades stamped in 2100 between real trades. Nothing of it is stored or traded.

Issue 10: a Binance feed subscribed to BTCUSDT stored and PAPER-traded ETHUSDT and a junk
symbol ``ZZZ' OR 1=1--`` (192 fills); Coinbase the same for 8 other products.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.engine_process import EngineProcess
from tests.fakes.fake_exchange import (
    Session,
    TapeFrame,
    binance_tape,
    coinbase_tape,
    ingest_section,
    open_fake_exchange,
    running_stream,
    take,
)
from tests.fakes.feed_cli import final_heartbeat, finish, wait_log, write_config

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

YEAR_2100_MS = 4_102_444_800_000
JUNK = "ZZZ' OR 1=1--"
REAL_BTC = 200


def hostile_binance_tape() -> tuple[list[TapeFrame], int]:
    """Real BTCUSDT trades stamped now, with hostile frames between them (all served on the
    ``btcusdt@trade`` stream, as a hostile venue would); returns the tape and its real count."""
    now_ms = time.time_ns() // 1_000_000
    frames: list[TapeFrame] = []
    for i, real in enumerate(binance_tape()[:REAL_BTC]):
        message = json.loads(real.text)
        message["data"]["E"] = message["data"]["T"] = now_ms + i
        frames.append(TapeFrame(json.dumps(message), "btcusdt", real.trade_id))
        data = dict(message["data"])
        hostile: dict[str, Any] | None = None
        if i % 10 == 5:
            hostile = dict(data, s="ETHUSDT", t=900_000 + i)
        elif i % 25 == 7:
            hostile = dict(data, s=JUNK, t=800_000 + i)
        elif i == 50:
            hostile = dict(data, p="999999999999999", t=data["t"] + 1)  # also takes the next id
        elif i == 60:
            hostile = dict(data, t=2**63 - 1)
        elif i == 70:
            hostile = dict(data, T=YEAR_2100_MS, E=YEAR_2100_MS, t=700_000)
        if hostile is not None:
            frames.append(TapeFrame(json.dumps({"stream": "btcusdt@trade", "data": hostile}),
                                    "btcusdt", None))  # fmt: skip
    return frames, REAL_BTC


async def test_live_binance_hostile_symbols_times_ids_prices_never_admitted() -> None:
    tape, real = hostile_binance_tape()
    async with open_fake_exchange("binance", [Session()], tape=tape) as fake:
        fake.restamp = False  # the tape carries its own (hostile) times
        async with running_stream(ingest_section(fake)) as (stream, receive):
            ticks = await take(receive, real - 1)  # the outlier took the id of trade 51
    counters = stream.counters
    assert {t.symbol for t in ticks} == {"BTCUSDT"}
    assert all(t.price < 100_000 for t in ticks)
    assert max(t.trade_id for t in ticks) < 2**40
    assert counters.refused_unsubscribed == 20 and counters.refused_symbol == 8
    assert (counters.refused_price_band, counters.refused_id_jump) == (1, 1)
    assert counters.refused_event_time == 1


async def test_live_coinbase_other_products_never_admitted() -> None:
    real = [f for f in coinbase_tape() if f.trade_id is not None and f.symbol == "SKL-BTC"][:20]
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000Z"
    tape = []
    for frame in real:
        message = json.loads(frame.text)
        message["time"] = now
        tape.append(TapeFrame(json.dumps(message), "SKL-BTC", frame.trade_id))
        other = dict(message, product_id="BTC-USD", trade_id=message["trade_id"] + 10**6)
        tape.append(TapeFrame(json.dumps(other), "SKL-BTC", None))
    async with open_fake_exchange("coinbase", [Session()], tape=tape) as fake:
        fake.restamp = False
        section = ingest_section(fake, symbols=("SKL-BTC",))
        async with running_stream(section) as (stream, receive):
            ticks = await take(receive, len(real))
    assert {t.symbol for t in ticks} == {"SKL-BTC"}
    assert stream.counters.refused_unsubscribed >= len(real) - 1


@pytest.mark.slow
async def test_run_paper_hostile_venue_stores_and_trades_only_the_subscribed_symbol(
    tmp_path: Path,
) -> None:
    tape, real = hostile_binance_tape()
    async with open_fake_exchange("binance", [Session()], tape=tape) as fake:
        fake.restamp = False
        strategy = '[strategy]\nfast = 2\nslow = 5\nbar_seconds = 0\n'
        config = write_config(tmp_path, fake, strategy)
        config.write_text(config.read_text().replace("[engine]\n", '[engine]\nmode = "paper"\n'))
        engine = EngineProcess(["run", "--config", str(config)])
        try:
            await wait_log(
                engine,
                lambda line: line.get("event") == "heartbeat"
                and line.get("ingest_processed") == real - 1,
            )
            engine.send_signal(signal.SIGINT)
        finally:
            code = await finish(engine)
    assert code == 0, engine.lines[-5:]
    with sqlite3.connect(tmp_path / "engine.db") as conn:
        symbols = {s for (s,) in conn.execute("SELECT DISTINCT symbol FROM ticks")}
        filled = {s for (s,) in conn.execute("SELECT DISTINCT symbol FROM fills")}
        top = conn.execute("SELECT MAX(trade_id), MAX(price + 0) FROM ticks").fetchone()
        orders = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    assert symbols == {"BTCUSDT"} and filled <= {"BTCUSDT"}
    assert orders > 0  # it did trade -- only what it subscribed to
    assert top[0] < 2**40 and top[1] < 100_000
    beat = final_heartbeat(engine)
    assert (beat["refused_unsubscribed"], beat["refused_symbol"], beat["refused_price_band"],
            beat["refused_id_jump"], beat["refused_event_time"]) == (20, 8, 1, 1, 1)  # fmt: skip
