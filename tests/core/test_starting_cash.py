"""``[execution] starting_cash``: the ledger's opening balance and the INSUFFICIENT_CASH veto.

Engine runs replay the real bundled capture (``replays/btcusdt_20240808.gz``) in real
processes into real SQLite files; the cash each BUY had is recomputed here from the
persisted ``fills`` table, independently of the engine's ledger.
"""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine.config.schema import Config, ExecutionSection
from engine.core.events import Side, TradingState, VetoReason
from engine.core.execution import Execution
from engine.core.risk import Limits, Proposal, check_cash, evaluate
from engine.core.staleness import Lag
from tests.fakes.engine_process import REAL_CAPTURE, parse_logs, run_engine

D = Decimal
LIMITS = Limits(max_exposure_usd=D(10**6), max_symbol_exposure_usd=D(10**6), max_open_orders=4,
                fee_bps=D(10))
FRESH = Lag(raw_ns=0, baseline_ns=0, excess_ns=0, stale=False)


def buy(qty: Decimal, price: Decimal, cash: Decimal | None, side: Side = Side.BUY) -> Proposal:
    return Proposal(side=side, symbol="BTCUSDT", qty=qty, price=price, mark=price,
                    symbol_exposure=D(0), total_exposure=D(0), open_orders=0,
                    trading_state=TradingState.ACTIVE,
                    lag=FRESH, cause_id="binance:BTCUSDT:1", sizing="test",
                    available_cash=cash)


def test_starting_cash_buy_beyond_cash_vetoed_with_its_own_reason() -> None:
    # 0.001 x 60000 = 60, fee 10 bps = 0.06: costs 60.06
    denial = evaluate(buy(D("0.001"), D(60000), D("60.05")), LIMITS)
    assert denial is not None and denial.reason is VetoReason.INSUFFICIENT_CASH
    assert "costs 60.06" in denial.detail and "available cash 60.05" in denial.detail
    assert evaluate(buy(D("0.001"), D(60000), D("60.06")), LIMITS) is None  # exactly enough


def test_starting_cash_unset_or_sell_never_checked() -> None:
    assert check_cash(buy(D(1000), D(60000), None), LIMITS) is None
    assert check_cash(buy(D("0.5"), D(60000), D(0), Side.SELL), LIMITS) is None


@given(
    st.decimals(min_value=D("0.00001"), max_value=D(1000), places=5),
    st.decimals(min_value=D("0.01"), max_value=D(10**6), places=2),
    st.decimals(min_value=D(0), max_value=D(10**7), places=8),
    st.decimals(min_value=D(0), max_value=D(1000), places=2),
)
def test_starting_cash_check_agrees_with_fraction_arithmetic(
    qty: Decimal, price: Decimal, cash: Decimal, fee_bps: Decimal
) -> None:
    limits = Limits(max_exposure_usd=D(1), max_symbol_exposure_usd=D(1), max_open_orders=1,
                    fee_bps=fee_bps)
    cost = Fraction(qty) * Fraction(price) * (1 + Fraction(fee_bps) / 10_000)
    denied = check_cash(buy(qty, price, cash), limits) is not None
    assert denied == (cost > Fraction(cash))


def test_starting_cash_opens_the_ledger_and_unset_keeps_zero() -> None:
    assert Execution(Config()).ledger.cash == 0
    config = Config(execution=ExecutionSection(starting_cash=D("1000")))
    assert Execution(config).ledger.cash == D("1000")


