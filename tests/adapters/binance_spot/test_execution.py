"""The LIVE adapter against the fake venue on 127.0.0.1 (never a real exchange)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import trio

from engine import logs
from engine.adapters.backoff import DEFAULT_POLICY
from engine.adapters.binance_spot.credentials import Credentials, Secret
from engine.adapters.binance_spot.execution import (
    BinanceExecution,
    LivePolicy,
    build_live_execution,
)
from engine.adapters.binance_spot.rest import BinanceRest, VenueCallError
from engine.adapters.binance_spot.signing import client_order_id
from engine.config.schema import Config, EngineSection, LiveSection, Mode
from engine.core.booking import OrderBook
from engine.core.events import (
    FailureKind,
    Fill,
    Order,
    OrderEvent,
    OrderState,
    OrderType,
    Record,
    Side,
    VenueFailure,
)
from engine.core.live_orders import LiveMode
from engine.core.sizing import conserves
from engine.exits import ConfigError
from engine.store.sqlite_store import SqliteStore
from tests.fakes.fake_binance_rest import API_KEY, API_SECRET, Behaviour, FakeBinance
from tests.fakes.live_support import live_book, place

GUARD_S = 10.0
"""Every test is bounded: a regression fails fast instead of hanging CI."""
REQUEST_TIMEOUT_S = 0.3
"""Small, so the timeout scenario costs a fraction of a second of real time."""
QTY = Decimal("0.002")


def make_order(
    n: int = 1, side: Side = Side.BUY, order_type: OrderType = OrderType.MARKET
) -> Order:
    return Order(
        order_id=f"ord:sig:binance:BTCUSDT:{n}", signal_id=f"sig:binance:BTCUSDT:{n}",
        mode="live", symbol="BTCUSDT", side=side, order_type=order_type, qty=QTY,
        price=Decimal("49000.00"), ts_event=1_723_161_254_000_000_000 + n,
    )  # fmt: skip


@dataclass
class Venue:
    fake: FakeBinance
    live: BinanceExecution
    book: LiveMode
    orders: OrderBook
    """The core's one order book that ``book`` (the LIVE policy) books into."""
    sleeps: list[float] = field(default_factory=list)

    async def place(self, order: Order) -> list[Record]:
        records = track(self.live, self.book, order)
        records += await self.live.submit(order.order_id)
        return records


def track(live: BinanceExecution, book: LiveMode, order: Order) -> list[Record]:
    """The core records and opens ``order`` in its book; the adapter maps it."""
    records = place(book, order)
    live.track(order)
    return records


def credentials(secret: str = API_SECRET) -> Credentials:
    return Credentials(api_key=API_KEY, secret=Secret(secret), source="test")


@pytest.fixture
async def venue(nursery: trio.Nursery) -> AsyncIterator[Venue]:
    fake = FakeBinance()
    await fake.serve(nursery)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await trio.lowlevel.checkpoint()

    async with httpx.AsyncClient() as client:
        rest = BinanceRest(
            base_url=fake.rest_url, credentials=credentials(), client=client,
            wall_ms=lambda: time.time_ns() // 1_000_000, timeout_s=REQUEST_TIMEOUT_S,
        )  # fmt: skip
        orders = OrderBook()
        book = live_book(orders)
        live = BinanceExecution(
            rest=rest, credentials=credentials(), book=book,
            policy=LivePolicy(backoff=replace(DEFAULT_POLICY, initial_s=0.01)), sleep=sleep,
        )  # fmt: skip
        yield Venue(fake, live, book, orders, sleeps)


def states(records: list[Record]) -> list[str]:
    return [str(r.state) for r in records if isinstance(r, OrderEvent)]


def failures(records: list[Record]) -> list[VenueFailure]:
    return [r for r in records if isinstance(r, VenueFailure)]


def fills(records: list[Record]) -> list[Fill]:
    return [r for r in records if isinstance(r, Fill)]


