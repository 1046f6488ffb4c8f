"""A bogus trade id never poisons the restore watermark nor execution's duplicate check.

Issue 10: one persisted trade with ``t = 2**63 - 1`` became the restore watermark, and
after every restart ``Execution.process`` skipped each tick at or below it *before*
working orders, timeouts and the drawdown guard. Now only ticks whose ids are really in
the database (``RestoredState.tape_islands``) are skipped. Real SQLite files throughout.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
from hypothesis import given
from hypothesis import strategies as st

import engine.store.restore as restore_module
from engine.adapters.market.dedup import DEDUP_WINDOW
from engine.config.schema import Config, Mode, RiskSection
from engine.core.events import Fill, OrderEvent, OrderState, RiskState, Side, Signal, Tick
from engine.core.execution import TRADE_ID_WINDOW, Execution, PersistedIds
from engine.store.restore import load_restored_state, load_tape_islands
from engine.store.sqlite_store import SqliteStore
from tests.fakes.events import T0, config, signal, tick

BOGUS = 2**63 - 1


def bogus_tick(price: str = "60000", n_time: int = 1) -> Tick:
    ts = T0 + n_time * 1_000_000
    return Tick(
        event_id=f"binance:BTCUSDT:{BOGUS}",
        venue="binance",
        symbol="BTCUSDT",
        trade_id=BOGUS,
        ts_event=ts,
        ts_recv=ts,
        price=Decimal(price),
        qty=Decimal("0.0001"),
    )


def restart(path: Path, cfg: Config, batches: list[list[Tick | Signal]]) -> Execution:
    """Run ``batches`` through a fresh execution into a real database, then restart on it."""
    live = Execution(cfg)
    store = SqliteStore.open(path)
    try:
        for batch in batches:
            store.write_records([*batch, *live.process(batch)])
        state = load_restored_state(store.connection)
    finally:
        store.close()
    again = Execution(cfg)
    again.restore(state)
    return again


def paper(**overrides: object) -> Config:
    return config(Mode.PAPER, latency_ms=0, **overrides)


def test_trade_id_window_of_execution_equals_dedup_window() -> None:
    assert TRADE_ID_WINDOW == DEDUP_WINDOW


def test_restart_after_bogus_id_resting_order_still_fills(tmp_path: Path) -> None:
    t1 = tick(1, "60000", qty="0.0001")  # too small to fill the whole order
    again = restart(tmp_path / "e.db", paper(), [[t1, signal(t1, Side.BUY)], [bogus_tick()]])
    [order] = again.open_orders.values()
    out = again.process([tick(2, "60000")])
    fills = [r for r in out if isinstance(r, Fill)]
    assert fills and fills[0].order_id == order.order_id  # was: skipped, "already persisted"


def test_restart_after_bogus_id_resting_order_still_expires(tmp_path: Path) -> None:
    t1 = tick(1, "60000", qty="0.0001")
    cfg = paper(order_timeout_s=1.0)
    again = restart(tmp_path / "e.db", cfg, [[t1, signal(t1, Side.BUY)], [bogus_tick()]])
    late = tick(5000, "70000")  # 5 s later, far above any limit: only the timeout acts
    states = [r.state for r in again.process([late]) if isinstance(r, OrderEvent)]
    assert OrderState.EXPIRED in states or OrderState.CANCELED in states
    assert not again.open_orders


def test_restart_after_bogus_id_drawdown_guard_still_judges(tmp_path: Path) -> None:
    cfg = msgspec.structs.replace(
        config(order_notional_usd="400"),
        risk=RiskSection(max_drawdown_usd=Decimal("10")),
    )
    t1 = tick(1, "60000")
    again = restart(tmp_path / "e.db", cfg, [[t1, signal(t1, Side.BUY)], [bogus_tick()]])
    crash = tick(2, "50000")  # the position loses far more than max_drawdown_usd
    records = again.process([crash])
    assert any(isinstance(r, RiskState) for r in records)
    assert again.trading_state == "HALTED"


def test_restart_persisted_ticks_are_still_skipped_no_double_fill(tmp_path: Path) -> None:
    t1, t2 = tick(1, "60000"), tick(2, "60000", qty="0.0001")
    again = restart(tmp_path / "e.db", paper(), [[t1, signal(t1, Side.BUY)], [t2]])
    assert again.process([t2]) == []  # its partial fill is in the database already


def test_in_process_bogus_id_then_real_ids_still_processed() -> None:
    execution = Execution(paper())
    t1 = tick(1, "60000", qty="0.0001")
    execution.process([t1, signal(t1, Side.BUY)])
    execution.process([bogus_tick()])
    out = execution.process([tick(2, "61000")])
    assert execution.marks["BTCUSDT"] == Decimal("61000")
    assert any(isinstance(r, Fill) for r in out)
    assert execution.process([tick(2, "61000")]) == []  # a real duplicate is still ignored


def test_tape_islands_from_real_sqlite_gaps_and_bogus_id(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    try:
        ticks = [tick(n, "60000") for n in (1, 2, 3, 7, 8, 20)]
        store.write_records([*ticks, bogus_tick()])
        islands = load_tape_islands(store.connection)
    finally:
        store.close()
    assert islands == {"binance:BTCUSDT": ((1, 3), (7, 8), (20, 20), (BOGUS, BOGUS))}


def test_tape_islands_bounded_lowest_merged(tmp_path: Path, monkeypatch: object) -> None:
    monkeypatch.setattr(restore_module, "MAX_TAPE_ISLANDS", 3)  # type: ignore[attr-defined]
    store = SqliteStore.open(tmp_path / "e.db")
    try:
        store.write_records([tick(n, "60000") for n in (1, 3, 5, 7, 9)])
        islands = load_tape_islands(store.connection)
    finally:
        store.close()
    assert islands == {"binance:BTCUSDT": ((1, 5), (7, 7), (9, 9))}


@given(
    st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 1000)), max_size=30),
    st.lists(st.integers(0, 2**40 + 1000), max_size=50),
)
def test_persisted_ids_membership_equals_the_ranges(
    ranges: list[tuple[int, int]], probes: list[int]
) -> None:
    # disjoint, non-adjacent ranges as load_tape_islands returns them
    islands: list[tuple[int, int]] = []
    for lo, width in sorted(ranges):
        if not islands or lo > islands[-1][1] + 1:
            islands.append((lo, lo + width))
    persisted = PersistedIds(islands)
    for probe in probes + [lo for lo, _ in islands] + [hi + 1 for _, hi in islands]:
        expected = any(lo <= probe <= hi for lo, hi in islands)
        assert (probe in persisted) is expected
