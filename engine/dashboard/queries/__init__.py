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
re-exports them, so callers write ``queries.<name>``."""
