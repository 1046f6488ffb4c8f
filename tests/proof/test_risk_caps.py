"""The risk-cap audit over a persisted record (real schema, hand-made rows)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from engine.proof.risk_caps import SCENARIOS, Audit, Caps, audit
from engine.store.schema import migrate

CAPS = Caps(
    max_exposure_usd=Decimal("150"),
    max_symbol_exposure_usd=Decimal("150"),
    max_open_orders=1,
)
QTY = "0.002"  # 0.002 x 50000 = 100 USD: one order fits under 150, two do not
PX = "50000"


class Record:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path)
        migrate(self.conn)
        self.n = 0

    def tick(self, ts: int, price: str = PX) -> str:
        self.n += 1
        tick_id = f"binance:BTCUSDT:{self.n}"
        self.conn.execute(
            "INSERT INTO ticks VALUES (?, 'binance', 'BTCUSDT', ?, ?, ?, ?, '1', NULL)",
            (tick_id, self.n, ts, ts, price),
        )
        return tick_id

    def order(
        self, oid: str, side: str, ts: int, qty: str = QTY, price: str = PX, cause_ts: int = -1
    ) -> None:
        cause = self.tick(ts if cause_ts < 0 else cause_ts, price)
        self.conn.execute(
            "INSERT INTO signals (signal_id, symbol, side, ts_event, ts_recv, price, cause_id)"
            " VALUES (?, 'BTCUSDT', ?, ?, ?, ?, ?)",
            (f"sig:{oid}", side, ts, ts, price, cause),
        )
        self.conn.execute(
            "INSERT INTO orders VALUES (?, ?, 'paper', 'BTCUSDT', ?, 'LIMIT', ?, ?, ?, NULL)",
            (oid, f"sig:{oid}", side, qty, price, ts),
        )
        self.event(oid, 0, "SUBMITTED", ts, leaves=qty)

    def event(self, oid: str, seq: int, state: str, ts: int, leaves: str = "0") -> None:
        self.conn.execute(
            "INSERT INTO order_events VALUES (?, ?, ?, ?, '', '0', ?, NULL)",
            (oid, seq, state, ts, leaves),
        )

    def fill(self, oid: str, n: int, side: str, ts: int, qty: str = QTY, price: str = PX) -> None:
        q, p = Decimal(qty), Decimal(price)
        delta = q if side == "BUY" else -q
        fee = Decimal("0.1")
        cash = -(delta * p) - fee
        self.conn.execute(
            "INSERT INTO fills VALUES (?, ?, 'BTCUSDT', ?, ?, ?, ?, ?, ?, ?, NULL)",
            (f"fill:{oid}:{n}", oid, side, qty, price, str(fee), str(cash), str(delta), ts),
        )

    def veto(self, vid: str, reason: str, ts: int) -> None:
        self.conn.execute(
            "INSERT INTO vetoes VALUES (?, ?, 'BTCUSDT', ?, '', ?, NULL)",
            (vid, f"s{vid}", reason, ts),
        )

    def close(self) -> None:
        self.conn.commit()
        self.conn.close()


@pytest.fixture
def rec(tmp_path: Path) -> Record:
    return Record(tmp_path / "r.db")


def run(rec: Record, tmp_path: Path) -> Audit:
    rec.close()
    return audit(tmp_path / "r.db", CAPS)


def test_audit_buy_sell_buy_within_caps_finds_nothing(rec: Record, tmp_path: Path) -> None:
    rec.order("o1", "BUY", 100)
    rec.fill("o1", 0, "BUY", 200)
    rec.event("o1", 1, "FILLED", 200)
    rec.order("o2", "SELL", 300)
    rec.fill("o2", 0, "SELL", 400)
    rec.event("o2", 1, "FILLED", 400)
    rec.order("o3", "BUY", 500)
    rec.veto("v1", "RISK_CAP", 450)
    result = run(rec, tmp_path)
    assert result.violations == []
    assert result.orders == 3
    assert result.fills == 2
    assert result.risk_cap_vetoes == 1
    assert result.max_open_orders_seen == 1
    assert Decimal(result.max_symbol_exposure_seen) == Decimal("100")


def test_audit_second_buy_while_first_open_breaks_both_caps(rec: Record, tmp_path: Path) -> None:
    rec.order("o1", "BUY", 100)
    rec.order("o2", "BUY", 200)
    result = run(rec, tmp_path)
    messages = result.violations
    assert any("open orders" in m for m in messages)
    assert any("BTCUSDT exposure 200" in m for m in messages)
    assert any("total exposure 200" in m for m in messages)


def test_audit_position_plus_new_buy_breaks_exposure(rec: Record, tmp_path: Path) -> None:
    rec.order("o1", "BUY", 100)
    rec.fill("o1", 0, "BUY", 150)
    rec.event("o1", 1, "FILLED", 150)
    rec.order("o2", "BUY", 200)
    messages = run(rec, tmp_path).violations
    assert len(messages) == 2
    assert all("exposure 200" in m for m in messages)


def test_audit_partial_fill_then_cancel_frees_remainder(rec: Record, tmp_path: Path) -> None:
    rec.order("o1", "BUY", 100, qty="0.002")
    rec.fill("o1", 0, "BUY", 150, qty="0.0005")
    rec.event("o1", 1, "PARTIALLY_FILLED", 150, leaves="0.0015")
    rec.event("o1", 2, "CANCELED", 160, leaves="0")
    rec.order("o2", "BUY", 200, qty="0.002")  # 0.0025 x 50000 = 125 <= 150
    result = run(rec, tmp_path)
    assert result.violations == []
    assert Decimal(result.max_symbol_exposure_seen) == Decimal("125")


def test_audit_denied_order_is_not_counted(rec: Record, tmp_path: Path) -> None:
    rec.order("o1", "BUY", 100)
    rec.order("o2", "BUY", 200)
    rec.event("o2", 1, "DENIED", 200)
    assert run(rec, tmp_path).violations == []


def test_audit_close_at_decision_time_counts_before(rec: Record, tmp_path: Path) -> None:
    rec.order("o1", "BUY", 100)
    rec.event("o1", 1, "EXPIRED", 230)
    rec.order("o2", "BUY", 200, cause_ts=230)  # bar ended at 200, decided on the tick at 230
    assert run(rec, tmp_path).violations == []


def test_audit_order_decided_before_close_is_a_breach(rec: Record, tmp_path: Path) -> None:
    rec.order("o1", "BUY", 100)
    rec.event("o1", 1, "EXPIRED", 231)
    rec.order("o2", "BUY", 200, cause_ts=230)
    assert run(rec, tmp_path).violations


def test_audit_non_conserving_fill_is_reported(rec: Record, tmp_path: Path) -> None:
    rec.order("o1", "BUY", 100)
    rec.fill("o1", 0, "BUY", 150)
    rec.conn.execute("UPDATE fills SET fee = '0.2'")
    messages = run(rec, tmp_path).violations
    assert messages == ["fill:o1:0: cash_delta + position_delta * price + fee != 0"]


def test_scenarios_caps_are_tight_around_one_order() -> None:
    boundary, second = SCENARIOS
    notional = Decimal(boundary.execution["ENGINE_EXECUTION_ORDER_NOTIONAL_USD"])
    assert boundary.caps.max_symbol_exposure_usd < notional  # binds within one order
    notional = Decimal(second.execution["ENGINE_EXECUTION_ORDER_NOTIONAL_USD"])
    assert notional <= second.caps.max_symbol_exposure_usd < 2 * notional  # one fits, two do not
    assert all(s.caps.max_open_orders == 1 for s in SCENARIOS)
    assert all(s.env()["ENGINE_ENGINE_MODE"] == "paper" for s in SCENARIOS)


def test_audit_marks_at_the_causing_tick_price(rec: Record, tmp_path: Path) -> None:
    rec.order("o1", "BUY", 100, qty="0.002", price="50000")
    rec.conn.execute("UPDATE ticks SET price = '76000'")  # the engine's mark when it decided
    messages = run(rec, tmp_path).violations
    assert messages and "exposure 152" in messages[0]
