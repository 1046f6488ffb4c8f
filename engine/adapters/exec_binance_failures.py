"""Venue failures as records: every failed exchange call is logged *and* persisted (L4).

A venue's "no" to an order is an order transition (``REJECTED`` with the
venue's code and message) and needs nothing new. Everything else that goes
wrong talking to the venue -- a timeout, a 5xx, a 429/418 rate limit, a
connection that dropped, a message that did not decode, a cancel the venue
refused -- is a ``VenueFailure`` record: what was attempted, for which order,
what happened, and when (local wall-clock ns: the failure is our own event,
there is no venue time for it).

Messages never hold credentials: they are built from status codes, venue error
bodies and exception *type* names, and pass through ``Credentials.redact``.
"""

from __future__ import annotations

import enum

from engine.core.events import Event, Record


class FailureKind(enum.StrEnum):
    TIMEOUT = "TIMEOUT"
    """No answer in time: the outcome of a state-changing call is unknown."""
    NETWORK = "NETWORK"
    """The connection failed or dropped."""
    RATE_LIMITED = "RATE_LIMITED"
    """HTTP 429: slow down (the request was not executed)."""
    BANNED = "BANNED"
    """HTTP 418: IP banned for repeated rate-limit violations."""
    SERVER_ERROR = "SERVER_ERROR"
    """HTTP 5xx: the venue's problem; the outcome is unknown."""
    VENUE_ERROR = "VENUE_ERROR"
    """A 4xx with a venue error code other than an order rejection."""
    BAD_RESPONSE = "BAD_RESPONSE"
    """A response or stream message that did not decode as expected."""
    INCONSISTENT = "INCONSISTENT"
    """A venue report that contradicts what we know (overfill, unknown order)."""
    FEE_UNPRICED = "FEE_UNPRICED"
    """A commission charged in an asset we cannot value (recorded as fee 0)."""
    GAVE_UP = "GAVE_UP"
    """Retries exhausted; the order was given up (see its DENIED transition)."""


class VenueFailure(Event, frozen=True, tag="venue_failure"):
    """One failed interaction with the venue (persist it: L4)."""

    failure_id: str
    order_id: str
    """Our order id, or ``""`` when the failure concerns no single order (the stream)."""
    operation: str
    """``new_order``, ``query_order``, ``cancel_order``, ``my_trades``, ``user_stream``, ..."""
    kind: FailureKind
    http_status: int
    """0 when there was no HTTP response."""
    code: int
    """The venue's error code, 0 when it gave none."""
    message: str
    attempt: int
    ts_event: int


LiveRecord = Record | VenueFailure
"""What the LIVE adapter hands to persistence: the usual records plus venue failures.
(``VenueFailure`` needs its own table before it can join ``engine.core.events.Record``.)"""


def failure_id_for(operation: str, order_id: str, ts_event: int, attempt: int) -> str:
    return f"vf:{operation}:{order_id or '-'}:{ts_event}:{attempt}"
