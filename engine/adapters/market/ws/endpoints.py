"""Where the WebSocket source connects and what it says first, per venue.

Binance names the trade streams in the URL (combined-stream path, no message
needed); Coinbase takes one URL and a ``subscribe`` message after connecting
(S2). Everything venue-specific about *connecting* is here; decoding frames is
the venue modules' (``engine.adapters.market.binance``, ``engine.adapters.market.coinbase``).
"""

from __future__ import annotations

from typing import Final

from engine.adapters.market import coinbase
from engine.config.schema import IngestSection, Venue

BINANCE_DEFAULT_URL: Final = "wss://stream.binance.com:9443"
"""Base URL; the engine appends ``/stream?streams=<sym>@trade/...``."""


def feed_url(section: IngestSection) -> str:
    """The URL to connect to for the configured venue and symbols."""
    if section.venue is Venue.BINANCE:
        base = (section.url or BINANCE_DEFAULT_URL).rstrip("/")
        streams = "/".join(f"{symbol.lower()}@trade" for symbol in section.symbols)
        return f"{base}/stream?streams={streams}"
    return section.url or coinbase.DEFAULT_URL


def subscribe_frame(section: IngestSection) -> str | None:
    """The message to send after connecting, if the venue needs one (S2)."""
    if section.venue is Venue.COINBASE:
        return coinbase.subscribe_message(section.symbols)
    return None
