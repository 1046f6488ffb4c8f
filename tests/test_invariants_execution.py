"""I2-I4 as hypothesis state machines over random runs of the execution core.

A run is a random sequence of trades (two symbols, prices wandering, sizes that
force partial fills, some ticks delayed past the staleness limit), signals
caused by trades, duplicate re-deliveries, flushes to a real SQLite schema, and
restarts that lose the unflushed tail and then re-feed the whole stream (what a
second ``replay`` into the same database does).

A *reference* execution sees every batch exactly once and is never restarted;
the machine checks after every step:

* I2 -- open orders <= ``max_open_orders``; every BUY order fits both exposure
  caps at the moment it was created (recomputed here from the records alone);
* I3 -- a duplicate batch produces nothing and changes no state; after a
  restart the database plus what the re-feed produced equals the reference's
  records exactly, with no id twice;
* I4 -- every fill conserves exactly; cash and positions equal the sums over
  fills; positions never go short; the ledger rebuilt from the persisted
  fills (through ``engine.store.restore``) equals the live one after a flush;
* every order's transitions are consecutive and legal in the lifecycle table.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from decimal import Decimal

import msgspec
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from engine.config import Config, EngineSection, ExecutionSection, Mode, RiskSection
from engine.core.events import (
    Fill,
    Order,
    OrderEvent,
    OrderState,
    Record,
    RiskState,
    Side,
    Signal,
    Tick,
    TradingState,
)
from engine.core.execution import Execution
from engine.core.ledger import ledger_from_fills
from engine.core.orders import TERMINAL, TRANSITIONS
from engine.store.restore import load_restored_state
from engine.store.schema import RECORD_TABLES, migrate

SYMBOLS = ("AAA", "BBB")
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
MAX_EXPOSURE = Decimal(250)
MAX_SYMBOL_EXPOSURE = Decimal(160)
MAX_OPEN_ORDERS = 2

Batch = list[Tick | Signal]


def make_config(mode: Mode, order_type: str = "market", drawdown: str | None = None) -> Config:
    return Config(
        engine=EngineSection(mode=mode),
        risk=RiskSection(
            max_exposure_usd=MAX_EXPOSURE,
            max_symbol_exposure_usd=MAX_SYMBOL_EXPOSURE,
            max_open_orders=MAX_OPEN_ORDERS,
            max_staleness_ms=2000,
            max_drawdown_usd=Decimal(drawdown) if drawdown else None,
        ),
        execution=msgspec.convert(
            {
                "order_notional_usd": "60",
                "qty_step": "0.01",
                "fee_bps": "7.5",
                "slippage_bps": "3",
                "latency_ms": 20,
                "order_timeout_s": 1.5,
                "order_type": order_type,
                "limit_offset_bps": "10",
            },
            ExecutionSection,
        ),
    )


class Database:
    """The real schema in memory, written the way the store writes (one transaction per list)."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        migrate(self.conn)

    def write(self, records: list[Record]) -> None:
        self.conn.execute("BEGIN")
        for record in records:
            spec = RECORD_TABLES[type(record)]
            self.conn.execute(spec.insert_sql, spec.row(record))
        self.conn.execute("COMMIT")


def record_key(record: Record) -> tuple[str, ...]:
    if isinstance(record, OrderEvent):
        return ("order_event", record.order_id, str(record.seq))
    spec = RECORD_TABLES[type(record)]
    return (spec.table, *(str(getattr(record, k)) for k in spec.key))


def state_of(ex: Execution) -> tuple[object, ...]:
    return (
        ex.ledger,
        dict(ex.open_orders),
        dict(ex.marks),
        ex.trading_state,
    )


