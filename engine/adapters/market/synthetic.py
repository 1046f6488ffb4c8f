"""Synthetic market data: a seeded random walk of Binance-shaped trades.

For soak runs, demos and benchmarks. Every trade is built as the raw Binance
combined-stream JSON a real connection would deliver, decoded through
``binance.decode`` and admitted by ``engine.adapters.market.admission`` (its symbols are
the subscribed ones), so the synthetic path exercises the real intake. A refused
trade is counted (``parse_errors`` / ``refused_*``) and sampled, never sent.

The walk (``random.Random(seed)``, allowed here in the shell, never in the core):
prices move on a 0.01 grid by a symmetric step of at most 7 ticks, floored at
0.01; quantities lie on a 0.00001 grid in (0, 1]; the exchange time trails the
receive time by a seeded latency of 1-32 ms; trade ids increase by one per
symbol. One ``getrandbits`` call per trade feeds all of it, which keeps
``write_synthetic_capture`` at about a microsecond per trade.

``SyntheticStream`` paces itself on ``trio.current_time()`` (the ``i``-th trade
is due at ``start + i / rate_per_s``) and stamps ``ts_recv`` from ``clock()``
(default ``time.time_ns``), so a test with the mock clock and an injected
``clock`` gets exactly the same ticks for the same seed.
"""

from __future__ import annotations

import gzip as gzip_module
import io
import random
import re
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Final

import trio

from engine import logs
from engine.adapters.market import binance
from engine.adapters.market.admission import Admission, AdmissionSettings, Refusal, count_refusal
from engine.adapters.market.capture import format_capture_line
from engine.adapters.market.decoding import MalformedMessage
from engine.core.events import NS_PER_MS, Tick
from engine.counters import Counters
from engine.exits import ConfigError
from engine.ports import TickBatch

SYNTHETIC_BATCH_TICKS: Final = 1000
"""Most ticks per channel message when the walk runs behind its schedule (high rates).
Overload policy (a live-like source, docs/contract.md S6): a full tick channel drops the
newest batch and counts ``bp_drops_tick``; with ``lossless=True`` ``send`` waits
instead (backpressure, nothing dropped)."""

DEFAULT_START_PRICE: Final = Decimal("60000")
CAPTURE_START_NS: Final = 1_723_161_600_000_000_000
"""Default first ``ts_recv`` of a written capture: 2024-08-09T00:00:00Z (fixed: deterministic)."""
CAPTURE_RATE_PER_S: Final = 50.0
"""Default mean trade rate of a written capture (the real BTCUSDT file has ~28/s)."""
CAPTURE_WRITE_LINES: Final = 10_000
"""Lines joined per write: bounds the writer's memory to ~2 MB."""
CAPTURE_GZIP_LEVEL: Final = 1
"""Fast compression: a million-trade capture is written in seconds, not a minute."""

_QTY_UNITS: Final = 100_000  # 1 qty = 100,000 units of 0.00001
SYMBOL_RE: Final = re.compile(r"[A-Za-z0-9]{1,32}")
"""What a synthetic symbol may be: it is written into Binance-shaped JSON and a
stream name verbatim, so anything else would make every generated trade malformed."""


class InvalidSyntheticSettings(ConfigError, ValueError):
    """A synthetic-source setting no run can use: exit 12 from the engine (no restart
    can fix it), and still a ``ValueError`` for direct callers."""


_RANDOM_BITS: Final = 37  # 8 symbol + 6 step + 17 qty + 5 latency + 1 maker


