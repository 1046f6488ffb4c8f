"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine import logs
from tests.fake_exchange import LogLines


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """The engine's JSON log lines, captured in memory for the test."""
    sink = LogLines()
    logs.set_stream(sink)
    yield sink
    logs.set_stream(None)
