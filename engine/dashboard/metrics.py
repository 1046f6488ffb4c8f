"""Prometheus text exposition of the engine's state, as read from its database.

One scrape renders one ``MetricsSnapshot`` (built by the dashboard from the
latest heartbeat, the health verdict and the ledger) with prometheus-client's
own encoder, so the output is exactly what Prometheus parses.

Naming: every heartbeat counter ``c`` becomes ``hybrid_engine_<c>`` (e.g.
``hybrid_engine_tick_count``). They are exposed as *gauges* holding the value
the engine last recorded, not as Prometheus counters: the engine owns the
counting, a restart starts them from zero again (``rate()`` copes with that for
gauges of monotone values, and ``connected``/``backoff_ms`` are true gauges),
and a counter type would force a ``_total`` suffix onto the documented names.

Values: Prometheus samples are floats, so decimal money is converted here, at
the exposition boundary and nowhere else; nothing reads these numbers back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX: Final = "hybrid_engine_"

@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything one scrape exposes; ``None`` means "not known" and the metric is omitted."""

    counters: Mapping[str, int] = field(default_factory=dict)
    heartbeat_age_s: float | None = None
    heartbeat_interval_s: float | None = None
    healthy: bool = False
    run_id: str | None = None
    mode: str | None = None
    trading_state: str | None = None
    final: bool | None = None
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    marks: Mapping[str, Decimal] = field(default_factory=dict)
    cash: Decimal | None = None
    fees: Decimal | None = None
    realized_pnl: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    equity: Decimal | None = None
    problems: tuple[str, ...] = ()
    metrics_errors: int = 0
    """Parts of the database this scrape could not read (their metrics are left out)."""


def _gauge(name: str, doc: str, value: float | Decimal | None) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(PREFIX + name, doc, value=float(value))


def _per_symbol(name: str, doc: str, values: Mapping[str, Decimal]) -> Iterator[Metric]:
    """One gauge labelled ``symbol`` with a sample per symbol, in symbol order (none if empty)."""
    if values:
        gauge = GaugeMetricFamily(PREFIX + name, doc, labels=["symbol"])
        for symbol in sorted(values):
            gauge.add_metric([symbol], float(values[symbol]))
        yield gauge


class _SnapshotCollector(Collector):
    def __init__(self, snap: MetricsSnapshot) -> None:
        self._snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self._snap
        yield GaugeMetricFamily(
            PREFIX + "healthy", "1 when the engine passes the healthcheck (see /healthz)",
            value=1.0 if s.healthy else 0.0,
        )
        if s.run_id is not None:
            yield InfoMetricFamily(
                PREFIX + "run", "The engine run the other metrics describe",
                value={
                    "run_id": s.run_id,
                    "mode": s.mode or "",
                    "trading_state": s.trading_state or "",
                },
            )
        yield from _gauge("metrics_errors", "Parts of the database this scrape could not read"
                          " (their metrics are omitted; see the dashboard's log)",
                          s.metrics_errors)
        yield from _gauge("heartbeat_age_seconds", "Seconds since the last heartbeat (wall clock)",
                          s.heartbeat_age_s)
        yield from _gauge("heartbeat_interval_seconds", "Interval the engine recorded with it",
                          s.heartbeat_interval_s)
        if s.final is not None:
            yield from _gauge("heartbeat_final", "1 when the last heartbeat was the run's last",
                              1.0 if s.final else 0.0)
        for name in sorted(s.counters):
            value = s.counters[name]
            if isinstance(value, int) and name.isidentifier():
                yield GaugeMetricFamily(
                    PREFIX + name, f"Engine counter {name} at the last heartbeat", value=value
                )
        yield from _per_symbol("position", "Open position (base units)", s.positions)
        yield from _per_symbol("mark_price", "Last traded price used to mark", s.marks)
        yield from _gauge("cash", "Cash from all fills, fees included (quote currency)", s.cash)
        yield from _gauge("fees", "Fees paid over all fills", s.fees)
        yield from _gauge("realized_pnl", "Realised PnL, average cost, before fees",
                          s.realized_pnl)
        yield from _gauge("unrealized_pnl", "Unrealised PnL at the mark prices", s.unrealized_pnl)
        yield from _gauge("equity", "Cash plus positions at the mark prices", s.equity)


def render(snapshot: MetricsSnapshot) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
