"""The user-data stream against the fake venue's WebSocket API: fills, reconnect, reconcile."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
import trio

from engine.adapters.binance_spot.execution import BinanceExecution
from engine.adapters.binance_spot.rest import BinanceRest
from engine.adapters.binance_spot.signing import client_order_id, sign
from engine.adapters.binance_spot.user_stream import (
    StreamPolicy,
    run_user_stream,
    subscribe_request,
)
from engine.core.events import (
    FailureKind,
    Fill,
    Order,
    OrderEvent,
    OrderType,
    Record,
    Side,
    VenueFailure,
)
from engine.exits import ConfigError, NetworkBudgetExhausted
from tests.fakes.fake_binance_rest import API_KEY, API_SECRET, FakeBinance
from tests.fakes.live_support import live_book
from tests.fakes.user_stream import FAST, GUARD_S, Stream, credentials, wall_ms
from tests.fakes.user_stream import stream as stream  # noqa: PLC0414 -- the fixture

ORDER = Order(
    order_id="ord:sig:binance:BTCUSDT:1", signal_id="sig:binance:BTCUSDT:1", mode="live",
    symbol="BTCUSDT", side=Side.BUY, order_type=OrderType.LIMIT, qty=Decimal("0.002"),
    price=Decimal("49000.00"), ts_event=1,
)  # fmt: skip
CID = client_order_id(ORDER.order_id)


async def start(s: Stream, nursery: trio.Nursery, policy: StreamPolicy = FAST) -> None:
    with trio.fail_after(GUARD_S):
        await nursery.start(
            lambda task_status: run_user_stream(
                s.live, s.send, url=s.fake.ws_url, credentials=credentials(), wall_ms=wall_ms,
                policy=policy, task_status=task_status,
            )
        )  # fmt: skip


async def order_resting_then_started(s: Stream, nursery: trio.Nursery) -> None:
    """``ORDER`` placed by the core and submitted to the venue, then the stream started."""
    s.track(ORDER)
    with trio.fail_after(GUARD_S):
        await s.live.submit(ORDER.order_id)
    await start(s, nursery)


def states(records: list[Record]) -> list[str]:
    return [str(r.state) for r in records if isinstance(r, OrderEvent)]


def test_subscribe_request_signed_over_sorted_params() -> None:
    text = subscribe_request(credentials(), 1234, "sub-1")
    assert '"method":"userDataStream.subscribe.signature"' in text
    assert sign(API_SECRET.encode(), f"apiKey={API_KEY}&timestamp=1234") in text
    assert API_SECRET not in text


async def test_stream_fill_of_resting_order_arrives_as_records(
    stream: Stream, nursery: trio.Nursery
) -> None:
    await order_resting_then_started(stream, nursery)
    stream.fake.trade(CID, Decimal("0.0005"))
    stream.fake.trade(CID, Decimal("0.0015"))
    got = await stream.records_until(Fill)
    while states(got)[-1:] != ["FILLED"]:
        got += await stream.next_records()
    assert states(got) == ["PARTIALLY_FILLED", "FILLED"]
    assert [f.qty for f in got if isinstance(f, Fill)] == [Decimal("0.0005"), Decimal("0.0015")]


async def test_stream_reconnect_reconciles_what_was_missed(
    stream: Stream, nursery: trio.Nursery
) -> None:
    await order_resting_then_started(stream, nursery)
    await stream.fake.drop_stream()
    lost = await stream.records_until(VenueFailure)
    assert [f.kind for f in lost if isinstance(f, VenueFailure)] == [FailureKind.NETWORK]
    stream.fake.trade(CID, Decimal("0.002"))  # while nobody is subscribed: never pushed
    got = await stream.records_until(Fill)  # ...but the reconnect's reconcile finds it
    assert states(got) == ["FILLED"]
    with trio.fail_after(GUARD_S):
        await stream.fake.subscribed.wait()
    assert len([r for r in stream.fake.requests if r.path == "/api/v3/myTrades"]) == 1


async def test_stream_duplicate_events_book_once(stream: Stream, nursery: trio.Nursery) -> None:
    await order_resting_then_started(stream, nursery)
    stream.fake.trade(CID, Decimal("0.002"))
    got = await stream.records_until(Fill)
    # the same trade reported again (e.g. a re-delivery) and reconciled again: nothing new
    with trio.fail_after(GUARD_S):
        again = await stream.live.reconcile()
    assert again == []
    assert len([r for r in got if isinstance(r, Fill)]) == 1


async def test_stream_bad_key_is_a_config_error(nursery: trio.Nursery) -> None:
    fake = FakeBinance()
    await fake.serve(nursery)
    send, _receive = trio.open_memory_channel[list[Record]](10)
    async with httpx.AsyncClient() as client:
        rest = BinanceRest(base_url=fake.rest_url, credentials=credentials("wrong"),
                           client=client, wall_ms=wall_ms)  # fmt: skip
        live = BinanceExecution(rest=rest, credentials=credentials("wrong"), book=live_book())
        with (
            trio.fail_after(GUARD_S),
            pytest.RaisesGroup(ConfigError, allow_unwrapped=True, flatten_subgroups=True),
        ):
            await run_user_stream(
                live, send, url=fake.ws_url, credentials=credentials("wrong"), wall_ms=wall_ms,
                policy=FAST,
            )  # fmt: skip


async def test_stream_unreachable_exhausts_budget_with_network_exit(
    stream: Stream, nursery: trio.Nursery
) -> None:
    with trio.fail_after(GUARD_S), pytest.raises(NetworkBudgetExhausted):
        await run_user_stream(
            stream.live, stream.send, url="ws://127.0.0.1:1/ws-api/v3",
            credentials=credentials(), wall_ms=wall_ms, policy=FAST,
        )  # fmt: skip
    failures: list[Record] = []
    while len(failures) < FAST.max_failures:
        failures += stream.receive.receive_nowait()
    assert all(isinstance(f, VenueFailure) and f.operation == "user_stream" for f in failures)


@pytest.mark.parametrize(
    "frame",
    [
        '{"subscriptionId":1,"event":' + "[" * 100_000 + "]" * 100_000 + "}",  # RecursionError
        b'{"subscriptionId":1,"event":{"e":"\xff\xfe"}}',  # UnicodeDecodeError (binary frame)
    ],
    ids=["nested_too_deep", "invalid_utf8"],
)
async def test_stream_malformed_frame_is_a_lost_stream_then_reconnect_not_a_crash(
    stream: Stream, nursery: trio.Nursery, frame: str | bytes
) -> None:
    await start(stream, nursery)
    stream.fake.subscribed = trio.Event()
    stream.fake.push_raw(frame)
    lost = await stream.records_until(VenueFailure)
    assert [f.kind for f in lost if isinstance(f, VenueFailure)] == [FailureKind.NETWORK]
    with trio.fail_after(GUARD_S):
        await stream.fake.subscribed.wait()  # subscribed again: the engine kept running
