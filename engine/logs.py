"""JSON-lines logging on stdout (journald keeps one object per line), and human lines on stderr.

Wall-clock time appears here and only here (and in the ``runs``/``heartbeats``
tables): it is for operators, never an input to a decision.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Final, TextIO

import msgspec

SAMPLE_CHARS: Final = 200
"""Malformed input is logged truncated to this many characters."""

_encoder = msgspec.json.Encoder(decimal_format="string")


class _Sink:
    """Where log lines go: ``None`` means whatever ``sys.stdout`` is at the time."""

    stream: TextIO | None = None


def set_stream(stream: TextIO | None) -> None:
    """Redirect log lines (tests); ``None`` means the current ``sys.stdout``."""
    _Sink.stream = stream


def emit(level: str, event: str, **fields: Any) -> None:
    """Write one log object: ``{"ts": ..., "level": ..., "event": ..., **fields}``."""
    record = {"ts": time.time(), "level": level, "event": event, **fields}
    out = _Sink.stream if _Sink.stream is not None else sys.stdout
    out.write(_encoder.encode(record).decode() + "\n")
    out.flush()


def info(event: str, **fields: Any) -> None:
    emit("info", event, **fields)


def warning(event: str, **fields: Any) -> None:
    emit("warning", event, **fields)


def error(event: str, **fields: Any) -> None:
    emit("error", event, **fields)


def human(line: str) -> None:
    """One line for the person at the terminal, on stderr (``engine.runtime.console``
    writes them)."""
    print(line, file=sys.stderr, flush=True)


def sample(data: bytes | str, limit: int = SAMPLE_CHARS) -> str:
    """A printable, truncated sample of bad input for a log line."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit} chars)"
