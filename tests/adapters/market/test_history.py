"""History files (Binance public dumps, Tardis CSV) replayed by a real engine process.

How each file is made:

* ``tests/data/history/tardis_trades.csv`` -- the real Tardis.dev sample, a
  byte-identical copy (``PROVENANCE.md`` beside it).
* Binance dumps -- written here by ``write_dump`` from the real bundled capture
  ``replays/btcusdt_20240808.gz``: every ``btcusdt@trade`` message (read with the
  standard ``json`` module, not the engine's decoder) becomes one row, in the order
  of the capture. ``trades`` layout: ``t,p,q,p*q,T,m,M``; ``aggTrades`` layout: each
  trade its own aggregate, ``t,p,q,t,t,T,m,M``; ``T`` in ms as recorded, or times
  1000 for the µs layout. The capture crosses midnight UTC, so splitting its rows
  by UTC day gives a real two-day history (``BTCUSDT-trades-2024-08-08`` and ``-09``).

The independent reference: the test parses the same files with ``csv`` and
``Decimal`` and runs ``engine.proof.strategy.reference`` (the strategy written the
obvious way, with Fractions) over the rows merged by event time; the signals the
engine persisted must equal its signals.
"""

from __future__ import annotations

import csv
import gzip
import json
import sqlite3
import time
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.adapters.market.capture import sniff_capture
from engine.adapters.market.history import (
    HistoryFormat,
    binance_name,
    row_decoder,
)
from engine.core.events import Signal, Tick
from engine.proof.strategy import reference
from engine.runtime.identity import identify_capture
from tests.fakes.engine_process import REAL_CAPTURE, parse_logs, run_engine

HISTORY = Path(__file__).resolve().parents[2] / "data" / "history"
TARDIS = HISTORY / "tardis_trades.csv"
DAY_NS = 86_400 * 10**9
FAST, SLOW, BAR_S = 5, 20, 1  # the default [strategy]


def capture_trades() -> list[dict[str, Any]]:
    """The trade messages of the real capture, as Binance sent them (``data``)."""
    out = []
    with gzip.open(REAL_CAPTURE, "rt", encoding="utf-8") as f:
        for line in f:
            _, _, payload = line.partition(" ")
            msg = json.loads(payload)
            data = msg.get("data", {})
            if data.get("e") == "trade":
                out.append(data)
    return out


def dump_row(trade: dict[str, Any], layout: str, us: bool) -> str:
    t, p, q, m, big_m = trade["t"], trade["p"], trade["q"], trade["m"], trade["M"]
    time = trade["T"] * 1000 if us else trade["T"]
    if layout == "trades":
        return f"{t},{p},{q},{Decimal(p) * Decimal(q)},{time},{m},{big_m}\n"
    return f"{t},{p},{q},{t},{t},{time},{m},{big_m}\n"