async def test_submit_accepted_rests_with_signed_request(venue: Venue) -> None:
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    assert [type(r).__name__ for r in records[:2]] == ["Order", "OrderEvent"]
    assert states(records) == ["SUBMITTED", "ACCEPTED"]
    (post,) = venue.fake.new_order_posts()
    assert post.headers["x-mbx-apikey"] == API_KEY
    assert post.params["newClientOrderId"] == client_order_id(make_order().order_id)
    assert post.params["quantity"] == "0.002"
    assert {"timestamp", "recvWindow"} <= post.params.keys()
    assert venue.live.book.open_order_ids() == [make_order().order_id]


async def test_submit_filled_books_fill_from_response(venue: Venue) -> None:
    venue.fake.new_order_plan.append(Behaviour.FILL)
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    assert states(records) == ["SUBMITTED", "ACCEPTED", "FILLED"]
    (fill,) = fills(records)
    assert fill.qty == QTY and fill.price == Decimal("50000.00")
    assert fill.fee == Decimal("0.1")  # 0.1 % of 100 USDT, charged in USDT
    assert conserves(fill.cash_delta, fill.position_delta, fill.price, fill.fee)
    assert failures(records) == []


async def test_submit_answer_is_booked_in_the_core_book_when_submit_returns(venue: Venue) -> None:
    # One book: the adapter reports the venue's answer into the core's book as it
    # arrives; the records it returns are the ones the book produced.
    venue.fake.new_order_plan.append(Behaviour.PARTIAL)
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    oid = make_order().order_id
    ledger = venue.orders.ledger
    assert ledger.position("BTCUSDT") == sum(f.position_delta for f in fills(records))
    assert ledger.fill_count == len(fills(records)) == 1
    assert venue.book.state_of(oid) is OrderState.PARTIALLY_FILLED
    assert venue.orders.open_orders[oid].leaves_qty == Decimal("0.001")  # with its fill


async def test_submit_partial_fill_then_rest(venue: Venue) -> None:
    venue.fake.new_order_plan.append(Behaviour.PARTIAL)
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    assert states(records) == ["SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED"]
    event = [r for r in records if isinstance(r, OrderEvent)][-1]
    assert event.filled_qty == Decimal("0.001") and event.leaves_qty == Decimal("0.001")


async def test_submit_rejected_records_venue_code_and_message(venue: Venue) -> None:
    venue.fake.new_order_plan.append(Behaviour.REJECT)
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    assert states(records) == ["SUBMITTED", "REJECTED"]
    rejected = [r for r in records if isinstance(r, OrderEvent)][-1]
    assert rejected.reason == "venue -2010: Account has insufficient balance for requested action."
    (failure,) = failures(records)
    assert failure.kind is FailureKind.VENUE_ERROR and failure.code == -2010
    assert failure.http_status == 400


async def test_submit_timeout_then_filled_resolved_by_query_never_resent(venue: Venue) -> None:
    venue.fake.new_order_plan.append(Behaviour.TIMEOUT_THEN_FILLED)
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    assert len(venue.fake.new_order_posts()) == 1  # the retry never happened
    assert len(venue.fake.orders) == 1
    assert states(records) == ["SUBMITTED", "ACCEPTED", "FILLED"]
    (fill,) = fills(records)  # the query said FILLED: the trades came from myTrades
    assert fill.fill_id.startswith(f"fill:{make_order().order_id}:T")
    (failure,) = failures(records)
    assert failure.kind is FailureKind.TIMEOUT and failure.operation == "new_order"
    paths = [(r.method, r.path) for r in venue.fake.requests]
    assert paths == [
        ("POST", "/api/v3/order"),
        ("GET", "/api/v3/order"),
        ("GET", "/api/v3/myTrades"),
    ]


async def test_submit_dropped_connection_not_placed_is_resent_once(venue: Venue) -> None:
    venue.fake.new_order_plan.append(Behaviour.DROP)
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    assert len(venue.fake.new_order_posts()) == 2
    assert len(venue.fake.orders) == 1
    assert states(records) == ["SUBMITTED", "ACCEPTED"]
    kinds = [(f.operation, f.kind) for f in failures(records)]
    assert kinds[0] == ("new_order", FailureKind.NETWORK)
    queries = [r for r in venue.fake.requests if r.method == "GET"]
    assert len(queries) == venue.live._policy.resolve_queries  # asked before re-sending


