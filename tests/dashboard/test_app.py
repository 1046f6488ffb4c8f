"""Dashboard API against a database produced by a real replay of the bundled capture."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.core.events import Fill
from engine.dashboard.app import (
    CONTENT_SECURITY_POLICY,
    REFUSAL_LOG_FIRST,
    allowed_hosts,
    build_app,
)
from engine.dashboard.db import ReadOnlyDatabase
from engine.dashboard.queries.runs import chart_strategy
from engine.logs import Captured
from engine.store.report import build_report
from engine.store.rows import columns_of
from tests.fakes.dashboard_support import asgi_get, http_get, replay_database, serve_dashboard
from tests.fakes.engine_process import EngineProcess, run_engine

TRADES = 9757


@pytest.fixture(scope="session")
def replay_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay_database(tmp_path_factory.mktemp("replay") / "replay.db")


@pytest.fixture
def app(replay_db: Path) -> Any:
    return build_app(str(replay_db))


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _get(app: Any, path: str, query: str = "") -> Any:
    reply = await asgi_get(app, path, query)
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    return reply.json()


async def test_status_replay_db_reports_run_counters_and_stopped_engine(app: Any) -> None:
    status = await _get(app, "/api/status")
    assert status["mode"] == "shadow"
    assert status["run"]["command"] == "replay"
    assert status["run"]["exit_code"] == 0 and status["run"]["clean_shutdown"] is True
    assert status["run"]["strategy"] == {
        "kind": "sma_cross", "params": {"fast": 5, "slow": 20, "bar_seconds": 1},
        "bar_seconds": 1, "lines": ["sma_fast", "sma_slow"], "fast": 5, "slow": 20}
    heartbeat = status["heartbeat"]
    assert heartbeat["final"] is True
    assert heartbeat["counters"]["tick_count"] == TRADES
    assert heartbeat["age_s"] >= 0
    assert status["health"]["status"] == "fail"
    assert any("engine stopped" in p for p in status["health"]["problems"])


async def test_symbols_replay_db_lists_btcusdt_with_last_trade(app: Any) -> None:
    symbols = (await _get(app, "/api/symbols"))["symbols"]
    assert [s["symbol"] for s in symbols] == ["BTCUSDT"]
    # The capture's last trade (id 3735693015) printed at 61685.99.
    assert symbols[0]["last_price"] == "61685.99000000"


async def test_prices_default_window_smas_cross_exactly_at_engine_signals(app: Any) -> None:
    data = await _get(app, "/api/prices", "symbol=BTCUSDT&points=2000")
    assert data["columns"] == ["ts_event", "close", "sma_fast", "sma_slow"]
    assert data["thinned_by"] == 1 and data["bars"]
    signals = data["signals"]
    assert len(signals) == 16
    bars = {bar[0]: i for i, bar in enumerate(data["bars"])}
    for sig in signals:
        i = bars[sig["ts_event"]]
        _, close, fast, slow = data["bars"][i]
        _, _, prev_fast, prev_slow = data["bars"][i - 1]
        assert close == sig["price"]
        now_up = Decimal(fast) > Decimal(slow)
        before_up = Decimal(prev_fast) > Decimal(prev_slow)
        assert now_up == (sig["side"] == "BUY")
        assert before_up != now_up


async def test_prices_points_thins_series_keeping_last_bar(app: Any) -> None:
    full = await _get(app, "/api/prices", "symbol=BTCUSDT&points=2000")
    thin = await _get(app, "/api/prices", "symbol=BTCUSDT&points=50")
    assert len(thin["bars"]) <= 51 < len(full["bars"])
    assert thin["bars"][-1] == full["bars"][-1]


async def test_prices_window_filters_bars_and_signals(app: Any) -> None:
    full = await _get(app, "/api/prices", "symbol=BTCUSDT&points=2000")
    start = full["bars"][100][0] - 1
    end = full["bars"][200][0] - 1
    part = await _get(app, "/api/prices", f"symbol=BTCUSDT&from_ns={start}&to_ns={end}")
    assert all(start <= bar[0] <= end + 10**9 for bar in part["bars"])
    assert part["bars"][0][2] is not None  # warm-up bars before the window define the SMAs
    assert all(start <= s["ts_event"] <= end + 10**9 for s in part["signals"])


@pytest.fixture(scope="session")
def donchian_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay_database(tmp_path_factory.mktemp("donchian") / "donchian.db",
                           env={"ENGINE_STRATEGY_KIND": "donchian_breakout",
                                "ENGINE_STRATEGY_LOOKBACK": "30"})


async def test_prices_of_another_strategy_have_its_bars_and_no_sma(donchian_db: Path) -> None:
    app = build_app(str(donchian_db))
    data = await _get(app, "/api/prices", "symbol=BTCUSDT&points=2000")
    assert data["strategy"] == {"kind": "donchian_breakout",
                                "params": {"lookback": 30, "bar_seconds": 1}}
    assert data["columns"] == ["ts_event", "close"]
    assert data["fast"] is None and data["slow"] is None
    assert data["bars"] and all(len(bar) == 2 for bar in data["bars"])
    assert data["signals"]  # its own signals are still marked
    status = await _get(app, "/api/status")
    assert status["run"]["strategy"]["kind"] == "donchian_breakout"
    assert status["run"]["strategy"]["lines"] == []
    assert "fast" not in status["run"]["strategy"]


def test_chart_strategy_draws_smas_only_for_the_sma_crossover() -> None:
    user = chart_strategy({"strategy_kind": "momentum.py:Momentum",
                           "strategy_params": {"lookback": 50, "fast": 3}})
    assert user.sma is None and user.to_builtins()["lines"] == [] and user.bar_seconds == 1
    sma = chart_strategy({"strategy_kind": "sma_cross",
                          "strategy_params": {"fast": 3, "slow": 30, "bar_seconds": 0}})
    assert sma.sma is not None and (sma.sma.fast, sma.sma.slow, sma.bar_seconds) == (3, 30, 0)
    # before run identities: the recorded configuration's [strategy] table (no kind: the SMA)
    legacy = chart_strategy({"config": {"strategy": {"fast": 4, "slow": 9}}})
    assert legacy.kind == "sma_cross" and legacy.sma is not None and legacy.sma.slow == 9
    legacy_donchian = chart_strategy({"config": {"strategy": {"kind": "donchian_breakout"}}})
    assert legacy_donchian.sma is None
    # values the chart cannot use fall back to the defaults, never an error
    odd = chart_strategy({"strategy_kind": "sma_cross",
                          "strategy_params": {"fast": 30, "slow": 20, "bar_seconds": -1}})
    assert odd.sma is not None and (odd.sma.fast, odd.sma.slow, odd.bar_seconds) == (5, 20, 1)
    assert chart_strategy(None).kind == "sma_cross"
    assert chart_strategy({"strategy_kind": 7, "strategy_params": "x"}).kind == "sma_cross"


async def test_prices_unknown_symbol_is_empty_not_error(app: Any) -> None:
    data = await _get(app, "/api/prices", "symbol=ETHUSDT")
    assert data["bars"] == [] and data["signals"] == []


async def test_portfolio_equals_fills_recomputed_exactly(app: Any, replay_db: Path) -> None:
    portfolio = await _get(app, "/api/portfolio")
    with sqlite3.connect(replay_db) as conn:
        rows = conn.execute("SELECT cash_delta, position_delta, fee FROM fills").fetchall()
    cash = sum((Decimal(r[0]) for r in rows), Decimal(0))
    position = sum((Decimal(r[1]) for r in rows), Decimal(0))
    fees = sum((Decimal(r[2]) for r in rows), Decimal(0))
    assert Decimal(portfolio["cash"]) == cash
    assert Decimal(portfolio["fees"]) == fees
    assert portfolio["fill_count"] == len(rows) == 15
    [pos] = portfolio["positions"]
    assert Decimal(pos["qty"]) == position
    mark = Decimal(portfolio["marks"]["BTCUSDT"])
    assert Decimal(portfolio["equity"]) == cash + position * mark
    # realised + unrealised - fees == equity, exactly (the engine's ledger keeps it so)
    parts = (Decimal(portfolio["realized_pnl"]) + Decimal(portfolio["unrealized_pnl"])
             - fees)
    assert parts == Decimal(portfolio["equity"])


async def test_portfolio_agrees_with_hybrid_engine_report(app: Any, replay_db: Path) -> None:
    portfolio = await _get(app, "/api/portfolio")
    with sqlite3.connect(replay_db) as conn:
        report = build_report(conn).to_builtins()
    assert report["ok"]
    assert portfolio["cash"] == report["cash"]
    assert portfolio["fees"] == report["fees"]
    assert portfolio["realized_pnl"] == report["realised_pnl"]
    assert portfolio["unrealized_pnl"] == report["unrealised_pnl"]
    assert portfolio["equity"] == report["equity"]
    assert {p["symbol"]: p["qty"] for p in portfolio["positions"]} == report["positions"]
    assert portfolio["conservation_violations"] == 0


async def test_portfolio_fill_breaking_conservation_is_counted_not_booked(
    replay_db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "broken.db"
    with sqlite3.connect(replay_db) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
        dst.execute("UPDATE fills SET cash_delta = '0'"
                    " WHERE rowid = (SELECT MAX(rowid) FROM fills)")
    portfolio = await _get(build_app(str(path)), "/api/portfolio")
    assert portfolio["conservation_violations"] == 1
    assert portfolio["fill_count"] == 14


async def test_equity_curve_ends_at_portfolio_equity(app: Any) -> None:
    curve = await _get(app, "/api/equity", "points=50")
    portfolio = await _get(app, "/api/portfolio")
    assert curve["columns"] == ["ts_event", "equity"]
    assert 2 <= len(curve["points"]) <= 51
    assert curve["points"][0][1] == "0"  # flat before the first fill
    assert curve["points"][-1][1] == portfolio["equity"]
    times = [p[0] for p in curve["points"]]
    assert times == sorted(times)


async def test_orders_carry_transitions_in_sequence(app: Any) -> None:
    orders = (await _get(app, "/api/orders", "limit=5"))["orders"]
    assert len(orders) == 5
    times = [o["ts_event"] for o in orders]
    assert times == sorted(times, reverse=True)
    for order in orders:
        states = [t["state"] for t in order["transitions"]]
        assert states == ["SUBMITTED", "ACCEPTED", "FILLED"]
        assert [t["seq"] for t in order["transitions"]] == [0, 1, 2]
        assert order["state"] == "FILLED" and order["filled_qty"] == order["qty"]


async def test_record_lists_respect_limit_symbol_and_window(app: Any) -> None:
    signals = (await _get(app, "/api/signals", "limit=3&symbol=BTCUSDT"))["signals"]
    assert len(signals) == 3
    assert set(signals[0]) == {"signal_id", "symbol", "side", "ts_event", "ts_recv", "price",
                               "cause_id", "notional", "reason"}
    assert (await _get(app, "/api/signals", "symbol=ETHUSDT"))["signals"] == []
    fills = (await _get(app, "/api/fills", "limit=500"))["fills"]
    assert len(fills) == 15
    t = fills[7]["ts_event"]
    window = (await _get(app, "/api/fills", f"from_ns={t}&to_ns={t + 1}"))["fills"]
    assert window and all(f["ts_event"] == t for f in window)


async def test_vetoes_carry_reason_and_filter_by_it(app: Any) -> None:
    vetoes = (await _get(app, "/api/vetoes"))["vetoes"]
    assert [v["reason"] for v in vetoes] == ["NO_POSITION"]
    assert vetoes[0]["detail"]
    assert (await _get(app, "/api/vetoes", "reason=RISK_CAP"))["vetoes"] == []


async def test_runs_and_heartbeats_list_the_replay(app: Any) -> None:
    runs = (await _get(app, "/api/runs"))["runs"]
    assert len(runs) == 1 and runs[0]["pragmas"]["journal_mode"] == "wal"
    beats = (await _get(app, "/api/heartbeats", f"run_id={runs[0]['run_id']}"))["heartbeats"]
    assert beats and beats[0]["final"] is True


@pytest.mark.parametrize(
    ("path", "query", "needle"),
    [
        ("/api/signals", "limit=0", "limit must be between 1 and 500"),
        ("/api/signals", "limit=abc", "limit must be an integer"),
        ("/api/fills", "limit=100000", "limit must be between"),
        ("/api/orders", "limt=5", "unknown parameter(s): limt"),
        ("/api/signals", "symbol=BTC%27%3B%20DROP%20TABLE%20ticks", "symbol must be"),
        ("/api/fills", "from_ns=10&to_ns=5", "from_ns (10) must be before to_ns (5)"),
        ("/api/fills", "from_ns=-1", "from_ns must be between"),
        ("/api/prices", "", "symbol is required"),
        ("/api/prices", "symbol=BTCUSDT&points=1", "points must be between 2 and 2000"),
        ("/api/prices", "symbol=BTCUSDT&from_ns=0", "window spans"),
        ("/api/vetoes", "reason=nope", "reason must be"),
        ("/api/heartbeats", "run_id=a%20b", "run_id must be"),
        ("/healthz", "verbose=1", "unknown parameter(s): verbose"),
    ],
)
async def test_api_bad_parameter_is_400_with_message(
    app: Any, path: str, query: str, needle: str
) -> None:
    reply = await asgi_get(app, path, query)
    assert reply.status == 400
    assert needle in reply.json()["error"]
    assert "Traceback" not in reply.text


async def test_unknown_route_404_and_post_405(app: Any) -> None:
    assert (await asgi_get(app, "/api/nothing")).status == 404
    assert (await asgi_get(app, "/static/../../etc/passwd")).status == 404
    assert (await asgi_get(app, "/api/status", method="POST")).status == 405


async def test_page_and_assets_served_without_external_references(app: Any) -> None:
    page = await asgi_get(app, "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    script = await asgi_get(app, "/static/app.js")
    style = await asgi_get(app, "/static/style.css")
    assert script.status == 200 and style.status == 200
    for text in (page.text, script.text, style.text):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


async def test_readonly_connection_refuses_writes_and_file_is_unchanged(
    app: Any, replay_db: Path
) -> None:
    before = _file_digest(replay_db)
    for path in ("/api/status", "/api/portfolio", "/metrics", "/healthz"):
        await asgi_get(app, path)
    with ReadOnlyDatabase(replay_db).connect() as conn:
        for sql in (
            "INSERT INTO vetoes VALUES ('x', 'x', 'X', 'RISK_CAP', '', 0, NULL)",
            "DELETE FROM ticks",
            "CREATE TABLE evil (x)",
        ):
            with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
                conn.execute(sql)
    assert _file_digest(replay_db) == before


async def test_missing_database_is_503_and_healthz_names_it(tmp_path: Path) -> None:
    app = build_app(str(tmp_path / "absent.db"))
    reply = await asgi_get(app, "/api/status")
    assert reply.status == 503 and "does not exist" in reply.json()["error"]
    health = await asgi_get(app, "/healthz")
    assert health.status == 503 and "does not exist" in health.json()["problems"][0]
    assert not (tmp_path / "absent.db").exists()


async def test_internal_error_is_500_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE fills ({', '.join(columns_of(Fill))})")
        conn.execute("INSERT INTO fills VALUES ('f', 'o', 'X', 'BUY', '1', 'not-a-number',"
                     " '0', '0', '1', 0)")
        conn.execute("CREATE TABLE ticks (symbol, ts_event, price)")
    reply = await asgi_get(build_app(str(path)), "/api/portfolio")
    assert reply.status == 500
    assert reply.json() == {"error": "internal error (details are in the dashboard's log)"}
    # Answered by Starlette's outermost error middleware, yet with the security headers.
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_dashboard_process_binds_loopback_serves_and_stops_cleanly_on_sigint(
    replay_db: Path,
) -> None:
    server = EngineProcess(["dashboard", "--db", str(replay_db), "--port", "0"])
    try:
        line = await trio.to_thread.run_sync(
            lambda: server.wait_for(lambda e: e.get("event") == "dashboard_listening", 30)
        )
        [url] = line["urls"]
        assert url.startswith("http://127.0.0.1:") and line["read_only"] is True
        with trio.fail_after(30):
            reply = await http_get(url + "/api/symbols")
        assert reply.status == 200 and reply.json()["symbols"][0]["symbol"] == "BTCUSDT"
        server.send_signal(signal.SIGINT)
        assert await trio.to_thread.run_sync(server.finish) == 0
        assert server.events("dashboard_stopped")
    finally:
        server.kill()


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_dashboard_process_port_out_of_range_config_exit_12_no_traceback(
    tmp_path: Path, port: str
) -> None:
    done = run_engine(["dashboard", "--db", str(tmp_path / "e.db"), "--port", port], timeout=30)
    assert done.returncode == 12, done.stderr[-500:]
    assert "Traceback" not in done.stderr
    assert f"--port: {port} is not a TCP port (0-65535)" in done.stderr


def test_dashboard_process_empty_host_config_exit_12_binds_nothing(tmp_path: Path) -> None:
    done = run_engine(["dashboard", "--db", str(tmp_path / "e.db"), "--host", ""], timeout=30)
    assert done.returncode == 12, done.stderr[-500:]
    assert "--host: empty" in done.stderr
    assert "dashboard_listening" not in done.stdout


# -- who may ask: Host: header (DNS rebinding) and security headers -------------------


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8080", 200),
        ("127.0.0.1", 200),
        ("localhost:8080", 200),
        ("LocalHost", 200),
        ("[::1]:8080", 200),
        ("attacker.example:8080", 400),   # a rebinding page: its name now resolves to 127.0.0.1
        ("attacker.example", 400),
        ("127.0.0.1.attacker.example", 400),
        ("localhost.", 400),
        ("", 400),
        (None, 400),
        ("127.0.0.1:8080, evil", 400),
    ],
)
async def test_host_header_not_allowed_is_400_before_any_data(
    app: Any, host: str | None, status: int
) -> None:
    reply = await asgi_get(app, "/api/portfolio", host=host)
    assert reply.status == status, reply.text
    if status != 200:
        assert "cash" not in reply.text and "Invalid host header" in reply.text


async def test_host_header_bound_name_and_allow_list_answered_others_refused(
    replay_db: Path,
) -> None:
    app = build_app(str(replay_db),
                    hosts=allowed_hosts("0.0.0.0", ["box.lan", "*.corp.example"]))
    for host in ("box.lan:8080", "dash.corp.example", "127.0.0.1:8080"):
        assert (await asgi_get(app, "/api/symbols", host=host)).status == 200, host
    for host in ("0.0.0.0:8080", "corp.example", "box.lan.evil.example", "evil.example"):
        assert (await asgi_get(app, "/api/symbols", host=host)).status == 400, host
    bound = build_app(str(replay_db), hosts=allowed_hosts("10.1.2.3"))
    assert (await asgi_get(bound, "/api/symbols", host="10.1.2.3:8080")).status == 200
    assert (await asgi_get(bound, "/api/symbols", host="10.1.2.4:8080")).status == 400


async def test_host_refusals_counted_and_sampled_in_the_log(
    replay_db: Path, log_lines: Captured
) -> None:
    app = build_app(str(replay_db))
    for i in range(REFUSAL_LOG_FIRST + 5):
        assert (await asgi_get(app, "/api/status", host=f"evil{i}.example")).status == 400
    assert (await asgi_get(app, "/api/status", host="localhost")).status == 200
    assert (await asgi_get(app, "/api/signals", "limit=0")).status == 400  # not a host refusal
    refused = log_lines.events("dashboard_host_refused")
    assert [e["refused_total"] for e in refused] == list(range(1, REFUSAL_LOG_FIRST + 1))
    assert refused[0]["host"] == "evil0.example" and refused[0]["path"] == "/api/status"


def test_allowed_hosts_refuses_what_is_no_host_name() -> None:
    assert allowed_hosts("::1") == ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts("0.0.0.0", ["FE80::1", "Box.Lan"])[3:] == ["[fe80::1]", "box.lan"]
    for bad in ("a b", "*", "ex*ample.com", "*.", "x" * 300, "evil.example/", "host:80", ""):
        with pytest.raises(ValueError, match="is not a host name"):
            allowed_hosts("127.0.0.1", [bad])


@pytest.mark.parametrize(
    ("path", "query", "method", "host", "status"),
    [
        ("/", "", "GET", "127.0.0.1", 200),
        ("/static/app.js", "", "GET", "127.0.0.1", 200),
        ("/static/style.css", "", "GET", "127.0.0.1", 200),
        ("/api/status", "", "GET", "127.0.0.1", 200),
        ("/metrics", "", "GET", "127.0.0.1", 200),
        ("/healthz", "", "GET", "127.0.0.1", 503),
        ("/api/signals", "limit=0", "GET", "127.0.0.1", 400),
        ("/api/nothing", "", "GET", "127.0.0.1", 404),
        ("/api/status", "", "POST", "127.0.0.1", 405),
        ("/api/status", "", "GET", "evil.example", 400),
    ],
)
async def test_every_response_carries_nosniff_and_csp(
    app: Any, path: str, query: str, method: str, host: str, status: int
) -> None:
    reply = await asgi_get(app, path, query, method=method, host=host)
    assert reply.status == status
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert reply.headers["x-frame-options"] == "DENY"


def test_csp_allows_only_same_origin_script_style_and_api() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'"  # no 'unsafe-inline', no other origin
    assert directives["frame-ancestors"] == "'none'"


def _raw_get(port: int, host_header: str) -> tuple[int, dict[str, str], bytes]:
    """A real HTTP/1.1 request with a chosen ``Host:`` header (urllib always sends its own)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", "/api/portfolio", skip_host=True)
        conn.putheader("Host", host_header)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


