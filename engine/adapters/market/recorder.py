"""Recording raw frames to a capture file that ``replay`` reads back.

Every frame received is written as one line ``<ts_recv_ns> <raw frame>``
(``engine.adapters.market.capture.format_capture_line``), plain or gzip (by the file
name ending in ``.gz``). Malformed frames are recorded too: a replay of the file
must meet the same input the live run met.

*Never blocks the socket reader:* ``record_nowait`` only appends the formatted
line to an in-memory list; a writer task hands the list to a worker thread in
batches (file and gzip I/O never run on the Trio thread). What the recorder
holds -- the pending lines *and* the batch the worker thread is writing -- is
bounded in bytes by ``RECORD_QUEUE_BYTES`` (and in lines by
``RECORD_QUEUE_LINES``, for the per-line overhead of tiny frames); a frame that
would pass either bound is dropped and counted (``dropped``, logged once per
overflow episode as ``record_overflow``) -- the same policy as the live tick
queue: the recording loses frames rather than the feed stalling behind a slow
disk, and a stalled disk costs at most ``RECORD_QUEUE_BYTES`` of memory however
large the frames (up to ``max_message_size`` each).

*Durability:* the writer flushes at least every ``RECORD_FLUSH_INTERVAL_S``
(gzip: a sync flush, so everything flushed is readable even if the process is
killed later). On close -- normal end, cancellation by SIGINT, or failure --
pending lines are written and the file is closed (the gzip trailer written) in
a shielded scope bounded by ``RECORD_CLOSE_TIMEOUT_S``.

Files are opened for *append*: a restarted service (systemd) adds to the
recording instead of destroying it; a gzip file then holds several members,
which gzip readers (and ``replay``) read as one stream.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import trio

from engine import logs
from engine.adapters.market.capture import format_capture_line
from engine.adapters.progress import Progress
from engine.exits import ConfigError

RECORD_QUEUE_BYTES: Final = 32 * 1024 * 1024
"""Bytes of capture lines held (pending + being written). Overload policy: drop the
newest frame, count ``dropped``. 32 MiB: ~6 s of a 20k trades/s Binance burst, or
32 frames at the default 1 MiB ``max_message_size``."""

RECORD_QUEUE_LINES: Final = 100_000
"""Lines held, whatever their size (a bound on the per-object overhead). Same policy."""

RECORD_WRITE_BATCH_LINES: Final = 2_000
"""A batch this large wakes the writer before its interval is up."""

RECORD_WRITE_BATCH_BYTES: Final = 1024 * 1024
"""So does a batch of this many bytes."""

RECORD_FLUSH_INTERVAL_S: Final = 1.0
"""The writer writes and flushes at least this often while frames arrive."""

RECORD_CLOSE_TIMEOUT_S: Final = 5.0
"""How long closing may take to write what is pending (shielded from cancellation)."""

GZIP_LEVEL: Final = 6
"""Compression of ``.gz`` recordings: ~5x on exchange JSON at a few MB/s per core."""


class CaptureSink:
    """The blocking side: an append-mode capture file. Runs in a worker thread only."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Kept open across many writes, closed by ``close``: no ``with`` here.
        self._file: io.BufferedIOBase
        if path.name.endswith(".gz"):
            self._file = gzip.GzipFile(path, "ab", compresslevel=GZIP_LEVEL)
        else:
            self._file = path.open("ab")

    def write_lines(self, lines: list[bytes], flush: bool) -> None:
        self._file.write(b"".join(lines))
        if flush:
            self._file.flush()

    def close(self) -> None:
        self._file.close()


