"""Capture replay: recorded market data as a ``MarketDataStream``.

Captures (raw messages, ``capture``) are replayed in the order given. History
files (trade dumps, ``history``) are replayed *merged in event-time order*
across files (days, symbols), through one ``Admission`` (so one symbol's days
dedup and price-band as one stream); ties keep the order the files were named
in, and a file is read in its own order. A replay names either captures or
history files, not both (exit 12).

For captures: Each file's venue is detected from its
first data message (``decoding.detect_venue``) and that venue's decoder turns
every data line into a ``Tick`` or skips it; the line format (ours or
cryptofeed's) and gzip are detected by ``capture``. Every tick then passes the
same admission as a live feed's (``engine.adapters.market.admission``: event time
judged against the capture's recorded receive time, trade ids, price band),
one ``Admission`` per file -- except the subscription check: a capture may hold
any symbols.

*Counters* (shared ``Counters``): ``ingest_received`` counts every data message
read (a line that should carry a message, malformed or not; blank lines and
cryptofeed ``wss://`` markers are not messages); ``skipped_messages`` the
well-formed messages that are not trades; ``parse_errors`` the malformed ones;
``ingest_processed`` the ticks handed to the channel, added when ``send`` returns,
so it always equals what downstream received; ``refused_*`` the ticks admission
refused (``refused_number`` and ``refused_symbol`` are also ``parse_errors``).
Once a file is done, ``ingest_received == ingest_processed + skipped_messages +
parse_errors + duplicates + refused_unsubscribed + refused_event_time +
refused_id_jump + refused_price_band`` (per this stream's own contributions).
``tick_count`` belongs to the strategy.

*Pacing:* ``speed == 0`` replays as fast as the pipeline takes it. ``speed > 0``
sends the tick recorded at ``ts_recv = r`` no earlier than
``start + (r - r0) / 1e9 / speed`` on ``trio.current_time()``, where ``r0`` is the
first tick of the file and ``start`` the moment it was decoded (so a capture that
opens with minutes of book updates does not delay its first trade; each file
re-anchors, so a gap between files is not waited out). Before each wait the
pending batch is sent, so no tick is held back longer than its own schedule.

*Cancellation* (the SIGINT drain cancels ingest): ticks whose ``send`` returned
were accepted and are counted in ``ingest_processed``; the partly built batch
that was not yet sent is dropped and was never counted -- it was not accepted.

*Resource handling:* the capture is read in the Trio thread, ~1 MiB per block
(``capture.READ_BLOCK_BYTES``): local disk reads plus gzip cost a few ms per block,
well under the time to decode it, and the loop checkpoints after every block
and every batch, so other tasks keep running. The send channel belongs to the
ingest task and is not closed here.

*Error handling:* a capture that cannot be opened, or whose venue cannot be
told or has no decoder, raises ``ConfigError`` (exit 12: the input is unusable,
a restart cannot help). A truncated or corrupt gzip stream ends that file with
one parse error logged; the replay goes on with the next file.
"""

from __future__ import annotations

import gzip
import heapq
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import trio

from engine import logs
from engine.adapters.market.admission import Admission, AdmissionSettings, Refusal, count_refusal
from engine.adapters.market.capture import (
    MALFORMED,
    open_capture,
    read_capture_blocks,
    read_line_blocks,
    sniffed_format,
    stored_position,
)
from engine.adapters.market.decoding import Decoder, MalformedMessage
from engine.adapters.market.history import history_format, is_history_format, row_decoder
from engine.adapters.market.venues import decoder_for, detect_venue
from engine.core.events import NS_PER_S, Tick
from engine.counters import Counters
from engine.exits import ConfigError
from engine.ports import TickBatch

REPLAY_BATCH_TICKS: Final = 1000
"""Ticks per channel message. Overload policy: a replay is lossless -- ``await
send(batch)`` waits while the tick channel is full (backpressure), nothing is
dropped. 1,000 amortises the ~5 us per channel operation to ~0.005 us per tick."""

MALFORMED_LOG_FIRST: Final = 10
MALFORMED_LOG_EVERY: Final = 1000
"""Bounded log: the first 10 malformed samples, then every 1,000th (all are counted)."""

VENUE_PROBE_MESSAGES: Final = 100
"""Data messages tried for venue detection before the file is declared unusable."""

HISTORY_BLOCK_BYTES: Final = 1 << 18
"""Bytes read per block of a history file. Merging keeps one decoded block of every
file named in memory at once (~1.3 MB of ticks per file at this size)."""


