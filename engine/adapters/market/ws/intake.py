"""Input quality of the WebSocket source: decode each frame, count the bad, admit the rest.

Malformed frames (and frames above ``max_message_size``, which the library
answers by closing with 1009) are counted, sampled into the log and skipped;
above ``max_parse_errors_per_min`` ingest stops with ``ParseRateExceeded``
(exit 11, ``engine.adapters.market.ws.parse_budget``). Every decoded trade then passes
``engine.adapters.market.admission.Admission`` -- the path replay and the synthetic
walk use too: only subscribed symbols, a plausible event time, a trade id new
and within the dedup window (duplicates -- e.g. resent after a reconnect --
dropped and counted, gaps counted per symbol and logged), a price within the
band; each refusal counted by reason and sampled into the log.
Frames that are not trades (subscription acks, heartbeats) are counted as
skipped. A Coinbase ``error`` frame raises ``VenueErrorFrame``, marked when its
words refuse what we configured (an unknown product id); the stream decides
(``engine.adapters.market.ws.stream``): a refusal *in answer to the subscribe* is exit 12
(no restart -- reconnecting cannot fix it), anything else ends the session and
the reconnect loop retries under its budget (exit 10 if it persists).

It runs inside the reader, once per frame, so it never waits.
"""

from __future__ import annotations

from engine import logs
from engine.adapters.market import coinbase
from engine.adapters.market.admission import Admission, AdmissionSettings, Refusal, count_refusal
from engine.adapters.market.decoding import Decoder, MalformedMessage
from engine.adapters.market.dedup import TradeDedup
from engine.adapters.market.venues import decoder_for
from engine.adapters.market.ws.parse_budget import ParseBudget
from engine.config.schema import IngestSection, Venue
from engine.core.events import Tick
from engine.counters import Counters


class VenueErrorFrame(Exception):
    """The venue sent an ``error`` message (raised by ``FrameIntake``; the session ends).

    ``refuses_config``: its words refuse what we configured (``coinbase.is_config_refusal``).
    """

    def __init__(self, text: str, *, refuses_config: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.refuses_config = refuses_config


class FrameIntake:
    """Frame -> new ``Tick`` or nothing, with the counters and logs that go with it."""

    def __init__(self, section: IngestSection, counters: Counters, dedup: TradeDedup) -> None:
        self._section = section
        self._counters = counters
        self._decoder: Decoder = decoder_for(section.venue.value)
        self._admission = Admission(
            counters,
            AdmissionSettings.from_section(section, live=True),
            dedup=dedup,
            log_gaps=True,
        )
        self._parse_budget = ParseBudget(section.max_parse_errors_per_min)

    def accept(self, raw: bytes, ts_recv: int, now: float) -> Tick | None:
        """The frame's trade if it is one and new; ``None`` for anything else.

        *Error handling:* ``ParseRateExceeded`` once bad frames pass the budget;
        ``VenueErrorFrame`` for a venue ``error`` frame.
        """
        try:
            tick = self._decoder(raw, ts_recv)
        except MalformedMessage as exc:
            if exc.refusal:
                count_refusal(self._counters, Refusal(exc.refusal))
            self.reject(exc.reason, raw, now)
            return None
        except (ValueError, RecursionError) as exc:  # a decoder let it through: still bad input
            self.reject(f"{type(exc).__name__}: {exc}", raw, now)
            return None
        if tick is None:
            self._counters.skipped_messages += 1
            if self._section.venue is Venue.COINBASE:
                self._check_venue_error(raw)
            return None
        return tick if self._admission.admit(tick) else None

    def screen(self, raw: bytes) -> None:
        """Record-only mode (nothing decoded): still act on a venue ``error`` frame.

        *Error handling:* as ``accept`` for a venue ``error`` frame; anything
        else passes unexamined.
        """
        if self._section.venue is Venue.COINBASE and b'"error"' in raw:
            self._check_venue_error(raw)

    def reject(self, reason: str, raw: bytes, now: float) -> None:
        """Count, log and budget one bad frame (``raw`` is sampled into the log)."""
        self._counters.parse_errors += 1
        sample = logs.sample(raw)
        logs.warning(
            "malformed_message",
            venue=self._section.venue.value,
            reason=reason,
            sample=sample,
            parse_errors=self._counters.parse_errors,
        )
        self._parse_budget.record(now, sample)

    def _check_venue_error(self, raw: bytes) -> None:
        error = coinbase.decode_coinbase_error(raw)
        if error is not None:
            raise VenueErrorFrame(error, refuses_config=coinbase.is_config_refusal(error))
