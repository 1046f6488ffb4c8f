"""JSON-lines logging on stdout (journald keeps one object per line), and human lines on stderr.

Wall-clock time appears here and only here (and in the ``runs``/``heartbeats``
tables): it is for operators, never an input to a decision.

Context and capture ride on ``contextvars``, not on module state, so they follow
trio's task tree (a task inherits both from the task that spawned it, and
``trio.to_thread.run_sync`` carries them into the worker thread):

* ``bind(**fields)`` adds fields to every line logged inside the block (the
  market feed binds its ``venue`` once instead of passing it to each call);
  a field given to the call itself wins, and keeps its place in the line.
* ``capture()`` collects the lines logged inside the block instead of writing
  them, exactly as they would have been written -- the one way tests read the log.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Final

import msgspec

SAMPLE_CHARS: Final = 200
"""Malformed input is logged truncated to this many characters."""

_encoder = msgspec.json.Encoder(decimal_format="string")

_bound: ContextVar[Mapping[str, Any]] = ContextVar("engine_log_bound", default=MappingProxyType({}))


class Captured:
    """The lines logged inside a ``capture()`` block, each as written and decoded.

    ``on_line`` is called with each decoded line as it arrives (a test waiting
    for an event wakes on it); ``keep=False`` drops the lines after that (a fuzz
    loop logging millions of them).
    """

    def __init__(
        self, on_line: Callable[[dict[str, Any]], None] | None = None, *, keep: bool = True
    ) -> None:
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._on_line = on_line
        self._keep = keep

    def take(self, line: str) -> None:
        if not self._keep and self._on_line is None:
            return
        decoded: dict[str, Any] = json.loads(line)
        if self._keep:
            self.raw.append(line)
            self.lines.append(decoded)
        if self._on_line is not None:
            self._on_line(decoded)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The lines whose ``event`` is ``name``, in order."""
        return [line for line in self.lines if line.get("event") == name]

    def has(self, event: str, **fields: object) -> bool:
        """Whether a line with this ``event`` and these field values was logged."""
        return any(all(line.get(k) == v for k, v in fields.items()) for line in self.events(event))

    def text(self) -> str:
        """The captured lines as stdout would have shown them."""
        return "".join(line + "\n" for line in self.raw)


_capture: ContextVar[Captured | None] = ContextVar("engine_log_capture", default=None)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every line logged inside the block (and in tasks it spawns)."""
    token = _bound.set(MappingProxyType({**_bound.get(), **fields}))
    try:
        yield
    finally:
        _bound.reset(token)


@contextmanager
def capture(
    on_line: Callable[[dict[str, Any]], None] | None = None, *, keep: bool = True
) -> Iterator[Captured]:
    """Collect the lines logged inside the block instead of writing them (tests)."""
    captured = Captured(on_line, keep=keep)
    token = _capture.set(captured)
    try:
        yield captured
    finally:
        _capture.reset(token)


def emit(level: str, event: str, **fields: Any) -> None:
    """Write one log object: ``{"ts": ..., "level": ..., "event": ..., **bound, **fields}``."""
    record: dict[str, Any] = {"ts": time.time(), "level": level, "event": event}
    for key, value in _bound.get().items():
        if key not in fields:
            record[key] = value
    record.update(fields)
    line = _encoder.encode(record).decode()
    captured = _capture.get()
    if captured is not None:
        captured.take(line)
        return
    out = sys.stdout
    out.write(line + "\n")
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
