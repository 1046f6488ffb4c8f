"""The dashboard's ASGI application: one page, a JSON API, ``/metrics`` and ``/healthz``.

Read-only by construction: every handler reads through ``ReadOnlyDatabase``
(``mode=ro`` + ``query_only``) and only ``GET``/``HEAD`` routes exist.

Responsiveness: SQLite runs in worker threads, never on the Trio thread, behind
two capacity limiters -- ``API_THREADS`` for the page's data and a separate
``PROBE_THREADS`` for ``/healthz`` and ``/metrics`` -- so a slow chart query
can never make a healthcheck or a scrape wait in line behind it.

Who may ask: a request whose ``Host:`` header is not one of the allowed names
(loopback names, the bound address, and the operator's ``--allow-host`` list)
is refused with 400 before any handler runs -- a page on another origin that
re-binds its DNS name to 127.0.0.1 must not read the portfolio (Starlette's
``TrustedHostMiddleware``). Every response, refusals and 500s included, carries
``SECURITY_HEADERS``: no MIME sniffing, and a Content-Security-Policy that lets
the page load only its own script, style and API.

Errors: bad parameters are 400, a missing/unreadable database or a query past
its deadline is 503, both as ``{"error": message}``; anything else is a 500
with a generic message (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from importlib import resources
from typing import Any, Final, TypeVar

import trio
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import logs
from engine.core.events import NS_PER_S
from engine.dashboard.db import DatabaseUnavailable, QueryTooSlow, ReadOnlyDatabase
from engine.dashboard.health import Verdict, database_verdict, read_verdict
from engine.dashboard.metrics import MetricsSnapshot, render
from engine.dashboard.params import REASON_RE, RUN_ID_RE, SYMBOL_RE, BadRequest, Params
from engine.dashboard.queries.bounds import (
    DEFAULT_LIMIT,
    DEFAULT_POINTS,
    MAX_LIMIT,
    MAX_POINTS,
)
from engine.dashboard.queries.ledger import LedgerCache, equity_curve
from engine.dashboard.queries.market import WindowTooWide
from engine.dashboard.queries.market import prices as query_prices
from engine.dashboard.queries.market import symbols as query_symbols
from engine.dashboard.queries.records import RecordFilter, fills, orders, signals
from engine.dashboard.queries.records import vetoes as query_vetoes
from engine.dashboard.queries.runs import (
    chart_strategy,
    counter_rates,
    latest_heartbeats,
    latest_run,
)
from engine.dashboard.queries.runs import heartbeats as query_heartbeats
from engine.dashboard.queries.runs import runs as query_runs
from engine.exits import ConfigError
from engine.store.pictures import PAGE_POLICY, render_html
from engine.store.report import run_report, select_run

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

LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.1", "[::1]")
"""Host names always answered: the dashboard binds to loopback by default."""

WILDCARD_BINDS: Final = frozenset({"0.0.0.0", "::", "[::]"})
"""Bind addresses that are no host name: with them, name the host with ``--allow-host``."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page needs its own script, stylesheet and API and nothing else (no inline code,
no other origin, never framed)."""

SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
"""Sent on every response (set where a handler did not set them itself)."""

Clock = Callable[[], int]


HOST_NAME_RE: Final = re.compile(
    r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
"""A DNS name (``*.`` prefix allowed for ``--allow-host``), already lower-cased."""

MAX_HOST_NAME: Final = 253


def host_name(name: str, *, pattern: bool = False) -> str:
    """``name`` as a ``Host:`` header shows it (lower case, IPv6 in brackets).

    Raises ``ValueError`` for anything that is neither an IP address nor a DNS
    name (a ``*.example.com`` pattern only when ``pattern``).
    """
    host = name.strip().lower()
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if (len(host) > MAX_HOST_NAME or not HOST_NAME_RE.match(host)
                or (host.startswith("*") and not pattern)):
            raise ValueError(f"{name[:80]!r} is not a host name, an IP address"
                             f"{' or a *.domain pattern' if pattern else ''}") from None
        return host
    return f"[{address}]" if address.version == 6 else str(address)


def allowed_hosts(bind_host: str, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host:`` names the dashboard answers when bound to ``bind_host``.

    Loopback names always; the bound address unless it is a wildcard
    (``0.0.0.0``: every interface, which names no host); then ``extra`` (the
    operator's ``--allow-host`` names, ``*.example.com`` patterns allowed).
    Raises ``ValueError`` naming a bad ``extra`` entry.
    """
    names = list(LOOPBACK_HOSTS)
    candidates = []
    if bind_host.strip() not in WILDCARD_BINDS:
        with contextlib.suppress(ValueError):  # unusable: the bind itself refuses it
            candidates.append(host_name(bind_host))
    candidates += [host_name(name, pattern=True) for name in extra]
    for host in candidates:
        if host not in names:
            names.append(host)
    return names


