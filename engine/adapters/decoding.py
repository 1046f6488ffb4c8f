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

from typing import Final, Protocol

import msgspec

from engine.core.events import Tick


class MalformedMessage(ValueError):
    """Raised by a venue decoder for input it cannot accept; ``.reason`` says why.

    ``refusal`` names the admission bound it broke (``"number"``, ``"symbol"``:
    ``engine.adapters.admission.Refusal``), ``""`` for any other malformation.
    """

    def __init__(self, reason: str, refusal: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal


class Decoder(Protocol):
    """``(raw message bytes, ts_recv ns) -> Tick | None``; raises ``MalformedMessage``."""

    def __call__(self, raw: bytes, ts_recv: int, /) -> Tick | None: ...


DECODERS: dict[str, Decoder] = {}
"""Venue name -> its decoder. Additive: a new venue is one ``register`` call."""


def register(venue: str, decoder: Decoder) -> None:
    """Make ``decoder`` the decoder of ``venue`` (a later call for the same venue wins)."""
    DECODERS[venue] = decoder


def decoder_for(venue: str) -> Decoder:
    """The registered decoder of ``venue``; ``KeyError`` naming the known venues if none."""
    try:
        return DECODERS[venue]
    except KeyError:
        known = ", ".join(sorted(DECODERS)) or "none"
        raise KeyError(f"no decoder registered for venue {venue!r} (known: {known})") from None


class _Probe(msgspec.Struct, gc=False):
    """The keys that tell venues apart; everything else in the message is skipped."""

    stream: str | None = None  # Binance combined-stream envelope
    e: str | None = None  # Binance bare event
    lastUpdateId: int | None = None  # Binance REST depth snapshot
    result: msgspec.Raw = msgspec.Raw()  # Binance subscription ack {"result":null,"id":1}
    id: int | None = None
    type: str | None = None  # Coinbase ws-feed: every message has "type"


_probe_decoder: Final = msgspec.json.Decoder(_Probe)


def detect_venue(first_json_payload: bytes) -> str:
    """Name the venue whose message ``first_json_payload`` is, from its keys alone.

    Used once per capture file (on its first data message) to choose the decoder.

    *Error handling:* raises ``MalformedMessage`` when the payload is not a JSON
    object or carries no key that identifies a known venue.
    """
    try:
        probe = _probe_decoder.decode(first_json_payload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8, deep
        raise MalformedMessage(f"cannot detect venue: {exc}") from None
    if probe.stream is not None or probe.e is not None or probe.lastUpdateId is not None:
        return "binance"
    if len(probe.result) and probe.id is not None:
        return "binance"
    if probe.type is not None:
        return "coinbase"
    raise MalformedMessage("cannot detect venue: no key of a known venue in the message")


# Built-in venues register themselves on import. Imported last because they
# import ``MalformedMessage`` and ``register`` from this module.
import engine.adapters.binance  # noqa: E402, F401
from engine.adapters import coinbase as _coinbase  # noqa: E402, F401