class CaptureRecorder:
    """The Trio side: accepts frames without ever waiting; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        queue_lines: int = RECORD_QUEUE_LINES,
        queue_bytes: int = RECORD_QUEUE_BYTES,
        flush_interval_s: float = RECORD_FLUSH_INTERVAL_S,
    ) -> None:
        self.path = path
        self.queue_lines = queue_lines
        self.flush_interval_s = flush_interval_s
        self.queue_bytes = queue_bytes
        self.written = 0
        self.dropped = 0
        self.failed: BaseException | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._writing_lines = 0  # the batch in the worker thread, still in memory
        self._writing_bytes = 0
        self._overflowing = False
        self._wakeup = trio.Event()
        self._sink: CaptureSink | None = None
        self._limiter = trio.CapacityLimiter(1)
        self.progress = Progress()

    def record_nowait(self, ts_recv_ns: int, raw: bytes) -> bool:
        """Queue one frame for the file; ``False`` if it was dropped (full or failed)."""
        if self.failed is not None:
            self.dropped += 1
            return False
        line = format_capture_line(ts_recv_ns, raw)
        if (
            self.held_lines >= self.queue_lines
            or self.held_bytes + len(line) > self.queue_bytes
        ):
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                logs.warning(
                    "record_overflow",
                    path=str(self.path),
                    held_bytes=self.held_bytes,
                    held_lines=self.held_lines,
                    queue_bytes=self.queue_bytes,
                    dropped=self.dropped,
                )
            return False
        self._overflowing = False
        self._pending.append(line)
        self._pending_bytes += len(line)
        if (
            len(self._pending) >= RECORD_WRITE_BATCH_LINES
            or self._pending_bytes >= RECORD_WRITE_BATCH_BYTES
        ):
            self._wakeup.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def held_lines(self) -> int:
        """Lines in memory: pending plus the batch being written."""
        return len(self._pending) + self._writing_lines

    @property
    def held_bytes(self) -> int:
        """Bytes in memory: pending plus the batch being written (bounded by ``queue_bytes``)."""
        return self._pending_bytes + self._writing_bytes

    async def _open(self) -> None:
        self._sink = await trio.to_thread.run_sync(CaptureSink, self.path, limiter=self._limiter)

    async def _write_pending(self, flush: bool) -> None:
        lines, self._pending = self._pending, []
        size, self._pending_bytes = self._pending_bytes, 0
        sink = self._sink
        if self.failed is not None:  # queued while the failing write ran: counted, not lost
            self.dropped += len(lines)
            return
        if sink is None or not (lines or flush):
            return
        self._writing_lines, self._writing_bytes = len(lines), size
        try:
            await trio.to_thread.run_sync(sink.write_lines, lines, flush, limiter=self._limiter)
        except OSError as exc:
            self.failed = exc
            self.dropped += len(lines)
            logs.error("record_write_failed", path=str(self.path), error=repr(exc))
        else:
            self.written += len(lines)
        finally:
            self._writing_lines = self._writing_bytes = 0
        self.progress.bump()

    async def run_writer(self) -> None:
        """Write batches until cancelled (closing is ``close``'s job)."""
        while True:
            with trio.move_on_after(self.flush_interval_s):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            await self._write_pending(flush=True)

    async def close(self) -> None:
        """Write what is pending and close the file; shielded, time-bounded."""
        with trio.CancelScope(shield=True), trio.move_on_after(RECORD_CLOSE_TIMEOUT_S) as scope:
            await self._write_pending(flush=True)
            if self._sink is not None:
                sink, self._sink = self._sink, None
                try:
                    await trio.to_thread.run_sync(sink.close, limiter=self._limiter)
                except OSError as exc:
                    self.failed = self.failed or exc
                    logs.error("record_close_failed", path=str(self.path), error=repr(exc))
        if scope.cancelled_caught:
            logs.error(
                "record_close_timeout", path=str(self.path), timeout_s=RECORD_CLOSE_TIMEOUT_S
            )
        logs.info(
            "record_closed",
            path=str(self.path),
            written=self.written,
            dropped=self.dropped + len(self._pending),
            failed=self.failed is not None,
        )


@asynccontextmanager
async def open_capture_recorder(
    path: str | Path,
    *,
    queue_lines: int = RECORD_QUEUE_LINES,
    queue_bytes: int = RECORD_QUEUE_BYTES,
    flush_interval_s: float = RECORD_FLUSH_INTERVAL_S,
) -> AsyncIterator[CaptureRecorder]:
    """Open ``path`` for appending and run its writer for the duration of the block.

    *Resource handling:* the file is closed (pending frames written first) when
    the block exits, however it exits.
    *Error handling:* ``ConfigError`` (exit 12) if the file cannot be opened
    (a missing permission, a parent that is a file, ...); later write
    errors are logged and kept in ``recorder.failed`` (frames then count as
    dropped) so a full disk never takes the feed down with it.
    """
    recorder = CaptureRecorder(
        Path(path), queue_lines=queue_lines, queue_bytes=queue_bytes,
        flush_interval_s=flush_interval_s,
    )
    try:
        await recorder._open()
    except OSError as exc:  # a path we cannot write is configuration no restart can fix
        raise ConfigError(
            f"record path {recorder.path}: cannot open for appending ({exc.strerror or exc})"
        ) from None
    logs.info("record_opened", path=str(recorder.path))
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(recorder.run_writer)
            try:
                yield recorder
            except BaseException as exc:  # re-raised below, not wrapped in the nursery's group
                body_error = exc
            nursery.cancel_scope.cancel()
        if body_error is not None:
            raise body_error
    finally:
        await recorder.close()
