"""The engine's counters: one mutable object shared by the tasks of one process.

Tasks run on one Trio thread, so plain integer attributes need no locking; the
persistence worker thread only ever reads a snapshot taken on the Trio thread.
Every heartbeat logs and stores ``snapshot()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Counters:
    # pipeline (docs/contract.md, operations)
    tick_count: int = 0
    signal_count: int = 0
    shadow_orders: int = 0
    paper_orders: int = 0
    live_orders: int = 0
    trade_count: int = 0
    persist_count: int = 0
    persist_errors: int = 0
    persist_retries: int = 0
    """Lock retries of any write, counted as they happen (by the writer thread only)."""
    persist_batches: int = 0
    ingest_received: int = 0
    ingest_processed: int = 0
    bp_drops_tick: int = 0
    bp_drops_signal: int = 0
    bp_drops_persist: int = 0
    risk_vetoes: int = 0
    stale_vetoes: int = 0
    # ingest quality
    parse_errors: int = 0
    skipped_messages: int = 0
    duplicates: int = 0
    gaps: int = 0
    stale_ticks: int = 0
    # admission refusals by reason (engine.adapters.market.admission.Refusal): number and
    # symbol are malformed messages (also in parse_errors); the others are ticks
    # that decoded but were not plausible, never handed downstream
    refused_number: int = 0
    refused_symbol: int = 0
    refused_unsubscribed: int = 0
    refused_event_time: int = 0
    refused_id_jump: int = 0
    refused_price_band: int = 0
    id_reanchors: int = 0  # a symbol's trade ids moved beyond the dedup window (dedup)
    band_reanchors: int = 0  # a symbol's price band moved on consistent refused ticks
    reconnects: int = 0
    connected: int = 0
    backoff_ms: int = 0
    last_tick_wall_ns: int = 0
    """Live feed: wall-clock receipt time of the last admitted tick (0: none yet).
    Liveness is judged on it (``engine.dashboard.health``), not on ``connected``."""
    # strategy (engine.runtime.pipeline.strategy_task)
    strategy_ns: int = 0
    """Time spent inside the strategy's ``on_batch`` (perf counter ns, summed)."""
    # LIVE venue (engine.runtime.live)
    venue_failures: int = 0
    replay_bytes_read: int = 0
    """Replay: bytes of the capture files read so far, as stored (compressed ones too)."""
    replay_bytes_total: int = 0
    """Replay: the total size of its capture files (0: not a replay); the progress line's
    percent and ETA come from these two."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