async def test_submit_server_error_not_placed_resent_after_query(venue: Venue) -> None:
    venue.fake.new_order_plan.append(Behaviour.SERVER_ERROR)
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    assert states(records) == ["SUBMITTED", "ACCEPTED"]
    assert failures(records)[0].kind is FailureKind.SERVER_ERROR
    assert failures(records)[0].http_status == 503
    assert len(venue.fake.orders) == 1


async def test_submit_rate_limited_backs_off_with_retry_after(venue: Venue) -> None:
    venue.fake.rate_limit_next = 2
    venue.fake.retry_after_s = "1.5"
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    assert states(records) == ["SUBMITTED", "ACCEPTED"]
    assert [f.kind for f in failures(records)] == [FailureKind.RATE_LIMITED] * 2
    assert [f.http_status for f in failures(records)] == [429, 429]
    assert venue.sleeps == [1.5, 1.5]
    assert len(venue.fake.orders) == 1


async def test_submit_rate_limited_every_time_gives_up_denied(venue: Venue) -> None:
    venue.fake.rate_limit_next = 100
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    assert states(records) == ["SUBMITTED", "DENIED"]
    kinds = [f.kind for f in failures(records)]
    assert kinds == [FailureKind.RATE_LIMITED] * 3 + [FailureKind.GAVE_UP]
    assert venue.fake.orders == {}


async def test_submit_ip_ban_with_long_retry_after_gives_up_at_once(venue: Venue) -> None:
    venue.fake.ban_next = 1
    venue.fake.retry_after_s = "7200"
    with trio.fail_after(GUARD_S):
        records = await venue.place(make_order())
    assert len(venue.fake.new_order_posts()) == 1
    assert venue.sleeps == []
    assert [f.kind for f in failures(records)] == [FailureKind.BANNED, FailureKind.GAVE_UP]
    assert failures(records)[0].http_status == 418
    assert states(records)[-1] == "DENIED"


async def test_submit_again_after_fill_does_not_double(venue: Venue) -> None:
    venue.fake.new_order_plan.append(Behaviour.FILL)
    order = make_order()
    with trio.fail_after(GUARD_S):
        await venue.place(order)
        again = await venue.live.submit(order.order_id)
    assert again == []
    assert len(venue.fake.new_order_posts()) == 1


async def test_cancel_resting_order(venue: Venue) -> None:
    with trio.fail_after(GUARD_S):
        await venue.place(make_order(order_type=OrderType.LIMIT))
        records = await venue.live.cancel(make_order().order_id)
    assert states(records) == ["CANCELED"]
    post = venue.fake.new_order_posts()[0]
    assert post.params["type"] == "LIMIT" and post.params["price"] == "49000.00"


async def test_cancel_after_partial_keeps_the_filled_part(venue: Venue) -> None:
    venue.fake.new_order_plan.append(Behaviour.PARTIAL)
    with trio.fail_after(GUARD_S):
        await venue.place(make_order())
        records = await venue.live.cancel(make_order().order_id)
    assert states(records) == ["CANCELED"]
    event = [r for r in records if isinstance(r, OrderEvent)][-1]
    assert event.filled_qty == Decimal("0.001")
    assert fills(records) == []  # the partial fill was booked once, at submit


async def test_cancel_of_filled_order_books_the_fill_instead(venue: Venue) -> None:
    with trio.fail_after(GUARD_S):
        await venue.place(make_order())
        venue.fake.trade(client_order_id(make_order().order_id), QTY)
        records = await venue.live.cancel(make_order().order_id)
    assert [f.code for f in failures(records)] == [-2011]
    assert states(records) == ["FILLED"]
    assert len(fills(records)) == 1


