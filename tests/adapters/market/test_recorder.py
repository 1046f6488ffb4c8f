"""Capture recorder: the replay format, gzip, append, bounded queue, clean close, disk errors;
and the ``record`` command's exit codes: a recording that never got a frame is a failure."""

from __future__ import annotations

import gzip
import os
import socket
import zlib
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.adapters.market.capture import iter_capture
from engine.adapters.market.recorder import CaptureRecorder, open_capture_recorder
from engine.exits import ConfigError
from engine.logs import Captured
from tests.fakes.engine_process import LogLine, parse_logs, run_engine
from tests.fakes.fake_exchange import Session, open_fake_exchange

FRAMES = [
    (1723161254087896568, b'{"stream":"btcusdt@trade","data":{"e":"trade","t":1}}'),
    (1723161254347673567, b"not json at all"),
    (1723161254347674367, b'{"a":\n1}'),  # a line break inside a frame stays one line
]


def _read(path: Path) -> list[tuple[int, bytes]]:
    return [(line.ts_recv, line.payload) for line in iter_capture(path) if line.ts_recv >= 0]


@pytest.mark.parametrize("name", ["cap.txt", "cap.gz"])
async def test_recorder_frames_written_in_the_replay_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / "sub" / name
    async with open_capture_recorder(path) as recorder:
        for ts, raw in FRAMES:
            assert recorder.record_nowait(ts, raw)
    assert recorder.written == 3 and recorder.dropped == 0
    assert _read(path) == [(ts, raw.replace(b"\n", b" ")) for ts, raw in FRAMES]
    if name.endswith(".gz"):
        assert gzip.decompress(path.read_bytes()).count(b"\n") == 3
    else:
        assert path.read_bytes().startswith(b"1723161254087896568 {")


async def test_recorder_reopened_file_appended_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cap.gz"
    for ts, raw in FRAMES:
        async with open_capture_recorder(path) as recorder:
            recorder.record_nowait(ts, raw)
    # three gzip members: read back as one stream
    assert [ts for ts, _ in _read(path)] == [ts for ts, _ in FRAMES]


async def test_recorder_queue_full_drops_newest_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "cap.txt"
    async with open_capture_recorder(path, queue_lines=2, flush_interval_s=60) as recorder:
        accepted = [recorder.record_nowait(ts, raw) for ts, raw in FRAMES]
    assert accepted == [True, True, False]
    assert (recorder.written, recorder.dropped) == (2, 1)
    assert [ts for ts, _ in _read(path)] == [ts for ts, _ in FRAMES[:2]]


async def test_recorder_flushes_while_running_gzip_readable_before_close(tmp_path: Path) -> None:
    path = tmp_path / "cap.gz"
    async with open_capture_recorder(path, flush_interval_s=0.01) as recorder:
        recorder.record_nowait(*FRAMES[0])
        recorder.record_nowait(*FRAMES[1])
        with trio.fail_after(10):
            await recorder.progress.wait_until(lambda: recorder.written == 2)
        # no gzip trailer yet, but everything flushed decompresses
        data = zlib.decompressobj(wbits=31).decompress(path.read_bytes())
        assert data.count(b"\n") == 2
        recorder.record_nowait(*FRAMES[2])
    assert len(_read(path)) == 3


async def test_recorder_cancelled_writes_pending_and_closes_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "cap.gz"
    with trio.CancelScope() as scope:
        async with open_capture_recorder(path, flush_interval_s=60) as recorder:
            for ts, raw in FRAMES:
                recorder.record_nowait(ts, raw)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert recorder.written == 3
    assert gzip.decompress(path.read_bytes()).count(b"\n") == 3  # trailer present


async def test_recorder_body_error_propagates_unwrapped_after_close(tmp_path: Path) -> None:
    path = tmp_path / "cap.txt"
    with pytest.raises(KeyError):
        async with open_capture_recorder(path) as recorder:
            recorder.record_nowait(*FRAMES[0])
            raise KeyError("boom")
    assert len(_read(path)) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_recorder_disk_full_logged_counted_never_raised() -> None:
    async with open_capture_recorder(Path("/dev/full"), flush_interval_s=0.01) as recorder:
        recorder.record_nowait(*FRAMES[0])
        with trio.fail_after(10):
            await recorder.progress.wait_until(lambda: recorder.failed is not None)
        assert recorder.record_nowait(*FRAMES[1]) is False
    assert isinstance(recorder.failed, OSError)
    assert recorder.written == 0 and recorder.dropped == 2


async def test_recorder_unopenable_path_raises_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot open for appending"):
        async with open_capture_recorder(blocker / "cap.txt"):
            pass


# --- the record command: no failure looks like success --------------------------------