class _Walk:
    """The random walk's state: per-symbol price (in cents) and next trade id."""

    def __init__(
        self,
        rng: random.Random,
        symbols: Sequence[str],
        start_price: Decimal,
        first_trade_id: int,
    ) -> None:
        if not symbols:
            raise InvalidSyntheticSettings(
                "ingest.synthetic_symbols: at least one symbol is required"
            )
        bad = [s for s in symbols if not SYMBOL_RE.fullmatch(s)]
        if bad:
            raise InvalidSyntheticSettings(
                f"ingest.synthetic_symbols: {bad[0]!r} is not a symbol (letters and digits, 1-32)"
            )
        if not start_price >= Decimal("0.01"):
            raise InvalidSyntheticSettings(f"start_price must be >= 0.01, got {start_price}")
        if first_trade_id < 0:
            raise InvalidSyntheticSettings(f"first_trade_id must be >= 0, got {first_trade_id}")
        self._bits = rng.getrandbits
        self._symbols = [s.upper().encode() for s in symbols]
        self._streams = [s.lower().encode() + b"@trade" for s in symbols]
        self._cents = [int(start_price * 100)] * len(symbols)
        self._next_id = [first_trade_id] * len(symbols)

    def next_trade(self, ts_recv: int) -> bytes:
        """The raw combined-stream JSON of the next trade, received at ``ts_recv``."""
        r = self._bits(_RANDOM_BITS)
        i = (r & 0xFF) % len(self._symbols)
        cents = self._cents[i] + ((r >> 8) & 7) - ((r >> 11) & 7)
        cents = max(cents, 1)
        self._cents[i] = cents
        units = ((r >> 14) & 0x1FFFF) % _QTY_UNITS + 1
        t_ms = max(0, ts_recv // NS_PER_MS - 1 - ((r >> 31) & 31))
        trade_id = self._next_id[i]
        self._next_id[i] = trade_id + 1
        return (
            b'{"stream":"%s","data":{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%d.%02d",'
            b'"q":"%d.%05d","T":%d,"m":%s,"M":true}}'
            % (
                self._streams[i],
                t_ms,
                self._symbols[i],
                trade_id,
                cents // 100,
                cents % 100,
                units // _QTY_UNITS,
                units % _QTY_UNITS,
                t_ms,
                b"true" if r >> 36 else b"false",
            )
        )


class SyntheticStream:
    """A ``MarketDataStream`` of seeded random-walk trades at ``rate_per_s`` (all symbols).

    ``max_ticks = 0`` runs until cancelled. ``first_trade_id`` defaults to the
    start time in microseconds, so a restarted run never reuses the trade ids
    (and hence event ids) of an earlier one; pass it for reproducible ids.

    *Counters:* ``ingest_received`` per trade generated, ``ingest_processed`` per
    tick handed to the channel, ``bp_drops_tick`` per tick dropped on a full channel.
    """

    def __init__(
        self,
        counters: Counters,
        *,
        symbols: Sequence[str] = ("BTCUSDT",),
        rate_per_s: float = 20.0,
        seed: int = 1,
        start_price: Decimal = DEFAULT_START_PRICE,
        max_ticks: int = 0,
        clock: Callable[[], int] = time.time_ns,
        first_trade_id: int | None = None,
        batch_size: int = SYNTHETIC_BATCH_TICKS,
        lossless: bool = False,
        admission: AdmissionSettings | None = None,
    ) -> None:
        if not rate_per_s > 0:
            raise InvalidSyntheticSettings(f"rate_per_s must be > 0, got {rate_per_s}")
        if max_ticks < 0:
            raise InvalidSyntheticSettings(f"max_ticks must be >= 0, got {max_ticks}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._counters = counters
        self._clock = clock
        self._interval = 1.0 / rate_per_s
        self._max_ticks = max_ticks
        self._batch_size = batch_size
        self._lossless = lossless
        first_id = clock() // 1000 if first_trade_id is None else first_trade_id
        self._walk = _Walk(random.Random(seed), symbols, start_price, first_id)
        settings = AdmissionSettings() if admission is None else admission
        self._admission = Admission(
            counters,
            AdmissionSettings(
                event_time_window_s=settings.event_time_window_s,
                price_band_pct=settings.price_band_pct,
                subscribed=frozenset(s.upper() for s in symbols),
            ),
        )
        self._malformed = 0

    async def stream(self, send: trio.MemorySendChannel[TickBatch]) -> None:
        """Produce ticks on schedule until ``max_ticks`` (or forever); ``send`` stays open."""
        counters = self._counters
        walk = self._walk
        clock = self._clock
        decode = binance.decode
        admit = self._admission.admit
        start = trio.current_time()
        batch: list[Tick] = []
        n = 0
        while self._max_ticks == 0 or n < self._max_ticks:
            deadline = start + n * self._interval
            if deadline > trio.current_time():
                if batch:
                    await self._flush(send, batch)
                    batch = []
                await trio.sleep_until(deadline)
            ts_recv = clock()
            raw = walk.next_trade(ts_recv)
            counters.ingest_received += 1
            n += 1
            try:
                tick = decode(raw, ts_recv)
            except MalformedMessage as exc:  # e.g. a walk that left the admissible range
                self._malformed_trade(exc, raw)
                continue
            assert tick is not None  # the walk only builds trades
            if not admit(tick):
                continue
            batch.append(tick)
            if len(batch) >= self._batch_size:
                await self._flush(send, batch)
                batch = []
        if batch:
            await self._flush(send, batch)

    def _malformed_trade(self, exc: MalformedMessage, raw: bytes) -> None:
        counters = self._counters
        counters.parse_errors += 1
        if exc.refusal:
            count_refusal(counters, Refusal(exc.refusal))
        self._malformed += 1
        if self._malformed <= 10 or self._malformed % 1000 == 0:
            logs.warning(
                "malformed_message",
                reason=exc.reason,
                sample=logs.sample(raw),
                source="synthetic",
                malformed_total=self._malformed,
            )

    async def _flush(self, send: trio.MemorySendChannel[TickBatch], batch: list[Tick]) -> None:
        if self._lossless:
            await send.send(batch)
            self._counters.ingest_processed += len(batch)
        else:
            try:
                send.send_nowait(batch)
            except trio.WouldBlock:
                self._counters.bp_drops_tick += len(batch)
                await trio.lowlevel.checkpoint()
                return
            # Counted before the checkpoint: a drain that cancels ingest there must not
            # leave an accepted batch uncounted (ingest_processed == persisted ticks).
            self._counters.ingest_processed += len(batch)
            await trio.lowlevel.checkpoint()


def write_synthetic_capture(
    path: Path,
    n_trades: int,
    *,
    seed: int,
    symbols: Sequence[str] = ("BTCUSDT",),
    start_ns: int = CAPTURE_START_NS,
    gzip: bool = False,
    rate_per_s: float = CAPTURE_RATE_PER_S,
    start_price: Decimal = DEFAULT_START_PRICE,
    first_trade_id: int = 1,
) -> None:
    """Write ``n_trades`` walk trades as a ``RECORDER`` capture (what ``ReplayStream`` reads).

    Lines are combined-stream envelopes like the real Binance file; ``ts_recv``
    starts at ``start_ns`` and advances by uniform gaps averaging ``1/rate_per_s``,
    and the exchange time trails it by 1-32 ms. Same arguments, same bytes
    (with ``gzip=True`` the decompressed bytes).

    *Resource handling:* writes ``path`` (replacing it) in blocks of
    ``CAPTURE_WRITE_LINES`` lines; memory stays bounded whatever ``n_trades``.
    """
    if n_trades < 0:
        raise ValueError(f"n_trades must be >= 0, got {n_trades}")
    if not rate_per_s > 0:
        raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
    rng = random.Random(seed)
    walk = _Walk(rng, symbols, start_price, first_trade_id)
    gap_span = max(1, int(2e9 / rate_per_s))  # gaps uniform in [0, 2/rate) s
    bits = rng.getrandbits

    def write_all(out: io.BufferedIOBase) -> None:
        ts = start_ns
        written = 0
        while written < n_trades:
            chunk = []
            for _ in range(min(CAPTURE_WRITE_LINES, n_trades - written)):
                ts += (bits(16) * gap_span) >> 16
                chunk.append(format_capture_line(ts, walk.next_trade(ts)))
            out.write(b"".join(chunk))
            written += len(chunk)

    if gzip:
        with gzip_module.open(path, "wb", compresslevel=CAPTURE_GZIP_LEVEL) as packed:
            write_all(packed)
    else:
        with path.open("wb") as plain:
            write_all(plain)
