"""Venue decoders: raw message bytes in, a ``Tick`` (or nothing) out.

Every market-data source -- capture replay, synthetic walk, exchange WebSocket --
turns a venue's raw message into a ``Tick`` through one function per venue, so
the same bytes always decode the same way whichever source carried them.

A decoder answers one of three things for a message:

* a ``Tick`` -- the message is a trade;
* ``None``   -- a well-formed message of another kind (book ticker, depth, a REST
  snapshot, a subscription ack ...), which the caller skips and counts;
* raises ``MalformedMessage`` -- input it cannot accept (bad JSON, wrong shape,
  invalid or non-positive decimal, a missing field), which the caller counts,
  samples into the log and then goes on (docs/contract.md L3, S5).

Venues register in ``DECODERS`` with ``register``; built-in venues register
themselves when their module is imported (see the bottom of this module).
"""

from __future__ import annotations

from typing import Protocol

from engine.core.events import Tick


class MalformedMessage(ValueError):
    """Raised by a venue decoder for input it cannot accept; ``.reason`` says why.

    ``refusal`` names the admission bound it broke (``"number"``, ``"symbol"``:
    ``engine.adapters.market.admission.Refusal``), ``""`` for any other malformation.
    """

    def __init__(self, reason: str, refusal: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal


class Decoder(Protocol):
    """``(raw message bytes, ts_recv ns) -> Tick | None``; raises ``MalformedMessage``."""

    def __call__(self, raw: bytes, ts_recv: int, /) -> Tick | None: ...














