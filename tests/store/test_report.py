"""``report``: figures rebuilt from the database, and the conservation audit."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from engine.config.schema import Config, RiskSection
from engine.core.events import Side
from engine.core.execution import Execution
from engine.store.report import MAX_SHOWN_DECIMALS, build_report, shown
from engine.store.sqlite_store import SqliteStore
from tests.fakes.engine_process import REAL_CAPTURE, REPLAYS, run_engine
from tests.fakes.events import signal, tick


def make_db(path: Path) -> Execution:
    """A SHADOW run: BUY, SELL, BUY, then a veto (cap), written through the real store."""
    config = msgspec.structs.replace(
        Config(), risk=RiskSection(max_symbol_exposure_usd=Decimal(150))
    )
    ex = Execution(config)
    t = [tick(n, p) for n, p in enumerate(["60000", "61000", "62000", "62500", "63000"], 1)]
    store = SqliteStore.open(path)
    try:
        for batch in (
            [t[0], signal(t[0], Side.BUY)],
            [t[1], signal(t[1], Side.SELL)],
            [t[2], signal(t[2], Side.BUY)],
            [t[3], signal(t[3], Side.BUY)],
            [t[4], signal(t[4], Side.SELL, price="63000")],
        ):
            store.write_records([*batch, *ex.process(batch[:1])])
            store.write_records([*ex.process(batch[1:])])
    finally:
        store.close()
    return ex


def test_report_rebuilt_from_database_equals_live_ledger(tmp_path: Path) -> None:
    live = make_db(tmp_path / "e.db")
    conn = sqlite3.connect(tmp_path / "e.db")
    report = build_report(conn)
    conn.close()
    assert report.ok
    assert report.fills == 4
    assert report.signals == 5
    assert report.orders_by_state == {"FILLED": 4}
    assert report.vetoes_by_reason == {"RISK_CAP": 1}
    assert report.cash == live.ledger.cash
    assert report.fees == live.ledger.fees
    assert report.positions == {}
    assert report.realised_pnl - report.fees == report.equity == live.equity()


def test_report_cli_json_ok_exits_zero(tmp_path: Path) -> None:
    make_db(tmp_path / "e.db")
    done = run_engine(["report", "--db", str(tmp_path / "e.db"), "--json"])
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout.strip().splitlines()[-1])
    assert data["ok"] is True
    assert data["fills"] == 4
    assert data["trading_state"] == "ACTIVE"


def test_report_cli_tampered_fill_exits_non_zero(tmp_path: Path) -> None:
    make_db(tmp_path / "e.db")
    conn = sqlite3.connect(tmp_path / "e.db")
    with conn:
        conn.execute(
            "UPDATE fills SET fee = fee || '1' WHERE fill_id = (SELECT MIN(fill_id) FROM fills)"
        )
    conn.close()
    done = run_engine(["report", "--db", str(tmp_path / "e.db")])
    assert done.returncode != 0
    assert "conservation      FAILED for 1 fill(s)" in done.stdout


def test_report_partial_fill_booked_twice_fails_fills_vs_orders(tmp_path: Path) -> None:
    make_db(tmp_path / "e.db")
    conn = sqlite3.connect(tmp_path / "e.db")
    with conn:  # a second, conserving copy of a fill: a double-count the audit must catch
        conn.execute(
            "INSERT INTO fills SELECT fill_id || ':dup', order_id, symbol, side, qty, price,"
            " fee, cash_delta, position_delta, ts_event, run_id FROM fills LIMIT 1"
        )
    report = build_report(conn)
    conn.close()
    assert report.conservation_violations == 0
    assert report.fill_mismatches == 1
    assert not report.ok


def test_report_cli_not_a_database_config_exit_12_no_traceback(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    db.write_bytes(b"this is a text file, not SQLite\n" * 64)
    done = run_engine(["report", "--db", str(db)])
    assert done.returncode == 12, done.stderr[-500:]
    assert "Traceback" not in done.stderr
    assert f"--db: {db} is not a readable engine database" in done.stderr



def test_report_cli_sqlite_without_engine_tables_exit_12(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE unrelated (a)")
    done = run_engine(["report", "--db", str(db)])
    assert done.returncode == 12, done.stdout[-500:]
    assert "is not an engine database (no signals, vetoes, orders, order_events, fills" in (
        done.stderr
    )
    assert "conservation" not in done.stdout  # no "all OK" report for a foreign file


AUDIT_AMOUNTS = ("cash", "fees", "realised PnL", "unrealised PnL", "equity")


def test_report_audit_shows_exact_amounts_without_trailing_zeros(tmp_path: Path) -> None:
    """A real PAPER replay: its realised PnL is stored with 28 digits (trailing zeros
    of a pro-rata basis); the text shows each audit amount exactly and readably, the
    JSON keeps the exact strings, and the digest is what it was."""
    db = tmp_path / "paper.db"
    done = run_engine(["replay", str(REAL_CAPTURE), "--config", str(REPLAYS / "paper.toml"),
                       "--db", str(db)])
    assert done.returncode == 0, done.stderr[-2000:]
    before = run_engine(["digest", "--db", str(db)]).stdout
    data = json.loads(run_engine(["report", "--db", str(db), "--json"]).stdout)
    text = run_engine(["report", "--db", str(db)]).stdout
    audit = {line[:18].strip(): line[18:] for line in text.split("\naudit\n", 1)[1].splitlines()
             if line[:1] != " "}  # "label             value", the label 18 wide
    assert len(data["realised_pnl"].split(".")[1]) >= 20  # the long stored form is real
    for label, key in zip(AUDIT_AMOUNTS, ("cash", "fees", "realised_pnl", "unrealised_pnl",
                                          "equity"), strict=True):
        value = audit[label].strip()
        assert Decimal(value) == Decimal(data[key]), label  # exact: same number
        assert not value.endswith("0") and "E" not in value, (label, value)
    symbol, position = next(iter(data["positions"].items()))
    assert f"{symbol} {shown(Decimal(position))} @ {shown(Decimal(data['marks'][symbol]))}" in text
    assert "@ 61685.99\n" in text  # the mark, not 61685.99000000
    assert run_engine(["digest", "--db", str(db)]).stdout == before


FINITE = st.decimals(allow_nan=False, allow_infinity=False, places=None)


@given(FINITE)
def test_shown_is_exact_up_to_its_decimals_else_rounded_and_marked(value: Decimal) -> None:
    text = shown(value)
    assert "E" not in text and "e" not in text and text != "-0"
    if "." in text:
        assert not text.endswith("0")
    places = -int(value.as_tuple().exponent)
    if places <= MAX_SHOWN_DECIMALS:
        assert Decimal(text) == value and not text.startswith("~")
    else:
        number = Decimal(text.removeprefix("~"))
        assert abs(number - value) <= Decimal(1).scaleb(-MAX_SHOWN_DECIMALS) / 2
        assert text.startswith("~") == (number != value)