class ReplayStream:
    """Replays capture files into the tick channel (see the module docstring)."""

    def __init__(
        self,
        paths: Sequence[Path],
        counters: Counters,
        *,
        speed: float = 0.0,
        batch_size: int = REPLAY_BATCH_TICKS,
        admission: AdmissionSettings | None = None,
    ) -> None:
        if not speed >= 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._paths = tuple(paths)
        self._counters = counters
        self._speed = speed
        self._batch_size = batch_size
        self._admission = AdmissionSettings() if admission is None else admission
        if self._admission.subscribed is not None:
            raise ValueError("a replay admits any symbol: no subscription list")
        self._malformed = 0
        self._read: list[int] = []
        self._formats = [sniffed_format(path) for path in self._paths]
        for path, name in zip(self._paths, self._formats, strict=True):
            if name is not None and is_history_format(name):
                row_decoder(history_format(name), path)  # exit 12 now for a nameless dump

    async def stream(self, send: trio.MemorySendChannel[TickBatch]) -> None:
        """Replay every file, then return (the ingest task closes ``send``)."""
        self._read = [0] * len(self._paths)
        self._counters.replay_bytes_total = sum(_size(path) for path in self._paths)
        found = self._formats
        history = [name is not None and is_history_format(name) for name in found]
        if any(history):
            if not all(history):
                raise ConfigError(
                    "replay: name either captures or history files (trade dumps), not both"
                )
            await self._replay_history([name or "" for name in found], send)
            return
        for n, path in enumerate(self._paths):
            await self._replay_file(path, send, n)

    async def _replay_history(
        self, formats: list[str], send: trio.MemorySendChannel[TickBatch]
    ) -> None:
        """Every history file's ticks, merged by event time, admitted, in batches."""
        sources = [
            self._history_ticks(n, name) for n, name in enumerate(formats)
        ]
        merged: Iterator[Tick] = (
            sources[0] if len(sources) == 1 else heapq.merge(*sources, key=_event_time)
        )
        admit = Admission(self._counters, self._admission).admit
        batch_size = self._batch_size
        paced = self._speed > 0
        scale = 1.0 / (NS_PER_S * self._speed) if paced else 0.0
        start = 0.0
        r0 = -1
        batch: list[Tick] = []
        processed = 0
        for n, tick in enumerate(merged):
            if not admit(tick):
                if not n % batch_size:
                    await trio.lowlevel.checkpoint()
                continue
            if paced:
                if r0 < 0:
                    r0 = tick.ts_event
                    start = trio.current_time()
                deadline = start + (tick.ts_event - r0) * scale
                if deadline > trio.current_time():
                    if batch:
                        processed += await self._send(send, batch)
                        batch = []
                    await trio.sleep_until(deadline)
            batch.append(tick)
            if len(batch) >= batch_size:
                processed += await self._send(send, batch)
                batch = []
        if batch:
            processed += await self._send(send, batch)
        logs.info("replay_history_finished", files=len(self._paths), ticks=processed)

    def _history_ticks(self, n: int, name: str) -> Iterator[Tick]:
        """The decoded (not yet admitted) ticks of one history file, in its order.

        Counts every data row in ``ingest_received`` and every malformed one in
        ``parse_errors`` (sampled into the log) as it reads them.
        """
        path = self._paths[n]
        decode = row_decoder(history_format(name), path)
        counters = self._counters
        try:
            stream = open_capture(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"capture {path}: cannot open: {exc}") from None
        logs.info("replay_file_started", path=str(path), format=name, speed=self._speed)
        line_no = 1
        try:
            with stream:
                for lines in read_line_blocks(stream, HISTORY_BLOCK_BYTES):
                    ticks, bad, rows = decode(lines)
                    counters.ingest_received += rows
                    if bad:
                        counters.parse_errors += len(bad)
                        for row in bad:
                            if row.refusal:
                                count_refusal(counters, Refusal(row.refusal))
                            self._log_malformed(
                                path, line_no + row.at, row.reason, lines[row.at]
                            )
                    line_no += len(lines)
                    self._progress(n, stored_position(stream))
                    yield from ticks
        except (EOFError, gzip.BadGzipFile, zipfile.BadZipFile, zlib.error) as exc:
            counters.parse_errors += 1
            self._log_malformed(path, 0, f"capture stream ends badly: {exc}", b"")
        self._progress(n, _size(path))
        logs.info("replay_file_finished", path=str(path), format=name, rows=line_no - 1)

    async def _replay_file(
        self, path: Path, send: trio.MemorySendChannel[TickBatch], n: int = 0
    ) -> None:
        try:
            stream = open_capture(path)
        except OSError as exc:
            raise ConfigError(f"capture {path}: cannot open: {exc}") from None
        counters = self._counters
        batch_size = self._batch_size
        paced = self._speed > 0
        scale = 1.0 / (NS_PER_S * self._speed) if paced else 0.0
        start = now = 0.0
        r0 = -1
        decode: Decoder | None = None
        venue = ""
        probes = 0
        batch: list[Tick] = []
        # A trade seen before in this file (a live recording holds what a reconnect
        # resent) is dropped as the live feed dropped it, and so is everything else
        # the live feed's admission refused, so the replay decides alike. Per file:
        # files may be given in any order.
        admit = Admission(counters, self._admission).admit
        # Local tallies, pushed into the shared counters before every send and
        # at the end (attribute increments per line would cost ~10% of decode).
        received = skipped = 0
        processed = errors = 0
        logs.info("replay_file_started", path=str(path), speed=self._speed)
        try:
            with stream:
                for block in read_capture_blocks(stream):
                    first_line_no = block.first_line_no
                    payloads = block.payloads
                    for i, ts in enumerate(block.ts_recv):
                        if ts < 0:
                            if ts == MALFORMED:
                                received += 1
                                errors += 1
                                self._log_malformed(
                                    path, first_line_no + i, "no timestamp", payloads[i]
                                )
                            continue
                        received += 1
                        raw = payloads[i]
                        if decode is None:
                            try:
                                venue = detect_venue(raw)
                            except MalformedMessage as exc:
                                probes += 1
                                errors += 1
                                self._log_malformed(path, first_line_no + i, exc.reason, raw)
                                if probes >= VENUE_PROBE_MESSAGES:
                                    raise ConfigError(
                                        f"capture {path}: no venue detected in its first "
                                        f"{probes} data messages"
                                    ) from None
                                continue
                            try:
                                decode = decoder_for(venue)
                            except KeyError as exc:
                                raise ConfigError(f"capture {path}: {exc.args[0]}") from None
                            logs.info("replay_venue_detected", path=str(path), venue=venue)
                        try:
                            tick = decode(raw, ts)
                        except MalformedMessage as exc:
                            errors += 1
                            if exc.refusal:
                                count_refusal(counters, Refusal(exc.refusal))
                            self._log_malformed(path, first_line_no + i, exc.reason, raw)
                            continue
                        except (ValueError, RecursionError) as exc:
                            # A decoder should say MalformedMessage; one bad line must
                            # still never stop the replay (docs/contract.md L3), whatever it raised.
                            errors += 1
                            reason = f"{type(exc).__name__}: {exc}"
                            self._log_malformed(path, first_line_no + i, reason, raw)
                            continue
                        if tick is None:
                            skipped += 1
                            continue
                        if not admit(tick):
                            continue
                        if paced:
                            if r0 < 0:
                                r0 = ts
                                start = now = trio.current_time()
                            deadline = start + (ts - r0) * scale
                            if deadline > now:
                                now = trio.current_time()
                                if deadline > now:
                                    if batch:
                                        self._tally(received, skipped, errors)
                                        received = skipped = errors = 0
                                        processed += await self._send(send, batch)
                                        batch = []
                                    await trio.sleep_until(deadline)
                                    now = deadline
                        batch.append(tick)
                        if len(batch) >= batch_size:
                            self._tally(received, skipped, errors)
                            received = skipped = errors = 0
                            processed += await self._send(send, batch)
                            batch = []
                    self._progress(n, stored_position(stream))
                    # A block of non-trades sends nothing: still let other tasks run.
                    await trio.lowlevel.checkpoint()
        except (EOFError, gzip.BadGzipFile) as exc:
            errors += 1
            self._log_malformed(path, 0, f"capture stream ends badly: {exc}", b"")
        finally:
            self._tally(received, skipped, errors)
        self._progress(n, _size(path))  # read to its end (or as far as it was readable)
        if batch:
            processed += await self._send(send, batch)
        logs.info("replay_file_finished", path=str(path), venue=venue, ticks=processed)

    async def _send(self, send: trio.MemorySendChannel[TickBatch], batch: TickBatch) -> int:
        """Hand a batch downstream; only once ``send`` returned is it accepted and counted."""
        await send.send(batch)
        self._counters.ingest_processed += len(batch)
        return len(batch)

    def _progress(self, n: int, position: int) -> None:
        """File ``n`` has been read up to ``position`` (as stored): update the counter."""
        read = self._read
        self._counters.replay_bytes_read += position - read[n]
        read[n] = position

    def _tally(self, received: int, skipped: int, errors: int) -> None:
        c = self._counters
        c.ingest_received += received
        c.skipped_messages += skipped
        c.parse_errors += errors

    def _log_malformed(self, path: Path, line: int, reason: str, raw: bytes) -> None:
        self._malformed += 1
        n = self._malformed
        if n <= MALFORMED_LOG_FIRST or n % MALFORMED_LOG_EVERY == 0:
            logs.warning(
                "malformed_message",
                reason=reason,
                sample=logs.sample(raw),
                line=line,
                path=str(path),
                malformed_total=n,
            )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # _replay_file names the file when it cannot open it


def _event_time(tick: Tick) -> int:
    return tick.ts_event
