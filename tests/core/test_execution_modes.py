"""The mode as one policy object chosen at construction, and the two kinds of fill id."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config.schema import Config, EngineSection, Mode
from engine.core.booking import OrderBook, simulated_fill_id, trade_id_of, venue_fill_id
from engine.core.events import Order, OrderType, Record, Side, Veto, VetoReason
from engine.core.execution import Execution, policy_for
from engine.core.live_orders import LiveMode
from engine.core.modes import ShadowMode
from engine.core.paper import PaperMode
from engine.counters import Counters
from engine.runtime.pipeline import count_records

POLICIES = {Mode.SHADOW: ShadowMode, Mode.PAPER: PaperMode, Mode.LIVE: LiveMode}


@pytest.mark.parametrize("mode", list(Mode))
def test_policy_for_each_mode_is_that_modes_policy(mode: Mode) -> None:
    policy = policy_for(Config(engine=EngineSection(mode=mode)), OrderBook())
    assert type(policy) is POLICIES[mode]
    assert policy.mode is mode
    assert policy.order_mode == mode.value.upper()  # the orders.mode column
    assert Execution(Config(engine=EngineSection(mode=mode))).mode == mode.value.upper()


@pytest.mark.parametrize("mode", list(Mode))
def test_only_the_venue_modes_rest_limit_orders_and_only_shadow_fills_at_once(mode: Mode) -> None:
    policy = policy_for(Config(engine=EngineSection(mode=mode)), OrderBook())
    assert policy.rests_limit_orders is (mode is not Mode.SHADOW)
    assert policy.fills_at_once is (mode is Mode.SHADOW)
    assert policy.supersede_frees_slot is (mode is not Mode.LIVE)


@pytest.mark.parametrize("mode", [Mode.SHADOW, Mode.PAPER])
def test_simulated_modes_have_no_intents_and_no_venue_to_answer(mode: Mode) -> None:
    execution = Execution(Config(engine=EngineSection(mode=mode)))
    assert execution.take_intents() == []
    with pytest.raises(TypeError, match="venue"):
        execution.apply_venue([])


@given(order_id=st.text(min_size=1, max_size=40), n=st.integers(0, 10**9))
def test_fill_ids_name_what_filled_and_never_collide(order_id: str, n: int) -> None:
    simulated, venue = simulated_fill_id(order_id, n), venue_fill_id(order_id, n)
    assert simulated != venue
    assert trade_id_of(venue) == n
    assert trade_id_of(simulated) is None


def _order(mode: str) -> Order:
    return Order(
        order_id="ord:s", signal_id="s", mode=mode, symbol="BTCUSDT", side=Side.BUY,
        order_type=OrderType.MARKET, qty=Decimal(1), price=Decimal(1), ts_event=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "counter"),
    [(Mode.SHADOW, "shadow_orders"), (Mode.PAPER, "paper_orders"), (Mode.LIVE, "live_orders")],
)
def test_count_records_feeds_the_modes_order_counter(mode: Mode, counter: str) -> None:
    counters = Counters()
    veto = Veto(
        veto_id="veto:s", signal_id="s", symbol="BTCUSDT", reason=VetoReason.STALE_DATA,
        detail="", ts_event=1,
    )  # fmt: skip
    records: list[Record] = [_order(mode.value.upper()), _order(mode.value.upper()), veto]
    count_records(records, counters, mode)
    orders = {c: getattr(counters, c) for c in ("shadow_orders", "paper_orders", "live_orders")}
    assert orders == {c: (2 if c == counter else 0) for c in orders}
    assert (counters.risk_vetoes, counters.stale_vetoes, counters.trade_count) == (1, 1, 0)