REFUSAL_LOG_FIRST: Final = 10
REFUSAL_LOG_EVERY: Final = 1000
"""Bounded log of refused ``Host:`` headers: the first 10, then every 1,000th (all counted)."""

_HOST_CHECKED: Final = "hybrid_engine.host_allowed"
"""Scope key ``HostRefusalLog`` sets and ``_HostAllowed`` (behind the host check) flips."""


class HostRefusalLog:
    """Counts and samples the requests ``TrustedHostMiddleware`` (inside it) refuses.

    A request that reaches ``_HostAllowed`` passed the check; one that does not,
    was answered 400 by the check itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[_HOST_CHECKED] = False
        await self.app(scope, receive, send)
        if not scope[_HOST_CHECKED]:
            self.refused += 1
            if self.refused <= REFUSAL_LOG_FIRST or self.refused % REFUSAL_LOG_EVERY == 0:
                host = Headers(scope=scope).get("host")
                logs.warning("dashboard_host_refused", refused_total=self.refused,
                             host=None if host is None else logs.sample(host, 80),
                             path=logs.sample(scope.get("path", ""), 80))


class _HostAllowed:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _HOST_CHECKED in scope:
            scope[_HOST_CHECKED] = True
        await self.app(scope, receive, send)


class SecurityHeadersMiddleware:
    """Adds ``SECURITY_HEADERS`` to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Dashboard:
    """What the handlers share: the database, the clock, the ledger cache and the limiters."""

    def __init__(self, db: ReadOnlyDatabase, now_wall_ns: Clock = time.time_ns) -> None:
        self.db = db
        self.now_wall_ns = now_wall_ns
        self.ledger = LedgerCache()
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
    # The security headers are set here too: a 500 is answered by Starlette's outermost
    # error middleware, which the SecurityHeadersMiddleware never sees.
    return JSONResponse(data, status_code=status,
                        headers={"Cache-Control": "no-store", **SECURITY_HEADERS})


Handler = Callable[[Request], Awaitable[Response]]


