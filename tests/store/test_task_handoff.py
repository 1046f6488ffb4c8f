"""The persistence task's GIL hand-off setting: lowered while it runs, restored after."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Sequence
from decimal import Decimal

import pytest
import trio

from engine.core.events import Record, Tick
from engine.counters import Counters
from engine.ports import WriteResult
from engine.store.task import GIL_SWITCH_INTERVAL_S, run_persistence


class Store:
    """Records the switch interval seen by each write (in the worker thread)."""

    def __init__(self, fail: bool = False) -> None:
        self.seen: list[float] = []
        self.fail = fail

    def write_records(self, records: Sequence[Record]) -> WriteResult:
        self.seen.append(sys.getswitchinterval())
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        return WriteResult(inserted=len(records), records=len(records), lock_retries=0)


def tick(n: int) -> Tick:
    return Tick(event_id=f"binance:BTCUSDT:{n}", venue="binance", symbol="BTCUSDT", trade_id=n,
                ts_event=n, ts_recv=n, price=Decimal("1.5"), qty=Decimal("0.1"))


@pytest.mark.parametrize("fail", [False, True])
async def test_run_persistence_switch_interval_lowered_then_restored(fail: bool) -> None:
    before = sys.getswitchinterval()
    assert before != GIL_SWITCH_INTERVAL_S
    store = Store(fail=fail)
    send, receive = trio.open_memory_channel[list[Record]](4)
    async with send:
        await send.send([tick(1), tick(2)])
    with trio.fail_after(10):
        if fail:
            with pytest.raises(sqlite3.OperationalError):
                await run_persistence(store, receive, Counters(), trio.CapacityLimiter(1))
        else:
            await run_persistence(store, receive, Counters(), trio.CapacityLimiter(1))
    assert store.seen == [pytest.approx(GIL_SWITCH_INTERVAL_S)]
    assert sys.getswitchinterval() == pytest.approx(before)
