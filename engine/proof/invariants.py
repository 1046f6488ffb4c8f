"""Execution invariants the proof runs: I1 on real ticks, I2-I4 as hypothesis state machines.

*I1 (shadow safety)* -- ``shadow_and_paper_never_touch_a_socket``: random SHADOW
and PAPER configurations run the strategy and the execution core over a window of
the bundled real capture while every socket connect, send and name lookup is
refused (``sockets_refused``); PASS needs orders placed and not one network call.

*I2-I4* -- ``ExecutionMachine``: a run is a random sequence of trades (two
symbols, prices wandering, sizes that force partial fills, some ticks delayed
past the staleness limit), signals caused by trades, duplicate re-deliveries,
flushes to a real SQLite schema, and restarts that lose the unflushed tail and
then re-feed the whole stream (what a second ``replay`` into the same database
does). A *reference* execution sees every batch exactly once and is never
restarted; the machine checks after every step:

* I2 -- open orders <= ``max_open_orders``; every BUY order fits both exposure
  caps at the moment it was created (recomputed here from the records alone);
* I3 -- a duplicate batch produces nothing and changes no state; after a
  restart the database plus what the re-feed produced equals the reference's
  records exactly, with no id twice;
* I4 -- every fill conserves exactly; cash and positions equal the sums over
  fills; positions never go short; the ledger rebuilt from the persisted
  fills (through ``engine.store.restore``) equals the live one after a flush;
* every order's transitions are consecutive and legal in the lifecycle table.

``engine.proof.properties`` runs these with the proof's fixed settings and seeds;
``tests/proof/test_invariants.py`` runs exactly the same (one copy of each).
Assertions carry their values: outside pytest a bare ``assert`` says nothing.
"""

from __future__ import annotations

