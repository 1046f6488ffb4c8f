"""Restore: the state rebuilt from a real SQLite database equals the live one."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec

from engine.config.schema import Mode, RiskSection
from engine.core.events import Order, OrderState, Side, TradingState
from engine.core.execution import Execution
from engine.core.restored import RestoredState
from engine.store.restore import load_restored_state
from engine.store.sqlite_store import SqliteStore
from tests.fakes.events import config, signal, tick


def test_restore_empty_database_gives_empty_state(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    try:
        state = load_restored_state(store.connection)
    finally:
        store.close()
    assert state == RestoredState()


def test_restore_shadow_positions_and_decisions_equal_live(tmp_path: Path) -> None:
    live = Execution(config())
    t1, t2, t3 = tick(1, "60000"), tick(2, "61000"), tick(3, "62000")
    batches = [[t1, signal(t1, Side.BUY)], [t2, signal(t2, Side.SELL)], [t3, signal(t3, Side.BUY)]]
    store = SqliteStore.open(tmp_path / "e.db")
    try:
        for batch in batches:
            store.write_records([*batch, *live.process(batch)])
        state = load_restored_state(store.connection)
    finally:
        store.close()
    again = Execution(config())
    again.restore(state)
    assert again.ledger == live.ledger
    assert state.tape_watermarks == {"binance:BTCUSDT": 3}
    # Every signal is already decided: re-delivering the whole run produces nothing.
    assert [again.process(batch) for batch in batches] == [[], [], []]
    assert again.ledger == live.ledger


def test_restore_paper_open_order_resumes_with_its_progress(tmp_path: Path) -> None:
    cfg = config(Mode.PAPER, latency_ms=0, order_notional_usd="600")
    cfg = msgspec.structs.replace(cfg, risk=RiskSection(max_symbol_exposure_usd=Decimal(1000)))
    live = Execution(cfg)
    t1 = tick(1, "60000")
    t2 = tick(2, "60000", qty="0.004")
    store = SqliteStore.open(tmp_path / "e.db")
    try:
        for batch in ([t1, signal(t1, Side.BUY)], [t2]):
            store.write_records([*batch, *live.process(batch)])
        state = load_restored_state(store.connection)
    finally:
        store.close()
    [restored] = state.open_orders
    assert isinstance(restored.order, Order)
    assert restored.state is OrderState.PARTIALLY_FILLED
    assert restored.filled_qty == Decimal("0.004")
    assert restored.fills == 1
    again = Execution(cfg)
    again.restore(state)
    assert again.ledger == live.ledger
    assert again.trading_state == TradingState.ACTIVE
    t3 = tick(3, "60000", qty="1")
    assert again.process([t3]) == live.process([t3])
    assert again.ledger == live.ledger


def test_restore_position_in_a_symbol_without_a_tick_yet_counts_toward_max_exposure(
    tmp_path: Path,
) -> None:
    # After a restart the marks are empty until each symbol trades again. A restored
    # ETHUSDT position used to count as 0 toward max_exposure_usd until then, so a BUY
    # on BTCUSDT was approved beyond the cap (I2). Restore now resumes the marks too
    # (latest persisted trade per symbol), so the restarted engine decides as the
    # uninterrupted one.
    cfg = config(order_notional_usd="300")
    cfg = msgspec.structs.replace(
        cfg,
        risk=RiskSection(max_exposure_usd=Decimal(500), max_symbol_exposure_usd=Decimal(500)),
    )
    live = Execution(cfg)
    e1 = tick(1, "3000", symbol="ETHUSDT")
    store = SqliteStore.open(tmp_path / "e.db")
    try:
        first = [e1, signal(e1, Side.BUY)]
        store.write_records([*first, *live.process(first)])
        state = load_restored_state(store.connection)
    finally:
        store.close()
    assert live.ledger.position("ETHUSDT") > 0
    again = Execution(cfg)
    again.restore(state)
    b1 = tick(1, "60000")
    batch = [b1, signal(b1, Side.BUY)]
    expected = live.process(batch)
    assert [type(r).__name__ for r in expected] == ["Veto"]
    assert again.process(batch) == expected
