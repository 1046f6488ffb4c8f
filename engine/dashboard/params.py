"""Query-string validation: every API parameter is parsed here or the request is a 400.

A parameter the endpoint does not know is an error too (a typo such as
``limt=5`` must not silently return the default). Messages name the parameter
and the accepted range; they never contain a stack trace.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Final

SYMBOL_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}$")
"""What a symbol may look like (venue symbols are short ASCII tokens)."""

REASON_RE: Final = re.compile(r"^[A-Z_]{1,32}$")
RUN_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

MAX_NS: Final = 2**63 - 1
"""Timestamps are int64 nanoseconds (SQLite INTEGER)."""


class BadRequest(ValueError):
    """Raised by the parsers below; the app answers 400 with ``str(exc)``."""


class Params:
    """The query parameters of one request, checked against what the endpoint accepts."""

    def __init__(self, query: Mapping[str, str], allowed: Collection[str]) -> None:
        unknown = sorted(set(query) - set(allowed))
        if unknown:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise BadRequest(f"unknown parameter(s): {', '.join(unknown)} (accepted: {accepted})")
        self._query = query

    def integer(self, name: str, default: int | None, lo: int, hi: int) -> int | None:
        raw = self._query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw, 10)
        except ValueError:
            raise BadRequest(f"{name} must be an integer, got {raw[:40]!r}") from None
        if not lo <= value <= hi:
            raise BadRequest(f"{name} must be between {lo} and {hi}, got {value}")
        return value

    def required_int(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self.integer(name, default, lo, hi)
        assert value is not None
        return value

    def pattern(self, name: str, regex: re.Pattern[str], what: str) -> str | None:
        raw = self._query.get(name)
        if raw is None or raw == "":
            return None
        if not regex.match(raw):
            raise BadRequest(f"{name} must be {what}, got {raw[:40]!r}")
        return raw

    def window(self) -> tuple[int | None, int | None]:
        """``from_ns``/``to_ns`` (event time, int ns), checked to be in order."""
        start = self.integer("from_ns", None, 0, MAX_NS)
        end = self.integer("to_ns", None, 0, MAX_NS)
        if start is not None and end is not None and start >= end:
            raise BadRequest(f"from_ns ({start}) must be before to_ns ({end})")
        return start, end