async def test_reconcile_books_fills_missed_while_away(venue: Venue) -> None:
    with trio.fail_after(GUARD_S):
        await venue.place(make_order())
        cid = client_order_id(make_order().order_id)
        venue.fake.trade(cid, Decimal("0.0005"))
        venue.fake.trade(cid, Decimal("0.0015"))
        records = await venue.live.reconcile()
        again = await venue.live.reconcile()
    assert states(records) == ["PARTIALLY_FILLED", "FILLED"]
    assert sum(f.qty for f in fills(records)) == QTY
    assert again == []


async def test_reconcile_gives_up_order_venue_never_got(venue: Venue) -> None:
    track(venue.live, venue.book, make_order())
    with trio.fail_after(GUARD_S):
        records = await venue.live.reconcile()
    assert states(records) == ["DENIED"]
    assert failures(records)[0].kind is FailureKind.GAVE_UP


async def test_wrong_secret_is_refused_by_venue_and_recorded(nursery: trio.Nursery) -> None:
    fake = FakeBinance()
    await fake.serve(nursery)
    async with httpx.AsyncClient() as client:
        bad = credentials("not-the-secret")
        rest = BinanceRest(base_url=fake.rest_url, credentials=bad, client=client,
                           wall_ms=lambda: time.time_ns() // 1_000_000)  # fmt: skip
        book = live_book()
        live = BinanceExecution(rest=rest, credentials=bad, book=book)
        track(live, book, make_order())
        with trio.fail_after(GUARD_S):
            records = await live.submit(make_order().order_id)
    assert states(records) == ["REJECTED"]
    assert failures(records)[0].code == -1022
    assert fake.orders == {}


async def test_clock_outside_recv_window_refused(nursery: trio.Nursery) -> None:
    fake = FakeBinance()
    await fake.serve(nursery)
    async with httpx.AsyncClient() as client:
        rest = BinanceRest(base_url=fake.rest_url, credentials=credentials(), client=client,
                           wall_ms=lambda: time.time_ns() // 1_000_000 - 60_000)  # fmt: skip
        book = live_book()
        live = BinanceExecution(rest=rest, credentials=credentials(), book=book)
        track(live, book, make_order())
        with trio.fail_after(GUARD_S):
            records = await live.submit(make_order().order_id)
    assert failures(records)[0].code == -1021


async def test_unreachable_venue_not_sent_gives_up(nursery: trio.Nursery) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there: connect is refused, nothing was sent
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with httpx.AsyncClient() as client:
        rest = BinanceRest(base_url=f"http://127.0.0.1:{port}", credentials=credentials(),
                           client=client, wall_ms=lambda: 0)  # fmt: skip
        book = live_book()
        live = BinanceExecution(rest=rest, credentials=credentials(), book=book, sleep=sleep)
        track(live, book, make_order())
        with trio.fail_after(GUARD_S):
            records = await live.submit(make_order().order_id)
    assert [f.kind for f in failures(records)] == [FailureKind.NETWORK] * 3 + [FailureKind.GAVE_UP]
    assert len(sleeps) == 2  # backoff between the three sends, no query (nothing was sent)
    assert sleeps[0] < sleeps[1]
    assert states(records)[-1] == "DENIED"


async def test_secret_never_in_records_logs_or_database(venue: Venue, tmp_path: Path) -> None:
    records: list[Record] = []
    with logs.capture() as out:
        venue.fake.new_order_plan.extend(
            [Behaviour.TIMEOUT_THEN_FILLED, Behaviour.REJECT, Behaviour.DROP, Behaviour.PARTIAL]
        )
        venue.fake.rate_limit_next = 1
        with trio.fail_after(GUARD_S):
            for n in range(1, 5):
                records += await venue.place(make_order(n))
            records += await venue.live.cancel(make_order(4).order_id)
    assert failures(records)  # the scenario did exercise the failure paths
    everything = out.text() + "".join(repr(r) for r in records)
    assert API_SECRET not in everything
    assert API_KEY not in everything
    store = SqliteStore.open(tmp_path / "live.db")
    persisted: list[Record] = [r for r in records if not isinstance(r, VenueFailure)]
    store.write_records(persisted)
    rows = store.connection.execute("SELECT count(*) FROM order_events").fetchone()[0]
    store.connection.close()
    assert rows == len(states(records))
    assert_not_in_files(tmp_path, API_SECRET.encode(), API_KEY.encode())


def assert_not_in_files(directory: Path, *needles: bytes) -> None:
    for path in directory.iterdir():
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, path


async def test_build_live_execution_from_config_places_on_configured_venue(
    nursery: trio.Nursery,
) -> None:

    fake = FakeBinance()
    await fake.serve(nursery)
    config = Config(engine=EngineSection(mode=Mode.LIVE), live=LiveSection(rest_url=fake.rest_url))
    env = {"BINANCE_API_KEY": API_KEY, "BINANCE_API_SECRET": API_SECRET}
    async with httpx.AsyncClient() as client:
        book = live_book()
        live = build_live_execution(config, client, env, book=book)
        track(live, book, make_order())
        with trio.fail_after(GUARD_S):
            records = await live.submit(make_order().order_id)
    assert states(records) == ["ACCEPTED"]


async def test_build_live_execution_without_credentials_is_config_error() -> None:

    async with httpx.AsyncClient() as client:
        with pytest.raises(ConfigError, match="BINANCE_API_KEY"):
            build_live_execution(Config(), client, {}, book=live_book())


def test_track_refuses_a_non_live_order() -> None:
    live = BinanceExecution(rest=None, credentials=credentials(), book=live_book())  # type: ignore[arg-type]
    paper = Order(
        **{**{f: getattr(make_order(), f) for f in Order.__struct_fields__}, "mode": "paper"}
    )
    with pytest.raises(ValueError, match="paper"):
        live.track(paper)


DEEP_JSON = b'{"pad":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
"""msgspec raises RecursionError (not DecodeError) for this."""
BAD_UTF8 = b'{"code":-1,"msg":"\xff\xfe"}'
"""msgspec raises UnicodeDecodeError (not DecodeError) for this."""


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, DEEP_JSON, FailureKind.BAD_RESPONSE),
        (200, b'{"symbol":"\xff"}', FailureKind.BAD_RESPONSE),
        (500, DEEP_JSON, FailureKind.SERVER_ERROR),
        (400, BAD_UTF8, FailureKind.VENUE_ERROR),
    ],
    ids=["ok_deep", "ok_bad_utf8", "error_deep", "error_bad_utf8"],
)
async def test_rest_undecodable_body_is_a_venue_call_error_not_a_crash(
    nursery: trio.Nursery, status: int, body: bytes, kind: FailureKind
) -> None:
    fake = FakeBinance()
    await fake.serve(nursery)
    async with httpx.AsyncClient() as client:
        rest = BinanceRest(
            base_url=fake.rest_url, credentials=credentials(), client=client,
            wall_ms=lambda: time.time_ns() // 1_000_000, timeout_s=REQUEST_TIMEOUT_S,
        )  # fmt: skip
        for call in ("query_order", "my_trades"):
            fake.raw_responses.append((status, body))
            with trio.fail_after(GUARD_S), pytest.raises(VenueCallError) as caught:
                if call == "query_order":
                    await rest.query_order("BTCUSDT", "cid-1")
                else:
                    await rest.my_trades("BTCUSDT", 1000)
            assert caught.value.kind is kind, call


@pytest.mark.parametrize(
    ("live", "key"),
    [
        ({"rest_url": "ftp://api.example"}, "live.rest_url"),
        ({"rest_url": "https://"}, "live.rest_url"),
        ({"ws_url": "https://ws-api.example/ws-api/v3"}, "live.ws_url"),
        ({"ws_url": "wss://ws-api.example:99999/"}, "live.ws_url"),
    ],
    ids=["rest_scheme", "rest_no_host", "ws_scheme", "ws_port"],
)
async def test_build_live_execution_unusable_url_is_config_error(
    live: dict[str, str], key: str
) -> None:
    config = Config(engine=EngineSection(mode=Mode.LIVE), live=LiveSection(**live))
    env = {"BINANCE_API_KEY": API_KEY, "BINANCE_API_SECRET": API_SECRET}
    async with httpx.AsyncClient() as client:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            build_live_execution(config, client, env, book=live_book())
