"""Which decoder serves which venue: the registry, filled here from the venue modules it
imports (no import circle with ``decoding``).
"""

from __future__ import annotations

from typing import Final

import msgspec

from engine.adapters.market import binance, coinbase
from engine.adapters.market.decoding import Decoder, MalformedMessage

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


register(binance.VENUE, binance.decode)
register(coinbase.VENUE, coinbase.decode_coinbase)