import functools
import socket
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.adapters.market import binance
from engine.adapters.market.capture import iter_capture
from engine.config.schema import (
    Config,
    EngineSection,
    ExecutionSection,
    Mode,
    RiskSection,
    StrategyChoice,
    StrategySection,
)
from engine.core.choice import build_strategy
from engine.core.events import (
    NS_PER_MS,
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
from engine.proof import replay
from engine.store.restore import load_restored_state
from engine.store.rows import insert_records, is_stored
from engine.store.schema import RECORD_TABLES, migrate

# ---------------------------------------------------------------- I1: no socket in SHADOW/PAPER

I1_WINDOW_TICKS: Final = 1_500
"""Real trades fed per example; enough for the fast SMAs drawn to cross and place orders."""
I1_BATCH_TICKS: Final = 250


class NetworkCalled(AssertionError):
    """Raised by the functions ``sockets_refused`` installs: something tried to reach a network."""


@contextmanager
def sockets_refused() -> Iterator[list[str]]:
    """Refuse every socket connect/send and name lookup while inside; yield the calls made.

    *Resource handling:* the original functions are put back on exit, whatever happened.
    """
    calls: list[str] = []

    def trap(name: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise NetworkCalled(f"{name} called during SHADOW/PAPER execution")

        return refuse

    saved: list[tuple[object, str, object]] = []
    targets: list[tuple[object, str]] = [
        *((socket.socket, n) for n in ("connect", "connect_ex", "send", "sendto", "sendall")),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
    ]
    try:
        for owner, name in targets:
            saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, trap(f"{getattr(owner, '__name__', owner)}.{name}"))
        yield calls
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def capture_path() -> Path:
    """The bundled real capture: the first case of the packaged ``cases.toml``."""
    cases_dir = replay.packaged_cases_dir()
    return cases_dir / replay.load_cases(cases_dir)[0].capture


@functools.cache
def real_ticks() -> tuple[Tick, ...]:
    """Every trade of the bundled capture, decoded by the engine's own adapter (read once)."""
    ticks = []
    for line in iter_capture(capture_path()):
        if line.ts_recv < 0:
            continue
        tick = binance.decode(line.payload, line.ts_recv)
        if tick is not None:
            ticks.append(tick)
    return tuple(ticks)


I1_STRATEGIES: Final[dict[str, st.SearchStrategy[Any]]] = {
    "mode": st.sampled_from([Mode.SHADOW, Mode.PAPER]),
    "order_type": st.sampled_from(["market", "limit"]),
    "latency_ms": st.integers(0, 500),
    "fast": st.integers(1, 4),
    "start": st.integers(0, 8_000),
}


def shadow_and_paper_never_touch_a_socket(
    mode: Mode, order_type: str, latency_ms: int, fast: int, start: int
) -> None:
    config = Config(
        engine=EngineSection(mode=mode),
        strategy=StrategyChoice(params=StrategySection(fast=fast, slow=fast + 2, bar_seconds=0)),
        execution=msgspec.convert(
            {"order_type": order_type, "latency_ms": latency_ms}, ExecutionSection
        ),
    )
    ticks = real_ticks()[start : start + I1_WINDOW_TICKS]
    with sockets_refused() as calls:
        strategy = build_strategy(config.strategy)
        execution = Execution(config)
        orders = 0
        for i in range(0, len(ticks), I1_BATCH_TICKS):
            records = execution.process(strategy.on_batch(ticks[i : i + I1_BATCH_TICKS]))
            orders += sum(isinstance(r, Order) for r in records)
    assert orders > 0, f"no order placed in {mode} from tick {start}: nothing was exercised"
    assert calls == [], f"network calls in {mode}: {calls}"


# ---------------------------------------------------------------- I2-I4: the state machine

SYMBOLS = ("AAA", "BBB")
T0 = 1_700_000_000_000_000_000
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
        insert_records(self.conn, records)


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
        self.clock += dt_ms * NS_PER_MS
        self.trade_ids[symbol] += 1
        self.prices[symbol] = max(Decimal(1), self.prices[symbol] + Decimal(move) / 2)
        return Tick(
            event_id=f"test:{symbol}:{self.trade_ids[symbol]}",
            venue="test",
            symbol=symbol,
            trade_id=self.trade_ids[symbol],
            ts_event=self.clock,
            ts_recv=self.clock + 5 * NS_PER_MS + delay_ms * NS_PER_MS,
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
        # whole batch == item by item, and live == reference
        assert produced == expected, f"item by item {produced} != whole batch {expected}"
        self.history.append(batch)
        self.pending.append([*batch, *produced])

    def absorb(self, produced: list[Record], before: dict[str, Decimal]) -> None:
        for record in produced:
            self.records.append(record)
            if isinstance(record, Order):
                assert record.order_id not in self.orders, f"second order {record.order_id} (I3)"
                self.orders[record.order_id] = record
                if record.side is Side.BUY:
                    assert not self.halted, f"BUY {record.order_id} while HALTED"
                    mark = self.model_prices[record.symbol]
                    projected = before[record.symbol] + record.qty * mark
                    total = sum(before.values()) + record.qty * mark
                    assert projected <= MAX_SYMBOL_EXPOSURE, (projected, record)
                    assert total <= MAX_EXPOSURE, (total, record)
                open_now = len(self.orders) - len(self.closed)
                assert open_now <= MAX_OPEN_ORDERS, f"{open_now} open orders (I2)"
            elif isinstance(record, OrderEvent):
                previous = self.last_state.get(record.order_id)
                if previous is None:
                    assert record.seq == 0 and record.state is OrderState.SUBMITTED, record
                else:
                    assert record.seq == self.last_seq[record.order_id] + 1, record
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
                    assert record.filled_qty == self.filled[record.order_id], record
                    assert record.leaves_qty == 0, record
            elif isinstance(record, Fill):
                conserved = record.cash_delta + record.position_delta * record.price + record.fee
                assert conserved == 0, f"fill does not conserve (I4): {record}"
                self.filled[record.order_id] += record.qty
                assert self.filled[record.order_id] == self.event_filled[record.order_id], record
                assert self.filled[record.order_id] <= self.orders[record.order_id].qty, record
                self.positions[record.symbol] += record.position_delta
                self.cash += record.cash_delta
                assert self.positions[record.symbol] >= 0, f"short position (long-only): {record}"
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
        self, *, symbol: str, side: Side, move: int, dt_ms: int, delay_ms: int, with_trades: int
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
        again = self.live.process(batch)
        assert again == [], f"a duplicate batch produced {again} (I3)"
        assert state_of(self.live) == before, "a duplicate batch changed the state (I3)"

    @rule()
    def flush(self) -> None:
        for records in self.pending:
            self.db.write(records)
        self.pending = []
        rebuilt = ledger_from_fills(load_restored_state(self.db.conn).fills)
        assert rebuilt == self.live.ledger, f"restored {rebuilt} != live {self.live.ledger} (I4)"

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
            if is_stored(self.db.conn, r)
        }
        self.live = Execution(self.config)
        self.live.restore(load_restored_state(self.db.conn))
        again: list[Record] = []
        for batch in self.history:
            produced = self.live.process(batch)
            again.extend(produced)
            self.pending.append([*batch, *produced])
        # Exactly what the kill lost is produced again -- nothing twice, nothing missing.
        lost_records = [r for r in self.records if record_key(r) not in stored]
        assert [record_key(r) for r in again] == [record_key(r) for r in lost_records], (
            f"re-feed made {[record_key(r) for r in again]}, "
            f"the kill lost {[record_key(r) for r in lost_records]} (I3)"
        )
        assert again == lost_records, "re-fed records differ from the lost ones (I3)"
        assert state_of(self.live) == state_of(self.reference), "restarted state != reference"
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
        assert ledger.cash == self.cash, f"ledger cash {ledger.cash} != sum of fills {self.cash}"
        held = {s: q for s, q in ledger.positions().items() if q}
        assert held == {s: q for s, q in self.positions.items() if q}, f"positions {held} (I4)"
        fills = [r for r in self.records if isinstance(r, Fill)]
        assert ledger_from_fills(fills) == ledger, "ledger != ledger rebuilt from fills (I4)"

    @invariant()
    def open_orders_within_cap(self) -> None:
        assert len(self.live.open_orders) <= MAX_OPEN_ORDERS, f"{self.live.open_orders} (I2)"
        assert set(self.live.open_orders) == set(self.orders) - self.closed, (
            f"open {sorted(self.live.open_orders)} != {sorted(set(self.orders) - self.closed)}"
        )


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
