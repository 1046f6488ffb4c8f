"""The LIVE user-data stream against the fake venue's WebSocket API, ready to start.

Shared by ``tests/adapters/binance_spot/test_user_stream.py`` and
``tests/adapters/binance_spot/test_user_stream_hostile.py``: the ``stream``
fixture (a fake venue, a REST client, the adapter, a record channel) and the
fast reconnect policy.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest
import trio

from engine.adapters.backoff import DEFAULT_POLICY
from engine.adapters.binance_spot.credentials import Credentials, Secret
from engine.adapters.binance_spot.execution import BinanceExecution
from engine.adapters.binance_spot.rest import BinanceRest
from engine.adapters.binance_spot.user_stream import StreamPolicy
from engine.core.events import Order, Record
from engine.core.live_orders import LiveMode
from tests.fakes.fake_binance_rest import API_KEY, API_SECRET, FakeBinance
from tests.fakes.live_support import live_book, place

GUARD_S = 10.0
FAST = StreamPolicy(backoff=replace(DEFAULT_POLICY, initial_s=0.01, max_s=0.05), max_failures=3)
def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def credentials(key: str = API_KEY) -> Credentials:
    return Credentials(api_key=key, secret=Secret(API_SECRET), source="test")


@dataclass
class Stream:
    fake: FakeBinance
    live: BinanceExecution
    receive: trio.MemoryReceiveChannel[list[Record]]
    send: trio.MemorySendChannel[list[Record]]
    book: LiveMode

    def track(self, order: Order) -> None:
        """The core records and opens ``order`` in its book; the adapter maps it."""
        place(self.book, order)
        self.live.track(order)

    async def next_records(self) -> list[Record]:
        with trio.fail_after(GUARD_S):
            return await self.receive.receive()

    async def records_until(self, predicate: type) -> list[Record]:
        got: list[Record] = []
        while not any(isinstance(r, predicate) for r in got):
            got += await self.next_records()
        return got


@pytest.fixture
async def stream(nursery: trio.Nursery) -> AsyncIterator[Stream]:
    fake = FakeBinance()
    await fake.serve(nursery)
    send, receive = trio.open_memory_channel[list[Record]](100)
    async with httpx.AsyncClient() as client:
        rest = BinanceRest(base_url=fake.rest_url, credentials=credentials(), client=client,
                           wall_ms=wall_ms)  # fmt: skip
        book = live_book()
        live = BinanceExecution(rest=rest, credentials=credentials(), book=book)
        yield Stream(fake, live, receive, send, book)