class ExecutionMachine(RuleBasedStateMachine):
    mode = Mode.SHADOW
    order_type = "market"
    drawdown: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.config = make_config(self.mode, self.order_type, self.drawdown)
        self.live = Execution(self.config)
        self.reference = Execution(self.config)
        self.db = Database()
        self.history: list[Batch] = []
        self.pending: list[list[Record]] = []
        self.records: list[Record] = []  # everything the reference produced
        self.clock = T0
        self.trade_ids = dict.fromkeys(SYMBOLS, 0)
        self.prices = dict.fromkeys(SYMBOLS, Decimal(100))  # the generator's walk
        self.model_prices: dict[str, Decimal] = {}  # latest price fed (the marks)
        # Independent book-keeping from the records alone (for I2/I4 checks).
        self.orders: dict[str, Order] = {}
        self.filled: dict[str, Decimal] = defaultdict(Decimal)
        self.closed: set[str] = set()
        self.last_state: dict[str, OrderState] = {}
        self.last_seq: dict[str, int] = {}
        self.event_filled: dict[str, Decimal] = {}
        self.positions: dict[str, Decimal] = defaultdict(Decimal)
        self.cash = Decimal(0)
        self.halted = False

    # -- helpers --------------------------------------------------------------

    def next_tick(self, symbol: str, move: int, qty: str, dt_ms: int, delay_ms: int) -> Tick:
        self.clock += dt_ms * MS
        self.trade_ids[symbol] += 1
        self.prices[symbol] = max(Decimal(1), self.prices[symbol] + Decimal(move) / 2)
        return Tick(
            event_id=f"test:{symbol}:{self.trade_ids[symbol]}",
            venue="test",
            symbol=symbol,
            trade_id=self.trade_ids[symbol],
            ts_event=self.clock,
            ts_recv=self.clock + 5 * MS + delay_ms * MS,
            price=self.prices[symbol],
            qty=Decimal(qty),
        )

    def exposure(self, symbol: str) -> Decimal:
        qty = self.positions[symbol]
        for order_id, order in self.orders.items():
            if order.symbol == symbol and order.side is Side.BUY and order_id not in self.closed:
                qty += order.qty - self.filled[order_id]
        return qty * self.model_prices.get(symbol, Decimal(0))

    def feed(self, batch: Batch) -> None:
        expected = self.reference.process(batch)
        produced: list[Record] = []
        for item in batch:  # one item at a time, so the cap check sees the state right before
            before = {s: self.exposure(s) for s in SYMBOLS}
            if isinstance(item, Tick):
                self.model_prices[item.symbol] = item.price
            out = self.live.process([item])
            self.absorb(out, before)
            produced.extend(out)
        assert produced == expected  # whole batch == item by item, and live == reference
        self.history.append(batch)
        self.pending.append([*batch, *produced])

    def absorb(self, produced: list[Record], before: dict[str, Decimal]) -> None:
        for record in produced:
            self.records.append(record)
            if isinstance(record, Order):
                assert record.order_id not in self.orders  # one order per signal (I3)
                self.orders[record.order_id] = record
                if record.side is Side.BUY:
                    assert not self.halted
                    mark = self.model_prices[record.symbol]
                    projected = before[record.symbol] + record.qty * mark
                    total = sum(before.values()) + record.qty * mark
                    assert projected <= MAX_SYMBOL_EXPOSURE, (projected, record)
                    assert total <= MAX_EXPOSURE, (total, record)
                open_now = len(self.orders) - len(self.closed)
                assert open_now <= MAX_OPEN_ORDERS
            elif isinstance(record, OrderEvent):
                previous = self.last_state.get(record.order_id)
                if previous is None:
                    assert record.seq == 0 and record.state is OrderState.SUBMITTED
                else:
                    assert record.seq == self.last_seq[record.order_id] + 1
                    assert record.state in {
                        after for (state, _), after in TRANSITIONS.items() if state is previous
                    }, (previous, record)
                self.last_state[record.order_id] = record.state
                self.last_seq[record.order_id] = record.seq
                self.event_filled[record.order_id] = record.filled_qty
                if record.state in TERMINAL:
                    self.closed.add(record.order_id)
                if record.state is OrderState.CANCELED:
                    # Cancelling keeps what filled and books nothing more (S11).
                    assert record.filled_qty == self.filled[record.order_id]
                    assert record.leaves_qty == 0
            elif isinstance(record, Fill):
                assert record.cash_delta + record.position_delta * record.price + record.fee == 0
                self.filled[record.order_id] += record.qty
                assert self.filled[record.order_id] == self.event_filled[record.order_id]
                assert self.filled[record.order_id] <= self.orders[record.order_id].qty
                self.positions[record.symbol] += record.position_delta
                self.cash += record.cash_delta
                assert self.positions[record.symbol] >= 0  # long-only
            elif isinstance(record, RiskState):
                self.halted = record.trading_state is TradingState.HALTED

    # -- rules ----------------------------------------------------------------

    @rule(
        symbol=st.sampled_from(SYMBOLS),
        move=st.integers(-4, 4),
        qty=st.sampled_from(["0.05", "0.2", "0.5", "2"]),
        dt_ms=st.integers(0, 600),
    )
    def trade(self, symbol: str, move: int, qty: str, dt_ms: int) -> None:
        self.feed([self.next_tick(symbol, move, qty, dt_ms, 0)])

    @rule(
        symbol=st.sampled_from(SYMBOLS),
        side=st.sampled_from([Side.BUY, Side.BUY, Side.SELL]),
        move=st.integers(-2, 2),
        dt_ms=st.integers(0, 400),
        delay_ms=st.sampled_from([0, 0, 0, 0, 2500]),
        with_trades=st.integers(0, 2),
    )
    def signal(
        self, symbol: str, side: Side, move: int, dt_ms: int, delay_ms: int, with_trades: int
    ) -> None:
        batch: Batch = [self.next_tick(symbol, 0, "0.3", dt_ms, 0) for _ in range(with_trades)]
        cause = self.next_tick(symbol, move, "0.3", dt_ms, delay_ms)
        batch += [
            cause,
            Signal(
                signal_id=f"sig:{cause.event_id}",
                symbol=symbol,
                side=side,
                ts_event=cause.ts_event,
                ts_recv=cause.ts_recv,
                price=cause.price,
                cause_id=cause.event_id,
            ),
        ]
        self.feed(batch)

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        batch = data.draw(st.sampled_from(self.history))
        before = state_of(self.live)
        assert self.live.process(batch) == []
        assert state_of(self.live) == before

    @rule()
    def flush(self) -> None:
        for records in self.pending:
            self.db.write(records)
        self.pending = []
        rebuilt = ledger_from_fills(load_restored_state(self.db.conn).fills)
        assert rebuilt == self.live.ledger

    @rule(lost=st.integers(0, 3))
    def restart(self, lost: int) -> None:
        """A kill: all but the last ``lost`` pending lists reached the disk; then a re-feed."""
        keep = max(0, len(self.pending) - lost)
        for records in self.pending[:keep]:
            self.db.write(records)
        self.pending = []
        stored = {
            record_key(r)
            for r in self.records
            if self.db.conn.execute(
                f"SELECT 1 FROM {RECORD_TABLES[type(r)].table} WHERE "
                + " AND ".join(f"{k} = ?" for k in RECORD_TABLES[type(r)].key),
                [str(getattr(r, k)) if not isinstance(getattr(r, k), int) else getattr(r, k)
                 for k in RECORD_TABLES[type(r)].key],
            ).fetchone()
        }
        self.live = Execution(self.config)
        self.live.restore(load_restored_state(self.db.conn))
        again: list[Record] = []
        for batch in self.history:
            produced = self.live.process(batch)
            again.extend(produced)
            self.pending.append([*batch, *produced])
        # Exactly what the kill lost is produced again -- nothing twice, nothing missing.
        assert [record_key(r) for r in again] == [
            record_key(r) for r in self.records if record_key(r) not in stored
        ]
        assert again == [r for r in self.records if record_key(r) not in stored]
        assert state_of(self.live) == state_of(self.reference)
        event(f"restart re-created {len(again)} lost records")

    def teardown(self) -> None:
        kinds = {type(r).__name__ for r in self.records}
        states = {r.state.value for r in self.records if isinstance(r, OrderEvent)}
        event("records: " + ", ".join(sorted(kinds)))
        for state in ("PARTIALLY_FILLED", "CANCELED"):
            if state in states:
                event(f"has {state}")
        if self.halted:
            event("HALTED")

    # -- invariants -------------------------------------------------------------

    @invariant()
    def ledger_matches_fills(self) -> None:
        ledger = self.live.ledger
        assert ledger.cash == self.cash
        assert {s: q for s, q in ledger.positions().items() if q} == {
            s: q for s, q in self.positions.items() if q
        }
        fills = [r for r in self.records if isinstance(r, Fill)]
        assert ledger_from_fills(fills) == ledger

    @invariant()
    def open_orders_within_cap(self) -> None:
        assert len(self.live.open_orders) <= MAX_OPEN_ORDERS
        assert set(self.live.open_orders) == set(self.orders) - self.closed


MACHINE_SETTINGS = settings(max_examples=100, stateful_step_count=50, deadline=None)


class ShadowMachine(ExecutionMachine):
    mode = Mode.SHADOW


class PaperMarketMachine(ExecutionMachine):
    mode = Mode.PAPER


class PaperLimitMachine(ExecutionMachine):
    mode = Mode.PAPER
    order_type = "limit"


class PaperDrawdownMachine(ExecutionMachine):
    mode = Mode.PAPER
    drawdown = "0.5"


TestShadowInvariants = ShadowMachine.TestCase
TestShadowInvariants.settings = MACHINE_SETTINGS
TestPaperMarketInvariants = PaperMarketMachine.TestCase
TestPaperMarketInvariants.settings = MACHINE_SETTINGS
TestPaperLimitInvariants = PaperLimitMachine.TestCase
TestPaperLimitInvariants.settings = MACHINE_SETTINGS
TestPaperDrawdownInvariants = PaperDrawdownMachine.TestCase
TestPaperDrawdownInvariants.settings = MACHINE_SETTINGS
