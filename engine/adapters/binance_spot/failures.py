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


def failure_id_for(operation: str, order_id: str, ts_event: int, attempt: int) -> str:
    return f"vf:{operation}:{order_id or '-'}:{ts_event}:{attempt}"


