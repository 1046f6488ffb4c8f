"""SyntheticStream and write_synthetic_capture: determinism, grids, pacing, overload policy."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import trio
import trio.testing

from engine.adapters.market.replay import ReplayStream
from engine.adapters.market.synthetic import (
    CAPTURE_START_NS,
    SyntheticStream,
    write_synthetic_capture,
)
from engine.core.events import Tick
from engine.counters import Counters
from engine.ports import MarketDataStream, TickBatch
from tests.fakes.engine_process import run_engine

EPOCH_NS = 1_723_161_600_000_000_000


def mock_clock_ns() -> Callable[[], int]:
    """ts_recv from the (mock) Trio clock, counted from its first reading: reproducible."""
    base: list[float] = []

    def clock() -> int:
        if not base:
            base.append(trio.current_time())
        return EPOCH_NS + round((trio.current_time() - base[0]) * 1e9)

    return clock


async def collect(source: MarketDataStream, buffer: int = 16) -> list[tuple[float, TickBatch]]:
    send, receive = trio.open_memory_channel[TickBatch](buffer)
    start = trio.current_time()
    got: list[tuple[float, TickBatch]] = []

    async def consume() -> None:
        async for batch in receive:
            got.append((trio.current_time() - start, batch))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        async with send:
            await source.stream(send)
    return got


def ticks_of(got: list[tuple[float, TickBatch]]) -> list[Tick]:
    return [t for _, batch in got for t in batch]


def synthetic(counters: Counters | None = None, **kwargs: object) -> SyntheticStream:
    options: dict[str, object] = {
        "rate_per_s": 100.0,
        "max_ticks": 300,
        "clock": mock_clock_ns(),
        "first_trade_id": 1,
        "symbols": ("BTCUSDT", "ETHUSDT"),
    }
    options.update(kwargs)
    return SyntheticStream(counters or Counters(), **options)  # type: ignore[arg-type]


async def test_synthetic_same_seed_gives_identical_ticks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = ticks_of(await collect(synthetic(seed=42)))
    second = ticks_of(await collect(synthetic(seed=42)))
    assert len(first) == 300
    assert first == second


async def test_synthetic_different_seed_gives_different_walk(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = ticks_of(await collect(synthetic(seed=1)))
    b = ticks_of(await collect(synthetic(seed=2)))
    assert [(t.symbol, t.price, t.qty) for t in a] != [(t.symbol, t.price, t.qty) for t in b]


async def test_synthetic_prices_and_quantities_exact_on_their_grids(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticks = ticks_of(await collect(synthetic(seed=5, start_price=Decimal("60000"))))
    for t in ticks:
        assert isinstance(t.price, Decimal) and t.price.as_tuple().exponent == -2
        assert isinstance(t.qty, Decimal) and t.qty.as_tuple().exponent == -5
        assert Decimal("0.01") <= t.price and Decimal("0.00001") <= t.qty <= 1
    assert len({t.price for t in ticks}) > 10  # it walks


async def test_synthetic_price_floored_at_one_cent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticks = ticks_of(await collect(synthetic(seed=3, start_price=Decimal("0.01"), max_ticks=500)))
    assert min(t.price for t in ticks) == Decimal("0.01")


async def test_synthetic_ids_increase_per_symbol_and_times_consistent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticks = ticks_of(await collect(synthetic(seed=9, first_trade_id=1000)))
    for symbol in ("BTCUSDT", "ETHUSDT"):
        ids = [t.trade_id for t in ticks if t.symbol == symbol]
        assert ids == list(range(1000, 1000 + len(ids))) and len(ids) > 50
        assert all(
            t.event_id == f"binance:{symbol}:{t.trade_id}" for t in ticks if t.symbol == symbol
        )
    for i, t in enumerate(ticks):
        assert t.ts_recv == EPOCH_NS + i * 10_000_000  # the injected clock at 100/s
        assert 0 < t.ts_recv - t.ts_event <= 33_000_000  # seeded 1-32 ms latency (ms floor)


async def test_synthetic_paced_at_rate_on_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got = await collect(synthetic(rate_per_s=4.0, max_ticks=5, symbols=("BTCUSDT",)))
    assert [(when, [t.trade_id for t in batch]) for when, batch in got] == [
        (0.0, [1]),
        (0.25, [2]),
        (0.5, [3]),
        (0.75, [4]),
        (1.0, [5]),
    ]


async def test_synthetic_default_first_trade_id_from_clock() -> None:
    source = SyntheticStream(Counters(), max_ticks=1, clock=lambda: 1_700_000_000_123_456_789)
    (tick,) = ticks_of(await collect(source))
    assert tick.trade_id == 1_700_000_000_123_456
    assert tick.ts_recv == 1_700_000_000_123_456_789


async def test_synthetic_full_channel_drops_newest_and_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counters = Counters()
    send, receive = trio.open_memory_channel[TickBatch](1)  # nobody reads
    async with send, receive:
        await synthetic(counters, rate_per_s=10.0, max_ticks=4).stream(send)
        (kept,) = [receive.receive_nowait()]
    assert [t.trade_id for t in kept] == [1]
    assert (counters.ingest_received, counters.ingest_processed, counters.bp_drops_tick) == (
        4,
        1,
        3,
    )


async def test_synthetic_lossless_waits_for_a_slow_consumer_then_catches_up_in_full_batches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counters = Counters()
    source = synthetic(counters, rate_per_s=10_000.0, max_ticks=2500, lossless=True)
    send, receive = trio.open_memory_channel[TickBatch](0)
    sizes: list[int] = []

    async def slow_consumer() -> None:
        async for batch in receive:
            sizes.append(len(batch))
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_consumer)
        async with send:
            await source.stream(send)
    assert sum(sizes) == counters.ingest_processed == counters.ingest_received == 2500
    assert counters.bp_drops_tick == 0
    assert sizes[:2] == [1, 1] and sizes[2:4] == [1000, 1000]  # behind schedule: capped batches


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        SyntheticStream(Counters(), rate_per_s=0)
    with pytest.raises(ValueError, match="max_ticks"):
        SyntheticStream(Counters(), max_ticks=-1)
    with pytest.raises(ValueError, match="symbol"):
        SyntheticStream(Counters(), symbols=())
    with pytest.raises(ValueError, match="start_price"):
        SyntheticStream(Counters(), start_price=Decimal("0"))


@pytest.mark.parametrize("packed", [False, True])
async def test_write_synthetic_capture_round_trips_through_replay(
    tmp_path: Path, packed: bool
) -> None:
    path = tmp_path / "syn.cap"
    write_synthetic_capture(path, 2_500, seed=11, symbols=("BTCUSDT", "ETHUSDT"), gzip=packed)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") is packed
    counters = Counters()
    ticks = ticks_of(await collect(ReplayStream([path], counters)))
    assert len(ticks) == 2_500
    assert (counters.ingest_received, counters.ingest_processed, counters.parse_errors) == (
        2_500,
        2_500,
        0,
    )
    for symbol in ("BTCUSDT", "ETHUSDT"):
        ids = [t.trade_id for t in ticks if t.symbol == symbol]
        assert ids == list(range(1, len(ids) + 1))
    stamps = [t.ts_recv for t in ticks]
    assert stamps == sorted(stamps) and stamps[0] >= CAPTURE_START_NS
    assert all(0 < t.ts_recv - t.ts_event <= 33_000_000 for t in ticks)
    # mean gap 1/50 s: 2,500 trades span about 50 s
    assert 40e9 < stamps[-1] - stamps[0] < 60e9


def test_write_synthetic_capture_deterministic_per_seed(tmp_path: Path) -> None:
    a, b, c, z = (tmp_path / n for n in ("a", "b", "c", "z.gz"))
    write_synthetic_capture(a, 1_000, seed=1)
    write_synthetic_capture(b, 1_000, seed=1)
    write_synthetic_capture(c, 1_000, seed=2)
    write_synthetic_capture(z, 1_000, seed=1, gzip=True)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert gzip.decompress(z.read_bytes()) == a.read_bytes()
    assert a.read_bytes().count(b"\n") == 1_000


def test_write_synthetic_capture_real_shape_lines(tmp_path: Path) -> None:
    path = tmp_path / "one"
    write_synthetic_capture(path, 1, seed=1, start_ns=EPOCH_NS)
    ts, _, raw = path.read_bytes().rstrip(b"\n").partition(b" ")
    assert int(ts) > EPOCH_NS
    assert raw.startswith(b'{"stream":"btcusdt@trade","data":{"e":"trade","E":')
    assert raw.endswith(b',"M":true}}')


@pytest.mark.parametrize(
    ("symbols", "message"),
    [("[]", "at least one symbol"), ('["BT\\"C"]', "is not a symbol")],
    ids=["no_symbols", "quote_in_symbol"],
)
def test_run_unusable_synthetic_symbols_config_exit_12_no_traceback(
    tmp_path: Path, symbols: str, message: str
) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(
        f'[engine]\ndb_path = "{tmp_path / "e.db"}"\n'
        f'[ingest]\nsource = "synthetic"\nsynthetic_symbols = {symbols}\nsynthetic_max_ticks = 5\n'
    )
    done = run_engine(["run", "--config", str(config)], timeout=60)
    assert done.returncode == 12, done.stderr[-500:]
    assert "Traceback" not in done.stderr
    assert message in done.stderr + done.stdout