def build_app(
    db_path: str,
    *,
    now_wall_ns: Clock = time.time_ns,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
) -> Starlette:
    """The ASGI app for the database at ``db_path`` (which may not exist yet).

    ``hosts``: the ``Host:`` names answered (see ``allowed_hosts``); any other is a 400.
    """
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
            run = latest_run(conn)
            beats = latest_heartbeats(conn, run["run_id"] if run else None, 2)
            verdict = read_verdict(conn, now)
            heartbeat = beats[0] if beats else None
            if heartbeat is not None:
                heartbeat["age_s"] = round((now - heartbeat["ts_wall_ns"]) / NS_PER_S, 3)
                heartbeat["rates"] = counter_rates(
                    heartbeat, beats[1] if len(beats) > 1 else None
                )
            if run is not None:
                run["strategy"] = chart_strategy(run).to_builtins()
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
        limit = p.required_int("limit", 20, 1, MAX_LIMIT)
        return _json({"runs": await dash.read(lambda c: query_runs(c, limit))})

    async def report_page(request: Request) -> Response:
        """One run's pictures: the page ``report --html`` writes (docs/report.md)."""
        p = Params(request.query_params, ("run_id",))
        run_id = p.pattern("run_id", RUN_ID_RE, "a run id")

        def read(conn: Any) -> str | None:
            try:
                run = select_run(conn, run_id)
            except ConfigError:
                return None
            return None if run is None else render_html(run_report(conn, run))

        page = await dash.read(read)
        if page is None:
            raise HTTPException(404, f"no run {run_id!r}")
        headers = {"Cache-Control": "no-store", "Content-Security-Policy": PAGE_POLICY}
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    async def heartbeats(request: Request) -> Response:
        p = Params(request.query_params, ("limit", "run_id", "since_wall_ns"))
        limit = p.required_int("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        run_id = p.pattern("run_id", RUN_ID_RE, "a run id")
        since = p.integer("since_wall_ns", None, 0, 2**63 - 1)
        rows = await dash.read(lambda c: query_heartbeats(c, limit, run_id, since))
        return _json({"heartbeats": rows})

    async def symbols(request: Request) -> Response:
        Params(request.query_params, ())
        return _json({"symbols": await dash.read(query_symbols)})

    async def prices(request: Request) -> Response:
        p = Params(request.query_params, ("symbol", "from_ns", "to_ns", "points"))
        symbol = p.pattern("symbol", SYMBOL_RE, "a symbol such as BTCUSDT")
        if symbol is None:
            raise BadRequest("symbol is required (see /api/symbols)")
        start, end = p.window()
        points = p.required_int("points", DEFAULT_POINTS, 2, MAX_POINTS)

        def read(conn: Any) -> dict[str, Any]:
            return query_prices(conn, symbol, from_ns=start, to_ns=end, points=points,
                                  strategy=chart_strategy(latest_run(conn)))

        return _json(await dash.read(read))

    async def equity(request: Request) -> Response:
        p = Params(request.query_params, ("from_ns", "to_ns", "points"))
        start, end = p.window()
        points = p.required_int("points", DEFAULT_POINTS, 2, MAX_POINTS)
        return _json(await dash.read(
            lambda c: equity_curve(c, from_ns=start, to_ns=end, points=points)
        ))

    async def portfolio(request: Request) -> Response:
        Params(request.query_params, ())
        return _json(await dash.read(dash.ledger.summary))

    def record_list(
        name: str, fn: Callable[[Any, RecordFilter], list[dict[str, Any]]]
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
        return _json({"vetoes": await dash.read(lambda c: query_vetoes(c, flt, reason))})

    async def healthz(request: Request) -> Response:
        Params(request.query_params, ())
        now = dash.now_wall_ns()
        verdict = await trio.to_thread.run_sync(  # never raises for what the file holds
            database_verdict, dash.db, now, limiter=dash.limiter(probe=True)
        )
        if "unreadable" in verdict.details:
            logs.warning("dashboard_health_unreadable", error=verdict.details["unreadable"])
        return _json(verdict.as_json(), 200 if verdict.ok else 503)

    async def metrics(request: Request) -> Response:
        Params(request.query_params, ())
        now = dash.now_wall_ns()
        try:
            snap = await dash.read(lambda c: _metrics_snapshot(c, dash, now), probe=True)
        except (DatabaseUnavailable, QueryTooSlow) as exc:
            snap = MetricsSnapshot(healthy=False, problems=(str(exc),))
        return Response(render(snap), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/status", status, methods=["GET"]),
        Route("/api/runs", runs, methods=["GET"]),
        Route("/report", report_page, methods=["GET"]),
        Route("/api/heartbeats", heartbeats, methods=["GET"]),
        Route("/api/symbols", symbols, methods=["GET"]),
        Route("/api/prices", prices, methods=["GET"]),
        Route("/api/equity", equity, methods=["GET"]),
        Route("/api/portfolio", portfolio, methods=["GET"]),
        Route("/api/signals", record_list("signals", signals), methods=["GET"]),
        Route("/api/orders", record_list("orders", orders), methods=["GET"]),
        Route("/api/fills", record_list("fills", fills), methods=["GET"]),
        Route("/api/vetoes", vetoes, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(HostRefusalLog),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts), www_redirect=False),
            Middleware(_HostAllowed),
        ],
        exception_handlers={
            BadRequest: _bad_request,
            WindowTooWide: _bad_request,
            DatabaseUnavailable: _unavailable,
            QueryTooSlow: _unavailable,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.dashboard = dash
    return app


def _record_filter(p: Params) -> RecordFilter:
    start, end = p.window()
    return RecordFilter(
        limit=p.required_int("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        symbol=p.pattern("symbol", SYMBOL_RE, "a symbol such as BTCUSDT"),
        from_ns=start,
        to_ns=end,
    )


METRIC_INT_MAX: Final = 2**63 - 1
"""Counters outside int64 are not engine counters (the engine's are SQLite integers)."""


def _metrics_snapshot(conn: Any, dash: Dashboard, now: int) -> MetricsSnapshot:
    """What one scrape exposes, read so that no row can make ``/metrics`` fail.

    The three parts -- health verdict, run and heartbeat, ledger -- are read one by
    one; a part that raises on what it finds (a corrupt or hostile row) is left
    out, named in ``problems`` and counted as ``hybrid_engine_metrics_errors``, and
    the others are still exposed. Values are checked here, at the boundary, to be
    what a gauge can carry (int64 counters, finite or infinite decimals).
    """
    problems: list[str] = []
    unreadable = 0

    def part(name: str, fn: Callable[[], T], fallback: T) -> T:
        nonlocal unreadable
        try:
            return fn()
        except Exception as exc:  # a scrape must answer whatever the rows hold
            unreadable += 1
            problems.append(f"metrics: {name} unreadable ({type(exc).__name__})")
            logs.warning("dashboard_metrics_part_failed", part=name,
                         error=f"{type(exc).__name__}: {exc}"[:500])
            return fallback

    verdict: Verdict | None = part("health", lambda: read_verdict(conn, now), None)
    run = part("run", lambda: latest_run(conn), None)
    beats: list[dict[str, Any]] = part(
        "heartbeat",
        lambda: latest_heartbeats(conn, run["run_id"] if run else None, 1) if run else [],
        [],
    )
    heartbeat = beats[0] if beats else None
    ledger = part("ledger", lambda: _ledger_values(dash.ledger.summary(conn)), None)
    if verdict is not None:
        problems[:0] = verdict.problems
    details = verdict.details if verdict is not None else {}
    return MetricsSnapshot(
        counters=_int_counters(heartbeat.get("counters") if heartbeat else None),
        heartbeat_age_s=_number(details.get("heartbeat_age_s")),
        heartbeat_interval_s=_number(heartbeat.get("interval_s") if heartbeat else None),
        healthy=verdict is not None and verdict.ok,
        run_id=_label(run.get("run_id") if run else None),
        mode=_label((run or heartbeat or {}).get("mode")),
        trading_state=_label(heartbeat.get("trading_state") if heartbeat else None),
        final=bool(heartbeat["final"]) if heartbeat else None,
        problems=tuple(problems),
        metrics_errors=unreadable,
        **(ledger or {}),
    )


def _ledger_values(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "positions": {str(p["symbol"]): _gauge_decimal(p["qty"]) for p in summary["positions"]},
        "marks": {str(s): _gauge_decimal(v) for s, v in summary["marks"].items()},
        **{key: _gauge_decimal(summary[key])
           for key in ("cash", "fees", "realized_pnl", "unrealized_pnl", "equity")},
    }


def _gauge_decimal(value: Any) -> Decimal:
    """A decimal a gauge can carry (``float()`` refuses a signalling NaN)."""
    number = Decimal(value)
    if number.is_snan():
        raise ValueError(f"signalling NaN {value!r}")
    return number


def _int_counters(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {
        name: value for name, value in raw.items()
        if isinstance(name, str) and type(value) is int and abs(value) <= METRIC_INT_MAX
    }


def _number(value: Any) -> float | None:
    if type(value) not in (int, float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _label(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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
