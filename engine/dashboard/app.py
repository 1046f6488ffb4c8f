"""The dashboard's ASGI application: one page, a JSON API, ``/metrics`` and ``/healthz``.

Read-only by construction: every handler reads through ``ReadOnlyDatabase``
(``mode=ro`` + ``query_only``) and only ``GET``/``HEAD`` routes exist.

Responsiveness: SQLite runs in worker threads, never on the Trio thread, behind
two capacity limiters -- ``API_THREADS`` for the page's data and a separate
``PROBE_THREADS`` for ``/healthz`` and ``/metrics`` -- so a slow chart query
can never make a healthcheck or a scrape wait in line behind it.

Errors: bad parameters are 400, a missing/unreadable database or a query past
its deadline is 503, both as ``{"error": message}``; anything else is a 500
with a generic message (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from importlib import resources
from typing import Any, Final, TypeVar

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine import logs
from engine.dashboard import queries
from engine.dashboard.db import DatabaseUnavailable, QueryTooSlow, ReadOnlyDatabase
from engine.dashboard.params import REASON_RE, RUN_ID_RE, SYMBOL_RE, BadRequest, Params
from engine.health import Verdict, database_verdict, read_verdict
from engine.metrics import CONTENT_TYPE, MetricsSnapshot, render

T = TypeVar("T")

API_THREADS: Final = 2
"""Worker threads for API queries (the host has 2 cores; more would only queue inside SQLite).
Overload policy: further requests wait for a thread (Trio's limiter is FIFO)."""

PROBE_THREADS: Final = 1
"""Worker threads reserved for /healthz and /metrics, so probes never queue behind the API."""

STATIC_FILES: Final = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
"""The only files served besides the page (no directory listing, no path lookups)."""

Clock = Callable[[], int]


class Dashboard:
    """What the handlers share: the database, the clock, the ledger cache and the limiters."""

    def __init__(self, db: ReadOnlyDatabase, now_wall_ns: Clock = time.time_ns) -> None:
        self.db = db
        self.now_wall_ns = now_wall_ns
        self.ledger = queries.LedgerCache()
        self._api: trio.CapacityLimiter | None = None
        self._probe: trio.CapacityLimiter | None = None

    def limiter(self, probe: bool) -> trio.CapacityLimiter:
        # Created on first use: a limiter belongs to the Trio run that serves the app.
        if probe:
            if self._probe is None:
                self._probe = trio.CapacityLimiter(PROBE_THREADS)
            return self._probe
        if self._api is None:
            self._api = trio.CapacityLimiter(API_THREADS)
        return self._api

    async def read(self, fn: Callable[[Any], T], *, probe: bool = False) -> T:
        """Run ``fn(conn)`` on a fresh read-only connection in a worker thread."""

        def work() -> T:
            with self.db.connect() as conn:
                return fn(conn)

        return await trio.to_thread.run_sync(work, limiter=self.limiter(probe))


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


Handler = Callable[[Request], Awaitable[Response]]


def build_app(db_path: str, *, now_wall_ns: Clock = time.time_ns) -> Starlette:
    """The ASGI app for the database at ``db_path`` (which may not exist yet)."""
    dash = Dashboard(ReadOnlyDatabase(db_path), now_wall_ns)
    page = resources.files("engine.dashboard").joinpath("static", "index.html").read_bytes()

    async def index(request: Request) -> Response:
        Params(request.query_params, ())
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            raise HTTPException(404, f"no static file {name!r}")
        body = resources.files("engine.dashboard").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC_FILES[name])

    async def status(request: Request) -> Response:
        Params(request.query_params, ())
        now = dash.now_wall_ns()

        def read(conn: Any) -> dict[str, Any]:
            run = queries.latest_run(conn)
            beats = queries.latest_heartbeats(conn, run["run_id"] if run else None, 2)
            verdict = read_verdict(conn, now)
            heartbeat = beats[0] if beats else None
            if heartbeat is not None:
                heartbeat["age_s"] = round((now - heartbeat["ts_wall_ns"]) / queries.NS_PER_S, 3)
                heartbeat["rates"] = queries.counter_rates(
                    heartbeat, beats[1] if len(beats) > 1 else None
                )
            if run is not None:
                params = queries.strategy_params(run)
                run["strategy"] = {"fast": params.fast, "slow": params.slow,
                                   "bar_seconds": params.bar_seconds}
                run.pop("config", None)
            return {
                "now_wall_ns": now,
                "mode": (run or heartbeat or {}).get("mode"),
                "trading_state": heartbeat.get("trading_state") if heartbeat else None,
                "run": run,
                "heartbeat": heartbeat,
                "health": verdict.as_json(),
            }

        return _json(await dash.read(read))

    async def runs(request: Request) -> Response:
        p = Params(request.query_params, ("limit",))
        limit = p.required_int("limit", 20, 1, queries.MAX_LIMIT)
        return _json({"runs": await dash.read(lambda c: queries.runs(c, limit))})

    async def heartbeats(request: Request) -> Response:
        p = Params(request.query_params, ("limit", "run_id", "since_wall_ns"))
        limit = p.required_int("limit", queries.DEFAULT_LIMIT, 1, queries.MAX_LIMIT)
        run_id = p.pattern("run_id", RUN_ID_RE, "a run id")
        since = p.integer("since_wall_ns", None, 0, 2**63 - 1)
        rows = await dash.read(lambda c: queries.heartbeats(c, limit, run_id, since))
        return _json({"heartbeats": rows})

    async def symbols(request: Request) -> Response:
        Params(request.query_params, ())
        return _json({"symbols": await dash.read(queries.symbols)})

    async def prices(request: Request) -> Response:
        p = Params(request.query_params, ("symbol", "from_ns", "to_ns", "points"))
        symbol = p.pattern("symbol", SYMBOL_RE, "a symbol such as BTCUSDT")
        if symbol is None:
            raise BadRequest("symbol is required (see /api/symbols)")
        start, end = p.window()
        points = p.required_int("points", queries.DEFAULT_POINTS, 2, queries.MAX_POINTS)

        def read(conn: Any) -> dict[str, Any]:
            params = queries.strategy_params(queries.latest_run(conn))
            return queries.prices(conn, symbol, from_ns=start, to_ns=end, points=points,
                                  params=params)

        return _json(await dash.read(read))

    async def equity(request: Request) -> Response:
        p = Params(request.query_params, ("from_ns", "to_ns", "points"))
        start, end = p.window()
        points = p.required_int("points", queries.DEFAULT_POINTS, 2, queries.MAX_POINTS)
        return _json(await dash.read(
            lambda c: queries.equity_curve(c, from_ns=start, to_ns=end, points=points)
        ))

    async def portfolio(request: Request) -> Response:
        Params(request.query_params, ())
        return _json(await dash.read(dash.ledger.summary))

    def record_list(
        name: str, fn: Callable[[Any, queries.RecordFilter], list[dict[str, Any]]]
    ) -> Handler:
        async def handler(request: Request) -> Response:
            p = Params(request.query_params, ("limit", "symbol", "from_ns", "to_ns"))
            flt = _record_filter(p)
            return _json({name: await dash.read(lambda c: fn(c, flt))})

        return handler

    async def vetoes(request: Request) -> Response:
        p = Params(request.query_params, ("limit", "symbol", "from_ns", "to_ns", "reason"))
        flt = _record_filter(p)
        reason = p.pattern("reason", REASON_RE, "a veto reason such as RISK_CAP")
        return _json({"vetoes": await dash.read(lambda c: queries.vetoes(c, flt, reason))})

    async def healthz(request: Request) -> Response:
        Params(request.query_params, ())
        now = dash.now_wall_ns()
        verdict = await trio.to_thread.run_sync(
            database_verdict, dash.db, now, limiter=dash.limiter(probe=True)
        )
        return _json(verdict.as_json(), 200 if verdict.ok else 503)

    async def metrics(request: Request) -> Response:
        Params(request.query_params, ())
        now = dash.now_wall_ns()
        try:
            snap = await dash.read(lambda c: _metrics_snapshot(c, dash, now), probe=True)
        except (DatabaseUnavailable, QueryTooSlow) as exc:
            snap = MetricsSnapshot(healthy=False, problems=(str(exc),))
        return Response(render(snap), media_type=CONTENT_TYPE)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/status", status, methods=["GET"]),
        Route("/api/runs", runs, methods=["GET"]),
        Route("/api/heartbeats", heartbeats, methods=["GET"]),
        Route("/api/symbols", symbols, methods=["GET"]),
        Route("/api/prices", prices, methods=["GET"]),
        Route("/api/equity", equity, methods=["GET"]),
        Route("/api/portfolio", portfolio, methods=["GET"]),
        Route("/api/signals", record_list("signals", queries.signals), methods=["GET"]),
        Route("/api/orders", record_list("orders", queries.orders), methods=["GET"]),
        Route("/api/fills", record_list("fills", queries.fills), methods=["GET"]),
        Route("/api/vetoes", vetoes, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            BadRequest: _bad_request,
            queries.WindowTooWide: _bad_request,
            DatabaseUnavailable: _unavailable,
            QueryTooSlow: _unavailable,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.dashboard = dash
    return app


def _record_filter(p: Params) -> queries.RecordFilter:
    start, end = p.window()
    return queries.RecordFilter(
        limit=p.required_int("limit", queries.DEFAULT_LIMIT, 1, queries.MAX_LIMIT),
        symbol=p.pattern("symbol", SYMBOL_RE, "a symbol such as BTCUSDT"),
        from_ns=start,
        to_ns=end,
    )


def _metrics_snapshot(conn: Any, dash: Dashboard, now: int) -> MetricsSnapshot:
    verdict: Verdict = read_verdict(conn, now)
    run = queries.latest_run(conn)
    beats = queries.latest_heartbeats(conn, run["run_id"] if run else None, 1) if run else []
    heartbeat = beats[0] if beats else None
    summary = dash.ledger.summary(conn)
    return MetricsSnapshot(
        counters=heartbeat["counters"] if heartbeat else {},
        heartbeat_age_s=verdict.details.get("heartbeat_age_s"),
        heartbeat_interval_s=heartbeat["interval_s"] if heartbeat else None,
        healthy=verdict.ok,
        run_id=run["run_id"] if run else None,
        mode=(run or heartbeat or {}).get("mode"),
        trading_state=heartbeat.get("trading_state") if heartbeat else None,
        final=heartbeat["final"] if heartbeat else None,
        positions={p["symbol"]: Decimal(p["qty"]) for p in summary["positions"]},
        marks={s: Decimal(v) for s, v in summary["marks"].items()},
        cash=Decimal(summary["cash"]),
        fees=Decimal(summary["fees"]),
        realized_pnl=Decimal(summary["realized_pnl"]),
        unrealized_pnl=Decimal(summary["unrealized_pnl"]),
        equity=Decimal(summary["equity"]),
        problems=verdict.problems,
    )


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _json({"error": str(exc)}, 400)


async def _unavailable(request: Request, exc: Exception) -> Response:
    return _json({"error": str(exc)}, 503)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _json({"error": exc.detail}, exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    logs.error("dashboard_request_failed", path=request.url.path,
               error=f"{type(exc).__name__}: {exc}")
    return _json({"error": "internal error (details are in the dashboard's log)"}, 500)