def write_dump(
    folder: Path, symbol: str, layout: str, *, us: bool = False, zipped: bool | str = False,
    trades: list[dict[str, Any]] | None = None, price_factor: Decimal | None = None,
) -> list[Path]:
    """The capture's trades as Binance dump files, one per UTC day (see the module docstring)."""
    rows = capture_trades() if trades is None else trades
    by_day: dict[int, list[str]] = {}
    for row in rows:
        trade = row if price_factor is None else {**row, "p": str(Decimal(row["p"]) * price_factor)}
        by_day.setdefault(trade["T"] * 10**6 // DAY_NS, []).append(dump_row(trade, layout, us))
    paths = []
    for day, lines in sorted(by_day.items()):
        y, mo, d = time.gmtime(day * 86_400)[:3]
        stem = f"{symbol}-{layout}-{y:04d}-{mo:02d}-{d:02d}"
        text = "".join(lines)
        if zipped == "gz":
            path = folder / f"{stem}.csv.gz"
            path.write_bytes(gzip.compress(text.encode("ascii")))
        elif zipped:
            path = folder / f"{stem}.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(f"{stem}.csv", text)
        else:
            path = folder / f"{stem}.csv"
            path.write_text(text, encoding="ascii")
        paths.append(path)
    return paths


def reference_ticks(path: Path) -> list[Tick]:
    """The test's own reading of a history file (``csv`` + ``Decimal``)."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            text = z.read(z.namelist()[0]).decode("ascii")
    elif path.suffix == ".gz":
        text = gzip.decompress(path.read_bytes()).decode("ascii")
    else:
        text = path.read_text(encoding="ascii")
    rows = list(csv.reader(text.splitlines()))
    ticks = []
    if rows[0][0] == "exchange":  # Tardis
        for ex, sym, ts, local, tid, _side, p, q in rows[1:]:
            ticks.append(Tick(event_id=f"{ex}:{sym}:{tid}", venue=ex, symbol=sym,
                              trade_id=int(tid), ts_event=int(ts) * 1000,
                              ts_recv=int(local) * 1000, price=Decimal(p), qty=Decimal(q)))
        return ticks
    symbol = path.name.split("-")[0]
    time_col = 4 if len(rows[0]) == 7 else 5
    for row in rows:
        t = int(row[time_col])
        ns = t * 1000 if t >= 10**14 else t * 10**6
        ticks.append(Tick(event_id=f"binance:{symbol}:{row[0]}", venue="binance", symbol=symbol,
                          trade_id=int(row[0]), ts_event=ns, ts_recv=ns,
                          price=Decimal(row[1]), qty=Decimal(row[2])))
    return ticks


def expected_signals(paths: list[Path]) -> list[tuple[str, str, int, str]]:
    ticks = [t for p in paths for t in reference_ticks(p)]
    merged = sorted(ticks, key=lambda t: t.ts_event)  # stable: ties keep the file order
    return [
        (s.signal_id, s.side.value, s.ts_event, str(s.price))
        for s in reference(merged, FAST, SLOW, BAR_S)
        if isinstance(s, Signal)
    ]


def replay(tmp_path: Path, *sources: str | Path) -> tuple[sqlite3.Connection, dict[str, Any]]:
    db = tmp_path / "engine.db"
    proc = run_engine(["replay", *map(str, sources), "--db", str(db)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shutdown = next(ln for ln in parse_logs(proc.stdout) if ln.get("event") == "clean_shutdown")
    return sqlite3.connect(db), shutdown


def persisted_signals(conn: sqlite3.Connection) -> list[tuple[str, str, int, str]]:
    return [tuple(r) for r in conn.execute(
        "SELECT signal_id, side, ts_event, price FROM signals ORDER BY rowid")]


def test_history_tardis_sample_replays_with_reference_signals(tmp_path: Path) -> None:
    assert sniff_capture(TARDIS) == "tardis-trades"
    want = expected_signals([TARDIS])
    assert len(want) > 50  # the sample does cross: the comparison is not of two empties
    conn, shutdown = replay(tmp_path, TARDIS)
    assert persisted_signals(conn) == want
    assert conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0] == 9999
    venue, ts_recv = conn.execute(
        "SELECT venue, ts_recv FROM ticks ORDER BY rowid LIMIT 1").fetchone()
    assert (venue, ts_recv) == ("binance-futures", 1582329602418379000)  # local_timestamp
    assert shutdown["parse_errors"] == 0 and shutdown["ingest_processed"] == 9999


@pytest.mark.parametrize(
    ("layout", "us", "zipped"),
    [("trades", False, True), ("trades", True, False), ("aggTrades", False, False),
     ("aggTrades", True, True), ("trades", True, "gz")],
)
def test_history_binance_dump_two_days_reference_signals(
    tmp_path: Path, layout: str, us: bool, zipped: bool | str
) -> None:
    folder = tmp_path / "dumps"
    folder.mkdir()
    paths = write_dump(folder, "BTCUSDT", layout, us=us, zipped=zipped)
    assert [p.name.split("-", 2)[2][:10] for p in paths] == ["2024-08-08", "2024-08-09"]
    name = "binance-trades" if layout == "trades" else "binance-aggtrades"
    assert {sniff_capture(p) for p in paths} == {name}
    want = expected_signals(paths)
    assert len(want) > 10
    conn, shutdown = replay(tmp_path, folder)  # a directory: both days, merged
    assert persisted_signals(conn) == want
    assert shutdown["ingest_processed"] == 9757
    assert shutdown["parse_errors"] == shutdown["refused_event_time"] == 0


def test_history_single_day_file_and_glob_of_two_symbols_merged_by_event_time(
    tmp_path: Path,
) -> None:
    """BTCUSDT's real trades plus an ETHUSDT file made of the same rows at 1/20 the price
    (a second symbol interleaved in time, so the merge order matters)."""
    folder = tmp_path / "dumps"
    folder.mkdir()
    trades = capture_trades()
    btc = write_dump(folder, "BTCUSDT", "trades", trades=trades)
    eth = write_dump(folder, "ETHUSDT", "trades", trades=trades[::3],
                     price_factor=Decimal("0.05"))
    (tmp_path / "one").mkdir()
    single, _ = replay(tmp_path / "one", btc[0])
    assert persisted_signals(single) == expected_signals([btc[0]])
    conn, shutdown = replay(tmp_path, str(folder / "*-trades-2024-08-0?.csv"))
    everything = sorted(btc + eth)  # the glob's order: by name
    assert persisted_signals(conn) == expected_signals(everything)
    symbols = {s for (s,) in conn.execute("SELECT DISTINCT symbol FROM signals")}
    assert symbols == {"BTCUSDT", "ETHUSDT"}
    assert shutdown["ingest_processed"] == len(trades) + len(trades[::3])


def test_history_bad_rows_are_counted_and_out_of_day_rows_refused(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    day = 1723075200000  # 2024-08-08T00:00Z in ms
    path.write_bytes(
        f"1,60000.01,0.5,30000.005,{day + 1000},True,True\n"
        f"2,60000.02,0.5,30000.01,{day + 2000},False,True\n".encode()
        + b"3,60000.0000000000001,0.5,1,1723075203000,True,True\n"  # 13 decimals: refused_number
        + b"4,60000.00,0.5\n"  # 3 fields
        + "5,60000.00,0.5,1,1723075205000,True,Tr\u00fce\n".encode()  # not ASCII
        + f"6,60000.03,0.5,30000.015,{day - 3_600_000},True,True\n".encode()  # a day early
        + f"7,60000.04,0.5,30000.02,{(day + 3000) * 1000},True,True\n".encode()  # µs row
    )
    conn, shutdown = replay(tmp_path, path)
    ids = [i for (i,) in conn.execute("SELECT trade_id FROM ticks ORDER BY rowid")]
    assert ids == [1, 2, 7]
    assert shutdown["ingest_received"] == 7
    assert shutdown["parse_errors"] == 3 and shutdown["refused_number"] == 1
    assert shutdown["refused_event_time"] == 1


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda d: write(d / "x.csv", b"date,open,high,low,close\n2024-01-01,1,2,0.5,1.5\n"),
         "no market data in a supported format"),
        (lambda d: write(d / "trades.csv", b"1,60000.01,0.5,30000.005,1723075201000,True,True\n"),
         "symbol comes from its name"),
        (lambda d: write(d / "BTCUSDT-trades-2024-08-08.zip", b"PK\x03\x04 not really"),
         "not a readable zip"),
        (lambda d: d / "nothing-*.csv", "the pattern matches no file"),
    ],
)
def test_history_unusable_file_exits_12_naming_it(
    tmp_path: Path, make: Any, says: str
) -> None:
    target = make(tmp_path)
    proc = run_engine(["replay", str(target), "--db", str(tmp_path / "e.db")])
    assert proc.returncode == 12, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert str(target) in proc.stderr and says in proc.stderr


def test_history_zip_with_two_members_and_a_mix_with_captures_exit_12(tmp_path: Path) -> None:
    two = tmp_path / "BTCUSDT-trades-2024-08-08.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a.csv", "1,60000.01,0.5,30000.005,1723075201000,True,True\n")
        z.writestr("b.csv", "2,60000.01,0.5,30000.005,1723075202000,True,True\n")
    proc = run_engine(["replay", str(two), "--db", str(tmp_path / "e.db")])
    assert proc.returncode == 12 and "holds one file, this one 2" in proc.stderr
    dump = write_dump(tmp_path, "BTCUSDT", "trades")[0]
    proc = run_engine(["replay", str(REAL_CAPTURE), str(dump), "--db", str(tmp_path / "f.db")])
    assert proc.returncode == 12 and "not both" in proc.stderr


def test_history_identity_records_each_file_and_its_first_trade(tmp_path: Path) -> None:
    paths = write_dump(tmp_path, "BTCUSDT", "aggTrades", zipped=True)
    first = identify_capture(paths[0])
    assert first.first_event_ns == capture_trades()[0]["T"] * 10**6
    assert identify_capture(TARDIS).first_event_ns == 1582329602111000000
    conn, _ = replay(tmp_path, tmp_path)
    (captures,) = conn.execute("SELECT source_json FROM runs").fetchone()
    assert [c["name"] for c in json.loads(captures)["captures"]] == [p.name for p in paths]


def test_history_binance_name_gives_symbol_and_day_clock() -> None:
    symbol, clock = binance_name(Path("ethusdt-aggTrades-2025-01-31.zip"))
    assert symbol == "ETHUSDT"
    assert clock.end_ns - clock.start_ns == DAY_NS
    assert clock.start_ns == 1738281600 * 10**9
    _, month = binance_name(Path("BTCUSDT-trades-2024-02.csv"))
    assert month.end_ns - month.start_ns == 29 * DAY_NS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120) | st.text(alphabet="0123456789.,eE-+TrueFalse ",
                                                 max_size=90).map(str.encode), max_size=8),
       st.sampled_from(list(HistoryFormat)))
def test_history_rows_never_raise_and_admit_only_bounded_values(
    lines: list[bytes], fmt: HistoryFormat
) -> None:
    """The admission path of a history row: whatever the bytes, a tick or a counted refusal."""
    decode = row_decoder(fmt, Path("BTCUSDT-trades-2024-08-08.csv"))
    ticks, bad, rows = decode(lines)
    assert len(ticks) + len(bad) == rows <= len(lines)
    for tick in ticks:
        assert Decimal("1E-12") <= tick.price < Decimal("1E15")
        assert Decimal("1E-12") <= tick.qty < Decimal("1E15")
        assert 0 <= tick.trade_id < 2**63 and 0 <= tick.ts_event < 2**63
