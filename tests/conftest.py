"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine import logs


@pytest.fixture
def log_lines() -> Iterator[logs.Captured]:
    """The engine's JSON log lines, captured in memory for the test (``logs.capture``)."""
    with logs.capture() as captured:
        yield captured