def replay(tmp_path: Path, name: str, toml: str) -> tuple[sqlite3.Connection, str]:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(toml, encoding="utf-8")
    db = tmp_path / f"{name}.db"
    proc = run_engine(["replay", str(REAL_CAPTURE), "--config", str(cfg), "--db", str(db)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = next(ln for ln in parse_logs(proc.stdout) if ln.get("event") == "replay_results")
    return sqlite3.connect(db), str(results["digest"])


def test_starting_cash_ample_changes_no_decision_and_unset_keeps_the_case_digest(
    tmp_path: Path,
) -> None:
    """Unset: the committed PAPER digest. Ample: not one veto more, the same digest."""
    cases = (REAL_CAPTURE.parent / "cases.toml").read_text(encoding="utf-8")
    paper_digest = cases.split('config = "paper.toml"')[1].split('"')[1]
    _, unset = replay(tmp_path, "unset", '[engine]\nmode = "paper"\n')
    assert unset == paper_digest
    _, ample = replay(tmp_path, "ample",
                      '[engine]\nmode = "paper"\n[execution]\nstarting_cash = "1000000"\n')
    assert ample == unset


def test_starting_cash_paper_buys_only_with_cash_it_has(tmp_path: Path) -> None:
    """100.5 USD and 100 USD orders: the first BUY fits, and once round trips lost more
    than 0.5 a BUY is vetoed. Each BUY's verdict is recomputed here: the cash it had is
    100.5 plus the ``cash_delta`` of every fill persisted up to its causing tick."""
    conn, _ = replay(tmp_path, "tight",
                     '[engine]\nmode = "paper"\n[execution]\nstarting_cash = "100.5"\n')
    fills = [(ts, Fraction(D(delta))) for ts, delta in conn.execute(
        "SELECT ts_event, cash_delta FROM fills ORDER BY rowid")]
    verdicts = []
    for signal_id, cause_ts in conn.execute(
        "SELECT s.signal_id, t.ts_event FROM signals s JOIN ticks t ON t.event_id = s.cause_id"
        " WHERE s.side = 'BUY' ORDER BY s.rowid"
    ).fetchall():
        cash = Fraction(D("100.5")) + sum((d for ts, d in fills if ts <= cause_ts), Fraction(0))
        order = conn.execute(
            "SELECT qty, price FROM orders WHERE signal_id = ?", (signal_id,)).fetchone()
        veto = conn.execute(
            "SELECT reason, detail FROM vetoes WHERE signal_id = ?", (signal_id,)).fetchone()
        if order is not None:
            cost = Fraction(D(order[0])) * Fraction(D(order[1])) * Fraction(10_010, 10_000)
            assert cost <= cash, (signal_id, cost, cash)
            verdicts.append("order")
        else:
            assert veto[0] == "INSUFFICIENT_CASH"
            assert Fraction(D(veto[1].rsplit(" ", 1)[1])) == cash  # the engine's available cash
            assert Fraction(D(veto[1].split(" costs ")[1].split(" ")[0])) > cash
            verdicts.append("veto")
    assert verdicts[0] == "order" and "veto" in verdicts


def test_starting_cash_too_small_vetoes_every_buy(tmp_path: Path) -> None:
    conn, _ = replay(tmp_path, "poor",
                     '[engine]\nmode = "shadow"\n[execution]\nstarting_cash = "50"\n')
    buys = conn.execute("SELECT COUNT(*) FROM signals WHERE side = 'BUY'").fetchone()[0]
    assert buys > 0
    vetoed = conn.execute(
        "SELECT COUNT(*) FROM vetoes WHERE reason = 'INSUFFICIENT_CASH'").fetchone()[0]
    assert vetoed == buys
    assert conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0] == 0


def test_starting_cash_out_of_range_exits_12_naming_the_key(tmp_path: Path) -> None:
    for bad in ('"0"', '"-5"', '"1e10"', '"abc"'):
        cfg = tmp_path / "bad.toml"
        cfg.write_text(f"[execution]\nstarting_cash = {bad}\n", encoding="utf-8")
        proc = run_engine(["replay", str(REAL_CAPTURE), "--config", str(cfg),
                           "--db", str(tmp_path / "x.db")])
        assert proc.returncode == 12, (bad, proc.stderr[-500:])
        assert "execution.starting_cash" in proc.stderr, json.dumps(proc.stderr[-500:])
