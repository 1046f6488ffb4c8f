"""What a run is: mode, strategy, risk-config hash and the identity of its source.

``identify_run`` builds the ``RunIdentity`` the ``runs`` row records and the
continuation check (``engine.store.runs.continuation_refusal``) compares. For a
replay it reads each capture cheaply, whatever its size (docs/operations.md,
"One database, one account"):

* **size** from the file system;
* **head_tail_sha256**: sha256 over the file's first and last ``HASH_SPAN_BYTES``
  as stored (the whole file when smaller than both spans) -- two 1 MiB reads
  instead of hashing (or decompressing) 50M lines;
* **first_event_ns**: the event time of the first trade, decoded from the head
  with the replay's own decoders; at most ``FIRST_TRADE_SCAN_BLOCKS`` blocks of
  ~1 MiB are read, so a capture without trades costs a bounded read, not a
  full one.

A directory or glob counts as the files it stands for (``capture.expand_captures``),
each identified on its own.

*Error handling:* a capture that cannot be read for its identity raises
``ConfigError`` (exit 12), as the replay itself would; an unreadable or
corrupt head simply has no first trade (``None``).
"""

from __future__ import annotations

import gzip
import hashlib
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from engine.adapters.market.capture import (
    expand_captures,
    open_capture,
    read_capture_blocks,
    read_line_blocks,
    sniff_capture,
)
from engine.adapters.market.decoding import Decoder, MalformedMessage
from engine.adapters.market.history import history_format, is_history_format, row_decoder
from engine.adapters.market.venues import decoder_for, detect_venue
from engine.config.schema import Config, Source
from engine.config.strategies import params_of
from engine.exits import ConfigError
from engine.proof.evidence import risk_config_hash
from engine.store.runs import CaptureIdentity, RunIdentity

HASH_SPAN_BYTES: Final = 1 << 20
"""Bytes hashed at each end of a capture for its identity."""

FIRST_TRADE_SCAN_BLOCKS: Final = 16
"""Blocks (``capture.READ_BLOCK_BYTES``, ~1 MiB of lines each) searched for the first trade."""

def head_tail_sha256(path: Path, size: int, span: int = HASH_SPAN_BYTES) -> str:
    """sha256 over the first and last ``span`` bytes of the file (non-overlapping)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(span))
        if size > span:
            tail = min(span, size - span)
            f.seek(size - tail)
            digest.update(f.read(tail))
    return digest.hexdigest()


def first_trade_ns(path: Path, max_blocks: int = FIRST_TRADE_SCAN_BLOCKS) -> int | None:
    """Event time of the capture's first trade, if one is in its first ``max_blocks`` blocks."""
    decode: Decoder | None = None
    try:
        name = sniff_capture(path)
    except ConfigError:
        return None
    try:
        if is_history_format(name):
            rows = row_decoder(history_format(name), path)
            with open_capture(path) as stream:
                for n, lines in enumerate(read_line_blocks(stream)):
                    ticks = rows(lines)[0]
                    if ticks or n + 1 >= max_blocks:
                        return ticks[0].ts_event if ticks else None
            return None
        with open_capture(path) as stream:
            for n, block in enumerate(read_capture_blocks(stream)):
                if n >= max_blocks:
                    return None
                for ts, raw in zip(block.ts_recv, block.payloads, strict=True):
                    if ts < 0:
                        continue
                    try:
                        if decode is None:
                            decode = decoder_for(detect_venue(raw))
                        tick = decode(raw, ts)
                    except (MalformedMessage, KeyError, ValueError, RecursionError):
                        continue
                    if tick is not None:
                        return tick.ts_event
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error, zipfile.BadZipFile):
        return None
    return None


def identify_capture(path: Path) -> CaptureIdentity:
    try:
        size = path.stat().st_size
        sha = head_tail_sha256(path, size)
    except OSError as exc:
        raise ConfigError(f"capture {path}: cannot read: {exc.strerror or exc}") from None
    return CaptureIdentity(
        name=path.name, size=size, head_tail_sha256=sha, first_event_ns=first_trade_ns(path)
    )


def identify_run(config: Config, captures: Sequence[str] = ()) -> RunIdentity:
    """The identity of a run of ``config`` (replaying ``captures`` if given)."""
    ingest = config.ingest
    files: tuple[CaptureIdentity, ...] = ()
    source: dict[str, object] = {}
    if captures or ingest.source is Source.REPLAY:
        kind = "replay"
        files = tuple(identify_capture(p) for p in expand_captures(captures or ingest.captures))
    elif ingest.source is Source.SYNTHETIC:
        kind = "synthetic"
        source = {
            "seed": ingest.synthetic_seed,
            "symbols": list(ingest.synthetic_symbols),
            "rate_per_s": ingest.synthetic_rate_per_s,
            "start_price": str(ingest.synthetic_start_price),
            "max_ticks": ingest.synthetic_max_ticks,
        }
    else:
        from engine.adapters.market.ws.endpoints import feed_url

        kind = "websocket"
        source = {"venue": str(ingest.venue), "symbols": list(ingest.symbols),
                  "url": feed_url(ingest)}
    return RunIdentity(
        mode=str(config.engine.mode),
        strategy_kind=config.strategy.kind,
        strategy_params=params_of(config.strategy),
        risk_config_hash=risk_config_hash(config),
        source_kind=kind,
        source=source,
        captures=files,
    )