def _closed_port_url() -> str:
    """A ws:// URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws"


def _record(tmp_path: Path, url: str, *extra: str) -> tuple[int, list[str], list[LogLine]]:
    out = tmp_path / "rec.txt"
    args = ["record", "--venue", "binance", "--symbols", "BTCUSDT", "--url", url,
            "--out", str(out), *extra]  # fmt: skip
    done = run_engine(args, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.returncode, done.stderr.splitlines(), parse_logs(done.stdout)


def test_record_unreachable_venue_with_duration_exits_network_10(tmp_path: Path) -> None:
    # The default budget (10 failures with backoff up to 30 s) outlasts the duration:
    # that used to end as "stopped as asked", exit 0, with an empty file.
    code, stderr, logs = _record(tmp_path, _closed_port_url(), "--duration", "1")
    assert code == 10
    assert len(stderr) == 1 and "no frame received" in stderr[0]
    [done] = [line for line in logs if line.get("event") == "record_finished"]
    assert (done["exit_code"], done["frames_received"]) == (10, 0)


def test_record_unreachable_venue_budget_spent_exits_network_10(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(
        "[ingest]\nmax_reconnect_failures = 2\ninitial_backoff_s = 0.01\nmax_backoff_s = 0.02\n"
    )
    code, stderr, logs = _record(tmp_path, _closed_port_url(), "--config", str(config))
    assert code == 10
    assert len(stderr) == 1 and "max_reconnect_failures" in stderr[0]
    assert [line["reason"] for line in logs if line.get("event") == "ws_give_up"]


async def test_record_venue_that_sends_nothing_with_duration_exits_network_10(
    tmp_path: Path,
) -> None:
    async with open_fake_exchange("binance", [Session(frames=0)]) as fake:
        code, stderr, _ = await trio.to_thread.run_sync(
            lambda: _record(tmp_path, fake.url, "--duration", "1")
        )
        assert fake.handshakes >= 1  # it reached the venue, and still recorded nothing
    assert code == 10
    assert len(stderr) == 1 and "no frame received" in stderr[0]


async def test_record_venue_that_sends_frames_with_duration_exits_0(tmp_path: Path) -> None:
    async with open_fake_exchange("binance", [Session(frames=5)]) as fake:
        code, stderr, logs = await trio.to_thread.run_sync(
            lambda: _record(tmp_path, fake.url, "--duration", "1")
        )
    assert code == 0, stderr
    [done] = [line for line in logs if line.get("event") == "record_finished"]
    assert done["frames_written"] == 5


async def test_recorder_stalled_disk_memory_bounded_in_bytes_drops_counted(
    tmp_path: Path, log_lines: Captured
) -> None:
    # A real stalled "disk": a FIFO nobody drains. The writer thread blocks in its
    # first write; 900 KB frames keep coming. What the recorder holds (pending plus
    # the batch stuck in the thread) stays within the byte bound; the rest is
    # dropped and counted, and offering a frame never waits.
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    bound = 4 * 1024 * 1024
    frame = b'{"pad":"' + b"x" * 900_000 + b'"}'
    reader_open = True
    try:
        async with open_capture_recorder(fifo, queue_bytes=bound, flush_interval_s=60) as rec:
            assert rec.record_nowait(1, frame) and rec.record_nowait(2, frame)  # > 1 MiB: wakes
            await trio.testing.wait_all_tasks_blocked()  # the writer is stuck in the thread
            assert rec.held_bytes > rec.pending  # the stuck batch still counts
            accepted = 2
            for ts in range(3, 203):
                accepted += rec.record_nowait(ts, frame)
                assert rec.held_bytes <= bound
            assert accepted == bound // (len(frame) + 3)  # + "<ts> " and "\n"
            assert rec.dropped == 202 - accepted
            os.close(reader)  # the disk dies: the stuck write fails, the close is bounded
            reader_open = False
    finally:
        if reader_open:
            os.close(reader)
    assert rec.failed is not None
    assert rec.written == 0 and rec.dropped == 202
    [overflow] = log_lines.events("record_overflow")
    assert overflow["queue_bytes"] == bound


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=5_000), max_size=200),
    queue_bytes=st.integers(min_value=1, max_value=50_000),
    queue_lines=st.integers(min_value=1, max_value=60),
)
def test_recorder_held_bytes_and_lines_never_pass_their_bounds_nothing_unaccounted(
    sizes: list[int], queue_bytes: int, queue_lines: int
) -> None:
    # No writer runs (a disk that never takes anything): whatever the frame sizes,
    # what is held stays within both bounds, and every frame is held or counted.
    recorder = CaptureRecorder(Path("unused"), queue_lines=queue_lines, queue_bytes=queue_bytes)
    held = 0
    for ts, size in enumerate(sizes):
        held += recorder.record_nowait(ts, b"x" * size)
        assert recorder.held_bytes <= queue_bytes
        assert recorder.held_lines <= queue_lines
    assert held == recorder.pending
    assert held + recorder.dropped == len(sizes)
    # it keeps admitting what fits: a frame is dropped only when it would pass a bound
    if recorder.dropped == 0:
        assert recorder.held_bytes == sum(len(f"{ts} ") + size + 1 for ts, size in enumerate(sizes))
