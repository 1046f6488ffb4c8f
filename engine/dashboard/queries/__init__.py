"""Bounded, parametrised read-only queries behind the dashboard's JSON API.

Every function takes an open read-only connection and already-validated
arguments (``engine.dashboard.params``), returns JSON-ready data (prices and
money as decimal *strings*, times as integer ns) and reads a bounded amount:

* lists are capped by ``limit`` (at most ``MAX_LIMIT`` rows);
* time series are cut into at most ``MAX_POINTS`` points;
* a price window holds at most ``MAX_BARS`` strategy bars;
* "latest" lookups are index seeks (``ORDER BY ... DESC LIMIT 1``), never scans.

Values are bound as SQL parameters, never formatted into SQL. By what they
serve: ``runs`` (status, heartbeats), ``market`` (symbols, prices, the price
chart), ``records`` (signals, vetoes, orders, fills), ``ledger`` (portfolio
summary, equity curve); shared bounds in ``bounds``. This module only
re-exports them, so callers write ``queries.<name>``.
"""

from engine.dashboard.queries.bounds import (
    DEFAULT_LIMIT,
    DEFAULT_POINTS,
    MAX_LIMIT,
    MAX_POINTS,
    NS_PER_S,
)
from engine.dashboard.queries.ledger import (
    MAX_EQUITY_FILLS,
    MAX_LEDGER_FILLS_PER_READ,
    SYMBOL_AT,
    TS_AT,
    LedgerCache,
    equity_curve,
)
from engine.dashboard.queries.market import (
    DEFAULT_WINDOW_S,
    MAX_BARS,
    MAX_SYMBOLS,
    SMA_PLACES,
    WARMUP_LOOKBACK,
    WindowTooWide,
    last_tick,
    marks,
    prices,
    symbols,
    tick_span,
)
from engine.dashboard.queries.records import (
    FILL_COLUMNS,
    ORDER_COLUMNS,
    ORDER_EVENT_COLUMNS,
    SIGNAL_COLUMNS,
    VETO_COLUMNS,
    RecordFilter,
    fills,
    orders,
    signals,
    vetoes,
)
from engine.dashboard.queries.runs import (
    HEARTBEAT_COLUMNS,
    RUN_COLUMNS,
    counter_rates,
    heartbeats,
    latest_heartbeats,
    latest_run,
    runs,
    strategy_params,
)

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_POINTS",
    "DEFAULT_WINDOW_S",
    "FILL_COLUMNS",
    "HEARTBEAT_COLUMNS",
    "MAX_BARS",
    "MAX_EQUITY_FILLS",
    "MAX_LEDGER_FILLS_PER_READ",
    "MAX_LIMIT",
    "MAX_POINTS",
    "MAX_SYMBOLS",
    "NS_PER_S",
    "ORDER_COLUMNS",
    "ORDER_EVENT_COLUMNS",
    "RUN_COLUMNS",
    "SIGNAL_COLUMNS",
    "SMA_PLACES",
    "SYMBOL_AT",
    "TS_AT",
    "VETO_COLUMNS",
    "WARMUP_LOOKBACK",
    "LedgerCache",
    "RecordFilter",
    "WindowTooWide",
    "counter_rates",
    "equity_curve",
    "fills",
    "heartbeats",
    "last_tick",
    "latest_heartbeats",
    "latest_run",
    "marks",
    "orders",
    "prices",
    "runs",
    "signals",
    "strategy_params",
    "symbols",
    "tick_span",
    "vetoes",
]