async def test_real_server_refuses_rebound_host_and_answers_loopback(replay_db: Path) -> None:
    async with trio.open_nursery() as nursery:
        url = await serve_dashboard(nursery, replay_db)
        port = int(url.rsplit(":", 1)[1])
        with trio.fail_after(30):
            evil = await trio.to_thread.run_sync(_raw_get, port, f"rebind.example:{port}")
            good = await trio.to_thread.run_sync(_raw_get, port, f"127.0.0.1:{port}")
        assert evil[0] == 400 and b"cash" not in evil[2]
        assert evil[1]["x-content-type-options"] == "nosniff"
        assert good[0] == 200 and b"cash" in good[2]
        assert good[1]["content-security-policy"] == CONTENT_SECURITY_POLICY
        nursery.cancel_scope.cancel()


def test_dashboard_process_bad_allow_host_config_exit_12_binds_nothing(tmp_path: Path) -> None:
    done = run_engine(["dashboard", "--db", str(tmp_path / "e.db"), "--port", "0",
                       "--allow-host", "ex*ample.com"], timeout=30)
    assert done.returncode == 12, done.stderr[-500:]
    assert "Traceback" not in done.stderr
    assert "--allow-host: 'ex*ample.com' is not a host name" in done.stderr
    assert "dashboard_listening" not in done.stdout
