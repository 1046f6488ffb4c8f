"""``report``'s trader figures, checked against values computed here from the raw tables.

The reference below reads ``fills`` and ``ticks`` with plain SQL and walks them
with its own arithmetic (no engine code): flat-to-flat round trips by position,
equity at every fill and at the last trade of each price interval, peak-to-trough
drawdown, per-minute changes for Sharpe and Sortino. The database is a real
PAPER replay of the bundled capture in a fresh process.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.events import Fill, Side
from engine.store.figures import Money, PricePoint, figures_builtins, run_figures
from engine.store.report import starting_cash_of
from tests.fakes.engine_process import REAL_TRADES, paper_replay, run_engine

MINUTE_NS = 60 * 10**9


@pytest.fixture(scope="module")
def paper_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return paper_replay(tmp_path_factory.mktemp("paper") / "paper.db")


def _report(db: Path, *extra: str) -> dict[str, Any]:
    done = run_engine(["report", "--db", str(db), "--json", *extra])
    assert done.returncode == 0, done.stderr[-2000:]
    data: dict[str, Any] = json.loads(done.stdout)["run"]
    return data


def _q(value: Decimal, places: int = 2) -> str:
    return str(value.quantize(Decimal(1).scaleb(-places)))


def reference(db: Path) -> dict[str, Any]:
    """Every figure, from the raw rows (see the module docstring)."""
    conn = sqlite3.connect(db)
    fills = conn.execute(
        "SELECT side, qty, price, fee, cash_delta, position_delta, ts_event FROM fills"
        " ORDER BY rowid"
    ).fetchall()
    first, last = conn.execute("SELECT first_event_ns, last_event_ns FROM runs").fetchone()
    ticks = conn.execute("SELECT ts_event, price FROM ticks ORDER BY ts_event, rowid").fetchall()
    conn.close()
    interval = max(10**9, -(-(last - first) // 2000) // 10**9 * 10**9)
    closes: dict[int, tuple[int, Decimal]] = {}
    for ts, price in ticks:  # the last trade of each interval
        closes[ts // interval] = (ts, Decimal(price))
    events = [(ts, 0, ("price", p)) for ts, p in closes.values()]
    events += [(r[6], 1 + i, ("fill", r)) for i, r in enumerate(fills)]
    events.sort(key=lambda e: (e[0], e[1]))

    cash, pos, mark = Decimal(0), Decimal(0), Decimal(0)
    curve = [(first, Decimal(0))]
    trips: list[Decimal] = []
    trip_cash = Decimal(0)
    in_since, exposure = None, 0
    for ts, _, (kind, value) in events:
        if kind == "price":
            mark = value
        else:
            _side, _qty, price, _fee, cash_delta, pos_delta, _ts = value
            before = pos
            pos += Decimal(pos_delta)
            cash += Decimal(cash_delta)
            trip_cash += Decimal(cash_delta)
            mark = Decimal(price)
            if before == 0:
                in_since = ts
            if pos == 0:
                trips.append(trip_cash)
                trip_cash = Decimal(0)
                exposure += ts - in_since
                in_since = None
        curve.append((ts, cash + pos * mark))
    end = max(last, curve[-1][0])
    if in_since is not None:
        exposure += end - in_since
    final = cash + pos * mark
    peak, max_dd = Decimal(0), Decimal(0)
    for _, equity in curve:
        peak = max(peak, equity)
        max_dd = max(max_dd, peak - equity)
    # per-minute samples: the equity in force at each minute boundary crossed, then the end
    samples, minute, held = [Decimal(0)], first // MINUTE_NS, Decimal(0)
    for ts, equity in curve[1:]:
        while minute < ts // MINUTE_NS:
            samples.append(held)
            minute += 1
        held = equity
    samples.append(held)
    changes = [b - a for a, b in itertools.pairwise(samples)]
    mean = sum(changes) / len(changes)
    sd = (sum((c - mean) ** 2 for c in changes) / len(changes)).sqrt()
    down = (sum(min(c, Decimal(0)) ** 2 for c in changes) / len(changes)).sqrt()
    fees = sum(Decimal(r[3]) for r in fills)
    wins = [t for t in trips if t > 0]
    losses = [t for t in trips if t < 0]
    return {
        "fills": len(fills),
        "net_pnl": _q(final),
        "fees": _q(fees),
        "gross_pnl": _q(final + fees),
        "fees_pct_of_loss": _q(fees * 100 / -final, 4),
        "round_trips": len(trips),
        "wins": len(wins),
        "losses": len(losses),
        "worst": _q(min(trips)),
        "best": _q(max(trips)),
        "avg_loss": _q(sum(losses) / len(losses)),
        "expectancy": _q(sum(trips) / len(trips)),
        "max_drawdown": _q(max_dd),
        "sharpe_per_minute": _q(mean / sd, 4),
        "sortino_per_minute": _q(mean / down, 4),
        "exposure_pct": _q(Decimal(exposure) * 100 / (end - first), 4),
        "duration_s": round((end - first) / 1e9),
        "ticks": len(ticks),
        "open_position": pos,
    }


def test_report_figures_match_an_independent_computation_from_the_fills_table(
    paper_db: Path,
) -> None:
    ref = reference(paper_db)
    got = _report(paper_db)
    for key in (
        "net_pnl", "fees", "gross_pnl", "fees_pct_of_loss", "round_trips", "wins", "losses",
        "worst", "best", "avg_loss", "expectancy", "max_drawdown", "sharpe_per_minute",
        "sortino_per_minute", "exposure_pct", "duration_s", "ticks",
    ):
        assert got[key] == ref[key], key
    assert got["ticks"] == REAL_TRADES
    assert got["mode"] == "paper" and got["strategy"] == "sma_cross"
    assert got["strategy_params"] == {"bar_seconds": 1, "fast": 5, "slow": 20}
    assert got["money_decimals"] == 2  # the capture's prices have 2 decimals (61685.99)
    # the trader numbers: 7 round trips, 0 winners, fees 1.50 of the 1.74 loss
    assert (got["round_trips"], got["wins"], got["fees"], got["net_pnl"]) == (
        7, 0, "1.50", "-1.74"
    )
    assert got["open_round_trips"] == (1 if ref["open_position"] else 0)
    assert got["starting_cash"] is None and got["net_pnl_pct"] is None
    assert len(got["trades"]) == got["round_trips"] + got["open_round_trips"]
    assert sum(t["fills"] for t in got["trades"]) == ref["fills"]


def test_text_report_and_trade_list_and_run_selection(paper_db: Path) -> None:
    done = run_engine(["report", "--db", str(paper_db), "--trades"])
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert "net PnL           -1.74\n" in text
    assert "round trips       7 closed, 1 open: 0 wins, 7 losses" in text
    assert "(5 min 46 s), 9757 ticks, BTCUSDT" in text
    assert text.count("  BTCUSDT      2024-08-") == 8  # every round trip listed
    assert "conservation      OK" in text  # the audit follows
    by_number = _report(paper_db, "--run", "1")
    assert by_number == _report(paper_db, "--run", by_number["run_id"]) == _report(paper_db)
    refused = run_engine(["report", "--db", str(paper_db), "--run", "7"])
    assert refused.returncode == 12
    assert refused.stderr.strip().splitlines()[-1].endswith("--run: no run '7' in this database")


def test_starting_cash_is_read_from_the_recorded_configuration() -> None:
    assert starting_cash_of({"execution": {"starting_cash": "1000"}}) == Decimal(1000)
    for bad in ({}, {"execution": {}}, {"execution": {"starting_cash": "x"}},
                {"execution": {"starting_cash": True}}, {"execution": "no"}):
        assert starting_cash_of(bad) is None


def _fill(n: int, side: Side, qty: str, price: str, fee: str, ts: int) -> Fill:
    q, p, f = Decimal(qty), Decimal(price), Decimal(fee)
    delta = q if side is Side.BUY else -q
    return Fill(
        ts_event=ts, fill_id=f"f{n}", order_id=f"o{n}", symbol="X", side=side, qty=q, price=p,
        fee=f, cash_delta=-(delta * p) - f, position_delta=delta,
    )


def test_percent_figures_with_a_starting_balance() -> None:
    fills = [
        _fill(1, Side.BUY, "1", "100", "1", 10 * MINUTE_NS),
        _fill(2, Side.SELL, "1", "90", "1", 20 * MINUTE_NS),
        _fill(3, Side.BUY, "1", "90", "1", 30 * MINUTE_NS),
        _fill(4, Side.SELL, "1", "120", "1", 40 * MINUTE_NS),
    ]
    fig = run_figures(fills, [], start_ns=0, end_ns=60 * MINUTE_NS, starting_cash=Decimal(1000))
    d = figures_builtins(fig, Money(decimals=2, qty_decimals=0))
    assert (d["starting_equity"], d["final_equity"]) == ("1000.00", "1016.00")
    assert d["net_pnl"] == "16.00"
    assert d["net_pnl_pct"] == "1.6000"
    assert (d["wins"], d["losses"], d["best"], d["worst"]) == (1, 1, "28.00", "-12.00")
    assert d["profit_factor"] == "2.3333"  # 28 / 12
    assert d["fees_pct_of_gross"] == "20.0000"  # 4 of 20
    # peak 1000 at the start; trough 987 after the second entry's fee; recovered at the
    # second exit
    assert (d["max_drawdown"], d["max_drawdown_pct"]) == ("13.00", "1.3000")
    assert d["max_drawdown_duration_s"] == 40 * 60
    assert d["exposure_pct"] == "33.3333"  # 20 of 60 minutes


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.integers(90, 110), st.integers(0, 3)),
        min_size=1, max_size=12,
    )
)
def test_round_trips_sum_to_the_net_pnl(legs: list[tuple[int, int, int]]) -> None:
    """Whatever the fills (long-only buy/sell pairs, then maybe one open buy), the round
    trips' PnL adds up to the run's net PnL and the drawdown is within the curve's range."""
    fills, ts = [], 0
    for n, (qty, price, fee) in enumerate(legs):
        side = Side.BUY if n % 2 == 0 else Side.SELL
        ts += MINUTE_NS
        fills.append(_fill(n, side, str(qty if side is Side.BUY else legs[n - 1][0]),
                           str(price), str(fee), ts))
    fig = run_figures(fills, [PricePoint("X", ts + 1, Decimal(100))], start_ns=0,
                      end_ns=ts + MINUTE_NS, starting_cash=None)
    assert sum(t.pnl for t in fig.trips) == fig.net_pnl
    assert len(fig.closed) == len(legs) // 2
    equities = [p.equity for p in fig.curve]
    assert 0 <= fig.max_drawdown <= max(equities) - min(equities)
    assert fig.fees == sum(Decimal(f) for _, _, f in legs)


def test_a_run_without_stored_ticks_is_marked_at_its_fills(paper_db: Path, tmp_path: Path) -> None:
    """Storing ticks is optional for a replay: then marks are the fills' own prices."""
    db = tmp_path / "noticks.db"
    source = sqlite3.connect(paper_db)
    target = sqlite3.connect(db)
    source.backup(target)
    source.close()
    target.execute("DELETE FROM ticks")
    target.commit()
    rows = target.execute(
        "SELECT cash_delta, position_delta, price, fee FROM fills ORDER BY rowid"
    ).fetchall()
    target.close()
    cash = sum(Decimal(r[0]) for r in rows)
    position = sum(Decimal(r[1]) for r in rows)
    got = _report(db)
    assert got["net_pnl"] == _q(cash + position * Decimal(rows[-1][2]))
    assert got["fees"] == _q(sum(Decimal(r[3]) for r in rows))
    assert got["round_trips"] == 7 and got["ticks"] == REAL_TRADES  # the heartbeat's count
    # the precision still comes from trade prices: the signals' (a fill's carries slippage)
    assert got["money_decimals"] == 2
