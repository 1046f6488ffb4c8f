"""ReplayStream: the real capture end to end, counters, malformed input, pacing, cancellation."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from engine import logs
from engine.adapters.market.capture import format_capture_line
from engine.adapters.market.replay import REPLAY_BATCH_TICKS, ReplayStream
from engine.adapters.market.venues import DECODERS
from engine.core.events import Tick
from engine.counters import Counters
from engine.exits import ConfigError
from engine.ports import MarketDataStream, TickBatch

ROOT = Path(__file__).resolve().parents[3]
BINANCE = ROOT / "replays" / "btcusdt_20240808.gz"
COINBASE = ROOT / "tests" / "data" / "coinbase_sample.ws"
R0 = 1_723_161_254_000_000_000
BOOK = (
    b'{"stream":"btcusdt@bookTicker",'
    b'"data":{"u":1,"s":"BTCUSDT","b":"1.0","B":"1","a":"2","A":"1"}}'
)


def trade(t: int, price: str = "100.00", t_ms: int = 1_723_161_255_000) -> bytes:
    data = {
        "e": "trade",
        "E": t_ms,
        "s": "BTCUSDT",
        "t": t,
        "p": price,
        "q": "0.5",
        "T": t_ms,
        "m": True,
        "M": True,
    }
    return msgspec.json.encode({"stream": "btcusdt@trade", "data": data})


def write(path: Path, lines: list[tuple[int, bytes]], *, compress: bool = False) -> Path:
    content = b"".join(format_capture_line(ts, raw) for ts, raw in lines)
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


@pytest.fixture
def logged() -> Iterator[logs.Captured]:
    with logs.capture() as captured:
        yield captured


async def collect(source: MarketDataStream, buffer: int = 4) -> list[TickBatch]:
    send, receive = trio.open_memory_channel[TickBatch](buffer)
    batches: list[TickBatch] = []

    async def consume() -> None:
        async for batch in receive:
            batches.append(batch)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        async with send:
            await source.stream(send)
    return batches


def snapshot(c: Counters) -> tuple[int, int, int, int]:
    return (c.ingest_received, c.ingest_processed, c.skipped_messages, c.parse_errors)


async def test_replay_real_capture_yields_all_9757_ticks_contiguous(logged: logs.Captured) -> None:
    counters = Counters()
    batches = await collect(ReplayStream([BINANCE], counters))
    ticks = [t for b in batches for t in b]
    assert len(ticks) == 9_757
    assert [t.trade_id for t in ticks] == list(range(3735683259, 3735693016))
    assert ticks[0].event_id == "binance:BTCUSDT:3735683259"
    assert ticks[-1].event_id == "binance:BTCUSDT:3735693015"
    assert [len(b) for b in batches] == [REPLAY_BATCH_TICKS] * 9 + [757]
    # 41,249 data messages: 9,757 trades + 28,040 bookTicker + 3,451 depth + 1 REST snapshot
    assert snapshot(counters) == (41_249, 9_757, 31_492, 0)
    assert counters.tick_count == 0  # the strategy's counter, not ours
    assert logged.events("replay_venue_detected")[0]["venue"] == "binance"
    assert logged.events("replay_file_finished")[0]["ticks"] == 9_757


async def test_replay_gzip_and_plain_give_identical_ticks(tmp_path: Path) -> None:
    lines = [(R0 + i, trade(i)) for i in range(1, 6)]
    plain = write(tmp_path / "a.txt", lines)
    packed = write(tmp_path / "a.bin", lines, compress=True)
    a = await collect(ReplayStream([plain], Counters()))
    b = await collect(ReplayStream([packed], Counters()))
    assert a == b and [t.trade_id for t in a[0]] == [1, 2, 3, 4, 5]


async def test_replay_files_in_given_order_each_flushing_its_last_batch(tmp_path: Path) -> None:
    first = write(tmp_path / "1", [(R0 + i, trade(i)) for i in range(4, 7)])
    second = write(tmp_path / "2", [(R0 + i, trade(i)) for i in range(1, 3)])
    counters = Counters()
    batches = await collect(ReplayStream([second, first], counters, batch_size=2))
    assert [[t.trade_id for t in b] for b in batches] == [[1, 2], [4, 5], [6]]
    assert snapshot(counters) == (5, 5, 0, 0)


async def test_replay_malformed_lines_counted_sampled_and_replay_goes_on(
    tmp_path: Path, logged: logs.Captured
) -> None:
    lines = [
        b"%d %s" % (R0, trade(1)),
        b"not-a-timestamp {}",
        b"%d %s" % (R0, b"{broken json"),
        b"%d %s" % (R0, trade(2, price="0")),
        b"%d %s" % (R0, BOOK),
        b"",
        b"%d %s" % (R0, trade(3)),
    ]
    path = tmp_path / "c.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    counters = Counters()
    batches = await collect(ReplayStream([path], counters))
    assert [t.trade_id for b in batches for t in b] == [1, 3]
    assert snapshot(counters) == (6, 2, 1, 3)
    warnings = logged.events("malformed_message")
    assert [(w["line"], w["reason"]) for w in warnings][:1] == [(2, "no timestamp")]
    assert [w["line"] for w in warnings] == [2, 3, 4]
    assert "admissible" in str(warnings[2]["reason"])
    assert warnings[1]["sample"] == "{broken json"


async def test_replay_malformed_log_bounded_first_10_then_every_1000th(
    tmp_path: Path, logged: logs.Captured
) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"%d %s\n" % (R0, trade(1)) + b"%d {oops\n" % R0 * 2_500)
    counters = Counters()
    await collect(ReplayStream([path], counters))
    assert counters.parse_errors == 2_500
    totals = [w["malformed_total"] for w in logged.events("malformed_message")]
    assert totals == [*range(1, 11), 1000, 2000]


async def test_replay_venue_undetectable_raises_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "k.txt", [(R0, b'[1,"trade"]')] * 100)
    with pytest.raises(ConfigError, match="no venue detected"):
        await ReplayStream([path], Counters()).stream(trio.open_memory_channel[TickBatch](1)[0])


async def test_replay_venue_detected_after_a_bad_first_line(tmp_path: Path) -> None:
    path = write(tmp_path / "k.txt", [(R0, b"{bad"), (R0, trade(1))])
    counters = Counters()
    batches = await collect(ReplayStream([path], counters))
    assert [t.trade_id for b in batches for t in b] == [1]
    assert snapshot(counters) == (2, 1, 0, 1)


async def test_replay_venue_without_decoder_raises_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(DECODERS, "coinbase", raising=False)
    with pytest.raises(ConfigError, match="coinbase"):
        await ReplayStream([COINBASE], Counters()).stream(trio.open_memory_channel[TickBatch](9)[0])


async def test_replay_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        source = ReplayStream([tmp_path / "absent.gz"], Counters())
        await source.stream(trio.open_memory_channel[TickBatch](1)[0])


async def test_replay_truncated_gzip_counts_one_error_and_goes_on(
    tmp_path: Path, logged: logs.Captured
) -> None:
    lines = [(R0 + i, trade(i)) for i in range(1, 2001)]
    packed = gzip.compress(b"".join(format_capture_line(ts, raw) for ts, raw in lines))
    broken = tmp_path / "broken.gz"
    broken.write_bytes(packed[: len(packed) - 20])
    good = write(tmp_path / "good", [(R0, trade(5000))])
    counters = Counters()
    batches = await collect(ReplayStream([broken, good], counters))
    ids = [t.trade_id for b in batches for t in b]
    assert ids[-1] == 5000 and ids[:-1] == list(range(1, len(ids)))
    assert counters.parse_errors == 1
    assert "ends badly" in str(logged.events("malformed_message")[0]["reason"])


async def test_replay_speed_1_sends_at_recorded_pace(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = write(
        tmp_path / "paced.txt",
        [
            (R0 - 5_000_000_000, BOOK),  # before the first trade: does not delay it
            (R0, trade(1)),
            (R0 + 500_000_000, trade(2)),
            (R0 + 500_000_000, trade(3)),
            (R0 + 600_000_000, BOOK),
            (R0 + 2_000_000_000, trade(4)),
            (R0 + 2_250_000_000, trade(5)),
        ],
    )
    assert await arrivals(path, speed=1.0) == [
        (0.0, [1]),
        (0.5, [2, 3]),
        (2.0, [4]),
        (2.25, [5]),
    ]


async def test_replay_speed_4_sends_four_times_faster(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = write(
        tmp_path / "paced.txt",
        [(R0, trade(1)), (R0 + 1_000_000_000, trade(2)), (R0 + 3_000_000_000, trade(3))],
    )
    assert await arrivals(path, speed=4.0) == [(0.0, [1]), (0.25, [2]), (0.75, [3])]


async def test_replay_paced_batch_never_exceeds_batch_size(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = write(
        tmp_path / "p.txt", [(R0, trade(i)) for i in range(1, 6)] + [(R0 + 1_000_000_000, trade(6))]
    )
    assert await arrivals(path, speed=1.0, batch_size=2) == [
        (0.0, [1, 2]),
        (0.0, [3, 4]),
        (0.0, [5]),
        (1.0, [6]),
    ]


async def arrivals(
    path: Path, *, speed: float, batch_size: int = REPLAY_BATCH_TICKS
) -> list[tuple[float, list[int]]]:
    send, receive = trio.open_memory_channel[TickBatch](0)
    start = trio.current_time()
    got: list[tuple[float, list[int]]] = []

    async def consume() -> None:
        async for batch in receive:
            got.append((trio.current_time() - start, [t.trade_id for t in batch]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        async with send:
            await ReplayStream([path], Counters(), speed=speed, batch_size=batch_size).stream(send)
    return got


async def test_replay_cancelled_counts_exactly_the_ticks_downstream_received(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "many.txt", [(R0 + i, trade(i)) for i in range(1, 5001)])
    counters = Counters()
    send, receive = trio.open_memory_channel[TickBatch](0)
    received: list[Tick] = []
    async with trio.open_nursery() as nursery:
        ingest = trio.CancelScope()

        async def run_ingest() -> None:
            with ingest:
                async with send:
                    await ReplayStream([path], counters, batch_size=100).stream(send)

        nursery.start_soon(run_ingest)
        async for batch in receive:
            received.extend(batch)
            if len(received) >= 1_200:
                ingest.cancel()
    assert len(received) == counters.ingest_processed == 1_200
    assert [t.trade_id for t in received] == list(range(1, 1_201))
    # messages read into the unsent batch were received, never processed
    assert counters.ingest_received >= counters.ingest_processed


def test_replay_stream_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="speed"):
        ReplayStream([], Counters(), speed=-1)
    with pytest.raises(ValueError, match="batch_size"):
        ReplayStream([], Counters(), batch_size=0)


async def test_replay_decoder_raising_other_value_error_counted_as_malformed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logged: logs.Captured
) -> None:
    real = DECODERS["binance"]

    def sloppy(raw: bytes, ts_recv: int, /) -> Tick | None:
        if b"boom" in raw:
            raise RecursionError("nesting too deep")
        if b"bad" in raw:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return real(raw, ts_recv)

    monkeypatch.setitem(DECODERS, "binance", sloppy)
    path = write(
        tmp_path / "c.txt",
        [(R0, trade(1)), (R0, b'{"e":"boom"}'), (R0, b'{"e":"bad"}'), (R0, trade(2))],
    )
    counters = Counters()
    batches = await collect(ReplayStream([path], counters))
    assert [t.trade_id for b in batches for t in b] == [1, 2]
    assert snapshot(counters) == (4, 2, 0, 2)
    reasons = [str(w["reason"]) for w in logged.events("malformed_message")]
    assert reasons[0] == "RecursionError: nesting too deep"
    assert reasons[1].startswith("UnicodeDecodeError")
