"""PAPER on the real Binance capture: partial fills, only traded prices, deterministic."""

from __future__ import annotations

import itertools
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import msgspec

from engine.config.schema import Config, EngineSection, ExecutionSection, Mode
from engine.core.choice import build_strategy
from engine.core.events import Fill, Order, OrderEvent, OrderState, OrderType, Record, Side, Tick
from engine.core.execution import Execution
from engine.core.sizing import slipped_price
from engine.proof.invariants import real_ticks
from tests.fakes.engine_process import REAL_CAPTURE, run_engine

BATCH = 1000


def paper_config(**execution: object) -> Config:
    return msgspec.structs.replace(
        Config(),
        engine=EngineSection(mode=Mode.PAPER),
        execution=msgspec.convert(execution, ExecutionSection, strict=False),
    )


def run_paper(config: Config) -> list[Record]:
    strategy = build_strategy(config.strategy)
    execution = Execution(config)
    ticks = real_ticks()
    records: list[Record] = []
    for start in range(0, len(ticks), BATCH):
        records.extend(execution.process(strategy.on_batch(ticks[start : start + BATCH])))
    return records


def by_type(records: list[Record], kind: type) -> list:  # type: ignore[type-arg]
    return [r for r in records if isinstance(r, kind)]


def test_paper_real_capture_partial_fills_occur_and_balance() -> None:
    records = run_paper(paper_config())
    orders = by_type(records, Order)
    fills: list[Fill] = by_type(records, Fill)
    events: list[OrderEvent] = by_type(records, OrderEvent)
    assert len(orders) >= 10
    assert any(e.state is OrderState.PARTIALLY_FILLED for e in events)
    per_order: dict[str, int] = defaultdict(int)
    for f in fills:
        per_order[f.order_id] += 1
        assert f.cash_delta + f.position_delta * f.price + f.fee == 0
    assert max(per_order.values()) > 1
    # Each order's fills add up to what its final transition says.
    for order in orders:
        total = sum((f.qty for f in fills if f.order_id == order.order_id), Decimal(0))
        last = [e for e in events if e.order_id == order.order_id][-1]
        assert total == last.filled_qty <= order.qty


def test_paper_market_fills_only_at_traded_prices_after_latency() -> None:
    records = run_paper(paper_config(slippage_bps="0", latency_ms=50))
    traded = {t.price for t in real_ticks()}
    orders = {o.order_id: o for o in by_type(records, Order)}
    fills: list[Fill] = by_type(records, Fill)
    assert fills
    for f in fills:
        assert f.price in traded
        assert f.ts_event >= orders[f.order_id].ts_event + 50_000_000


def test_paper_market_fill_price_is_a_trade_plus_slippage() -> None:
    records = run_paper(paper_config(slippage_bps="5"))
    ticks: dict[str, Tick] = {t.event_id: t for t in real_ticks()}
    fills = 0
    for event, f in itertools.pairwise(records):
        if not isinstance(f, Fill):
            continue
        fills += 1
        # A fill comes right after its transition, which names the trade that filled it.
        assert isinstance(event, OrderEvent) and event.order_id == f.order_id
        tick_id = event.reason.split("against trade ")[1].split(" ")[0]
        tick = ticks[tick_id]
        assert f.price == slipped_price(tick.price, f.side, Decimal(5))
        assert f.qty <= tick.qty
        assert f.ts_event == tick.ts_event
    assert fills > 10


def test_paper_limit_orders_fill_only_when_tape_trades_through_at_limit_price() -> None:
    records = run_paper(paper_config(order_type="limit", limit_offset_bps="2"))
    orders = {o.order_id: o for o in by_type(records, Order)}
    fills: list[Fill] = by_type(records, Fill)
    assert fills
    assert all(o.order_type is OrderType.LIMIT for o in orders.values())
    ticks = real_ticks()
    for f in fills:
        order = orders[f.order_id]
        assert f.price == order.price
        crossing = [
            t for t in ticks
            if t.ts_event == f.ts_event
            and (t.price <= order.price if order.side is Side.BUY else t.price >= order.price)
        ]
        assert crossing


def test_paper_real_capture_same_input_same_records() -> None:
    assert run_paper(paper_config()) == run_paper(paper_config())


def test_paper_real_capture_two_fresh_processes_same_digest(tmp_path: Path) -> None:
    env = {"ENGINE_ENGINE_MODE": "paper"}
    digests = []
    for name in ("a.db", "b.db"):
        db = str(tmp_path / name)
        done = run_engine(["replay", str(REAL_CAPTURE), "--db", db], env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        digest = run_engine(["digest", "--db", db])
        assert digest.returncode == 0
        digests.append(digest.stdout.strip())
        report = run_engine(["report", "--db", db, "--json"])
        assert report.returncode == 0, report.stdout
    assert digests[0] == digests[1]
    assert len(digests[0]) == 64
