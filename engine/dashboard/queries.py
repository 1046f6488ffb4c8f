"""Bounded, parametrised read-only queries behind the dashboard's JSON API.

Every function takes an open read-only connection and already-validated
arguments (``engine.dashboard.params``), returns JSON-ready data (prices and
money as decimal *strings*, times as integer ns) and reads a bounded amount:

* lists are capped by ``limit`` (at most ``MAX_LIMIT`` rows);
* time series are cut into at most ``MAX_POINTS`` points;
* a price window holds at most ``MAX_BARS`` strategy bars;
* "latest" lookups are index seeks (``ORDER BY ... DESC LIMIT 1``), never scans.

Values are bound as SQL parameters, never formatted into SQL.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any, Final

from engine.config import StrategySection
from engine.dashboard.portfolio import FILL_COLUMNS as LEDGER_COLUMNS
from engine.dashboard.portfolio import Book

MAX_LIMIT: Final = 500
"""Most rows any list endpoint returns. Larger ``limit`` is a 400."""

DEFAULT_LIMIT: Final = 50

MAX_POINTS: Final = 2000
"""Most points in a chart series. Larger ``points`` is a 400."""

DEFAULT_POINTS: Final = 600

MAX_BARS: Final = 20_000
"""Most strategy bars one price window may span. A wider window is a 400 naming the bound."""

WARMUP_LOOKBACK: Final = 4
"""The SMA warm-up before a window looks back at most this many times ``slow`` bars."""

DEFAULT_WINDOW_S: Final = 900
"""A price chart without ``from_ns`` shows this much before its end (data time, not wall time)."""

MAX_SYMBOLS: Final = 50
"""Most distinct symbols listed (a loose index scan stops there)."""

MAX_LEDGER_FILLS_PER_READ: Final = 50_000
"""Fills the ledger cache reads per chunk; it reads only fills it has not seen."""

MAX_EQUITY_FILLS: Final = 200_000
"""Most fills the equity curve replays; past it the curve stops early and says ``truncated``."""

NS_PER_S: Final = 1_000_000_000

SYMBOL_AT: Final = LEDGER_COLUMNS.index("symbol")
TS_AT: Final = LEDGER_COLUMNS.index("ts_event")

_SMA_CTX: Final = Context(prec=40)
SMA_PLACES: Final = Decimal("1e-8")


class WindowTooWide(ValueError):
    """Raised when a requested window spans more than ``MAX_BARS`` bars (a 400)."""


# -- runs and heartbeats ----------------------------------------------------------


RUN_COLUMNS: Final = (
    "run_id", "pid", "command", "mode", "started_wall_ns", "ended_wall_ns", "exit_code",
    "clean_shutdown", "code_version", "config_json", "pragmas_json",
)
HEARTBEAT_COLUMNS: Final = (
    "hb_id", "run_id", "ts_wall_ns", "interval_s", "final", "mode", "trading_state", "counters",
)


def _run_dict(row: Sequence[Any]) -> dict[str, Any]:
    run = dict(zip(RUN_COLUMNS, row, strict=True))
    run["clean_shutdown"] = bool(run["clean_shutdown"])
    run["config"] = _json_or_none(run.pop("config_json"))
    run["pragmas"] = _json_or_none(run.pop("pragmas_json"))
    return run


def _heartbeat_dict(row: Sequence[Any]) -> dict[str, Any]:
    hb = dict(zip(HEARTBEAT_COLUMNS, row, strict=True))
    hb["final"] = bool(hb["final"])
    counters = _json_or_none(hb["counters"])
    hb["counters"] = counters if isinstance(counters, dict) else {}
    return hb


def _json_or_none(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def latest_run(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The run recorded last (insertion order: immune to wall-clock steps between runs)."""
    row = conn.execute(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
        " ORDER BY rowid DESC LIMIT 1"
    ).fetchone()
    return None if row is None else _run_dict(row)


def runs(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
        " ORDER BY rowid DESC LIMIT ?",
        (limit,),
    ).fetchall()
    out = [_run_dict(r) for r in rows]
    for run in out:
        run.pop("config", None)
    return out


def latest_heartbeats(
    conn: sqlite3.Connection, run_id: str | None, n: int = 2
) -> list[dict[str, Any]]:
    """The newest ``n`` heartbeats (of ``run_id`` when given), newest first."""
    cols = ", ".join(HEARTBEAT_COLUMNS)
    if run_id is None:
        rows = conn.execute(
            f"SELECT {cols} FROM heartbeats ORDER BY hb_id DESC LIMIT ?", (n,)
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {cols} FROM heartbeats WHERE run_id = ? ORDER BY hb_id DESC LIMIT ?",
            (run_id, n),
        ).fetchall()
    return [_heartbeat_dict(r) for r in rows]


def heartbeats(
    conn: sqlite3.Connection, limit: int, run_id: str | None, since_wall_ns: int | None
) -> list[dict[str, Any]]:
    """Heartbeats newest first, optionally of one run and after a wall-clock time."""
    sql = f"SELECT {', '.join(HEARTBEAT_COLUMNS)} FROM heartbeats WHERE 1 = 1"
    args: list[Any] = []
    if run_id is not None:
        sql += " AND run_id = ?"
        args.append(run_id)
    if since_wall_ns is not None:
        sql += " AND ts_wall_ns >= ?"
        args.append(since_wall_ns)
    sql += " ORDER BY hb_id DESC LIMIT ?"
    args.append(limit)
    return [_heartbeat_dict(r) for r in conn.execute(sql, args).fetchall()]


def counter_rates(newer: dict[str, Any], older: dict[str, Any] | None) -> dict[str, float]:
    """Per-second rate of each counter between two heartbeats of the same run.

    Rates are display figures (floats are fine here: nothing decides on them).
    """
    if older is None or older["run_id"] != newer["run_id"]:
        return {}
    dt_s = (newer["ts_wall_ns"] - older["ts_wall_ns"]) / NS_PER_S
    if dt_s <= 0:
        return {}
    rates: dict[str, float] = {}
    for name, value in newer["counters"].items():
        before = older["counters"].get(name)
        if isinstance(value, int) and isinstance(before, int):
            rates[name] = round((value - before) / dt_s, 3)
    return rates


def strategy_params(run: dict[str, Any] | None) -> StrategySection:
    """The strategy settings the latest run recorded (defaults when it recorded none)."""
    section = (run or {}).get("config") or {}
    raw = section.get("strategy") if isinstance(section, dict) else None
    if not isinstance(raw, dict):
        return StrategySection()
    try:
        return StrategySection(
            fast=int(raw.get("fast", 5)),
            slow=int(raw.get("slow", 20)),
            bar_seconds=int(raw.get("bar_seconds", 1)),
        )
    except (TypeError, ValueError):
        return StrategySection()


# -- market data ------------------------------------------------------------------


def symbols(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Distinct traded symbols with their last price (a loose index scan, then seeks)."""
    rows = conn.execute(
        """WITH RECURSIVE s(symbol, n) AS (
               SELECT MIN(symbol), 1 FROM ticks
               UNION ALL
               SELECT (SELECT MIN(symbol) FROM ticks WHERE symbol > s.symbol), n + 1
               FROM s WHERE s.symbol IS NOT NULL AND n < ?
           )
           SELECT symbol FROM s WHERE symbol IS NOT NULL""",
        (MAX_SYMBOLS,),
    ).fetchall()
    out = []
    for (symbol,) in rows:
        last = last_tick(conn, symbol)
        out.append({"symbol": symbol, **(last or {})})
    return out


def last_tick(conn: sqlite3.Connection, symbol: str, at_or_before_ns: int | None = None
              ) -> dict[str, Any] | None:
    if at_or_before_ns is None:
        row = conn.execute(
            "SELECT price, ts_event FROM ticks WHERE symbol = ?"
            " ORDER BY ts_event DESC, rowid DESC LIMIT 1",
            (symbol,),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT price, ts_event FROM ticks WHERE symbol = ? AND ts_event <= ?"
            " ORDER BY ts_event DESC, rowid DESC LIMIT 1",
            (symbol, at_or_before_ns),
        ).fetchone()
    return None if row is None else {"last_price": row[0], "last_ts_event": row[1]}


def marks(conn: sqlite3.Connection, syms: Sequence[str], at_or_before_ns: int | None = None
          ) -> dict[str, Decimal]:
    out = {}
    for symbol in syms:
        last = last_tick(conn, symbol, at_or_before_ns)
        if last is not None:
            out[symbol] = Decimal(last["last_price"])
    return out


def tick_span(conn: sqlite3.Connection) -> tuple[int, int] | None:
    """Earliest and latest ``ts_event`` of all ticks (two index seeks)."""
    first = conn.execute("SELECT MIN(ts_event) FROM ticks").fetchone()[0]
    last = conn.execute("SELECT MAX(ts_event) FROM ticks").fetchone()[0]
    if first is None or last is None:
        return None
    return int(first), int(last)


def _sma(closes: Sequence[Decimal], n: int) -> list[str | None]:
    out: list[str | None] = []
    total = Decimal(0)
    for i, close in enumerate(closes):
        total += close
        if i >= n:
            total -= closes[i - n]
        out.append(str(_SMA_CTX.divide(total, n).quantize(SMA_PLACES)) if i >= n - 1 else None)
    return out


def prices(
    conn: sqlite3.Connection,
    symbol: str,
    *,
    from_ns: int | None,
    to_ns: int | None,
    points: int,
    params: StrategySection,
) -> dict[str, Any]:
    """Bar closes of one symbol with the strategy's fast/slow SMAs and its signals.

    Bars are the strategy's (``bar_seconds`` buckets; each close is the bucket's
    last trade by event time; trade bars when ``bar_seconds == 0``), so the
    SMAs drawn are the ones the crossover compared. ``slow - 1`` bars before
    the window are read too, so the averages are defined from its first bar.
    The series is then thinned to at most ``points`` points for drawing.
    """
    bar_ns = params.bar_seconds * NS_PER_S
    last = last_tick(conn, symbol)
    if last is None:
        return _empty_prices(symbol, params, from_ns, to_ns)
    end = to_ns if to_ns is not None else int(last["last_ts_event"])
    start = from_ns if from_ns is not None else end - DEFAULT_WINDOW_S * NS_PER_S
    warmup = params.slow - 1
    if bar_ns > 0:
        start -= start % bar_ns  # whole bars only
        span_bars = (end - start) // bar_ns + 1
        if span_bars > MAX_BARS:
            raise WindowTooWide(
                f"window spans {span_bars} bars of {params.bar_seconds} s; at most {MAX_BARS}"
                " (narrow from_ns/to_ns)"
            )
        # A bar's close is its bucket's last trade in arrival order, as in the strategy;
        # rows are stored in arrival order, and SQLite returns the bare column `price`
        # from the row holding MAX(rowid).
        rows = conn.execute(
            "SELECT ts_event / ? AS bucket, price, MAX(rowid) FROM ticks"
            " WHERE symbol = ? AND ts_event >= ? AND ts_event <= ? GROUP BY bucket ORDER BY bucket",
            (bar_ns, symbol, start, end),
        ).fetchall()
        # Warm-up bars for the SMAs; looking back at most WARMUP_LOOKBACK x as many
        # buckets bounds the read when the market was quiet before the window.
        before = conn.execute(
            "SELECT ts_event / ? AS bucket, price, MAX(rowid) FROM ticks"
            " WHERE symbol = ? AND ts_event < ? AND ts_event >= ?"
            " GROUP BY bucket ORDER BY bucket DESC LIMIT ?",
            (bar_ns, symbol, start, start - WARMUP_LOOKBACK * warmup * bar_ns, warmup),
        ).fetchall() if warmup > 0 else []
        bars = [((b + 1) * bar_ns, Decimal(p)) for b, p, _ in reversed(before)]
        n_warm = len(bars)
        bars += [((b + 1) * bar_ns, Decimal(p)) for b, p, _ in rows]
        truncated = False
    else:
        rows = conn.execute(
            "SELECT ts_event, price FROM ticks WHERE symbol = ? AND ts_event >= ? AND ts_event <= ?"
            " ORDER BY ts_event DESC LIMIT ?",
            (symbol, start, end, MAX_BARS + warmup + 1),
        ).fetchall()
        truncated = len(rows) > MAX_BARS + warmup
        rows = rows[: MAX_BARS + warmup]
        rows.reverse()
        bars = [(int(t), Decimal(p)) for t, p in rows]
        n_warm = min(warmup, max(0, len(bars) - 1)) if truncated else 0
    closes = [c for _, c in bars]
    fast = _sma(closes, params.fast)
    slow = _sma(closes, params.slow)
    series = [
        [ts, str(close), f, s]
        for (ts, close), f, s in zip(bars, fast, slow, strict=True)
    ][n_warm:]
    step = max(1, -(-len(series) // points))
    if step > 1:
        # Keep every step-th bar and always the last one (the current price).
        thinned = series[::step]
        if thinned[-1] is not series[-1]:
            thinned.append(series[-1])
        series = thinned
    sigs = conn.execute(
        "SELECT signal_id, side, price, ts_event FROM signals"
        " WHERE symbol = ? AND ts_event >= ? AND ts_event <= ? ORDER BY ts_event DESC LIMIT ?",
        (symbol, start, end + bar_ns, MAX_LIMIT),
    ).fetchall()
    return {
        "symbol": symbol,
        "bar_seconds": params.bar_seconds,
        "fast": params.fast,
        "slow": params.slow,
        "from_ns": start,
        "to_ns": end,
        "columns": ["ts_event", "close", "sma_fast", "sma_slow"],
        "bars": series,
        "thinned_by": step,
        "truncated": truncated,
        "signals": [
            {"signal_id": s, "side": side, "price": p, "ts_event": t}
            for s, side, p, t in reversed(sigs)
        ],
    }


def _empty_prices(symbol: str, params: StrategySection, from_ns: int | None, to_ns: int | None
                  ) -> dict[str, Any]:
    return {
        "symbol": symbol, "bar_seconds": params.bar_seconds, "fast": params.fast,
        "slow": params.slow, "from_ns": from_ns, "to_ns": to_ns,
        "columns": ["ts_event", "close", "sma_fast", "sma_slow"], "bars": [],
        "thinned_by": 1, "truncated": False, "signals": [],
    }


# -- trading records ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """The validated filters every record list accepts."""

    limit: int = DEFAULT_LIMIT
    symbol: str | None = None
    from_ns: int | None = None
    to_ns: int | None = None

    def where(self, extra: Sequence[tuple[str, Any]] = ()) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.symbol is not None:
            clauses.append("symbol = ?")
            args.append(self.symbol)
        if self.from_ns is not None:
            clauses.append("ts_event >= ?")
            args.append(self.from_ns)
        if self.to_ns is not None:
            clauses.append("ts_event <= ?")
            args.append(self.to_ns)
        for clause, value in extra:
            clauses.append(clause)
            args.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _select(conn: sqlite3.Connection, table: str, columns: Sequence[str], flt: RecordFilter,
            extra: Sequence[tuple[str, Any]] = ()) -> list[dict[str, Any]]:
    where, args = flt.where(extra)
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM {table}{where}"
        " ORDER BY ts_event DESC, rowid DESC LIMIT ?",
        [*args, flt.limit],
    ).fetchall()
    return [dict(zip(columns, r, strict=True)) for r in rows]


SIGNAL_COLUMNS: Final = ("signal_id", "symbol", "side", "ts_event", "ts_recv", "price", "cause_id")
VETO_COLUMNS: Final = ("veto_id", "signal_id", "symbol", "reason", "detail", "ts_event")
ORDER_COLUMNS: Final = (
    "order_id", "signal_id", "mode", "symbol", "side", "order_type", "qty", "price", "ts_event",
)
ORDER_EVENT_COLUMNS: Final = (
    "order_id", "seq", "state", "ts_event", "reason", "filled_qty", "leaves_qty",
)
FILL_COLUMNS: Final = (
    "fill_id", "order_id", "symbol", "side", "qty", "price", "fee", "cash_delta",
    "position_delta", "ts_event",
)


def signals(conn: sqlite3.Connection, flt: RecordFilter) -> list[dict[str, Any]]:
    return _select(conn, "signals", SIGNAL_COLUMNS, flt)


def vetoes(conn: sqlite3.Connection, flt: RecordFilter, reason: str | None) -> list[dict[str, Any]]:
    return _select(conn, "vetoes", VETO_COLUMNS, flt, [("reason = ?", reason)] if reason else [])


def fills(conn: sqlite3.Connection, flt: RecordFilter) -> list[dict[str, Any]]:
    return _select(conn, "fills", FILL_COLUMNS, flt)


def orders(conn: sqlite3.Connection, flt: RecordFilter) -> list[dict[str, Any]]:
    """Orders newest first, each with its transitions in sequence order and its state now."""
    out = _select(conn, "orders", ORDER_COLUMNS, flt)
    if not out:
        return out
    ids = [o["order_id"] for o in out]
    marks_sql = ", ".join("?" * len(ids))
    events: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for row in conn.execute(
        f"SELECT {', '.join(ORDER_EVENT_COLUMNS)} FROM order_events"
        f" WHERE order_id IN ({marks_sql}) ORDER BY order_id, seq",
        ids,
    ).fetchall():
        event = dict(zip(ORDER_EVENT_COLUMNS, row, strict=True))
        events[event.pop("order_id")].append(event)
    for order in out:
        order["transitions"] = events[order["order_id"]]
        last = order["transitions"][-1] if order["transitions"] else None
        order["state"] = None if last is None else last["state"]
        order["filled_qty"] = None if last is None else last["filled_qty"]
    return out


# -- the ledger --------------------------------------------------------------------


class LedgerCache:
    """The ledger over every fill, read incrementally (only fills not yet seen).

    Fills are append-only (``INSERT OR IGNORE``, never updated or deleted), so
    applying the rows past the last ``rowid`` seen keeps the ledger equal to a
    rebuild. When the table shrinks (a different database file) it rebuilds.
    Thread-safe: worker threads of concurrent requests share one cache.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._book = Book()
        self._last_rowid = 0

    def summary(self, conn: sqlite3.Connection) -> dict[str, Any]:
        """Positions, cash and PnL over every fill visible to ``conn``, marked at last prices."""
        with self._lock:
            self._catch_up(conn)
            marked = marks(conn, sorted(self._book.ledger.books))
            result = self._book.summary(marked)
        result["marks"] = {s: str(p) for s, p in marked.items()}
        return result

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        top = conn.execute("SELECT MAX(rowid) FROM fills").fetchone()[0] or 0
        if top < self._last_rowid:
            self._book = Book()
            self._last_rowid = 0
        while self._last_rowid < top:
            rows = conn.execute(
                f"SELECT rowid, {', '.join(LEDGER_COLUMNS)} FROM fills"
                " WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
                (self._last_rowid, top, MAX_LEDGER_FILLS_PER_READ),
            ).fetchall()
            if not rows:
                break
            self._book.apply_rows(r[1:] for r in rows)
            self._last_rowid = rows[-1][0]


def equity_curve(
    conn: sqlite3.Connection, *, from_ns: int | None, to_ns: int | None, points: int
) -> dict[str, Any]:
    """Equity (cash + positions at the last price) at ``points`` evenly spaced event times.

    Built from the fills (ordered by event time) and one index seek per symbol
    and point for the price, so its cost does not grow with the tick table.
    Defaults to the whole span of recorded ticks.
    """
    span = tick_span(conn)
    if span is None:
        return {"from_ns": from_ns, "to_ns": to_ns, "points": [], "fill_count": 0}
    start = from_ns if from_ns is not None else span[0]
    end = to_ns if to_ns is not None else span[1]
    fill_rows = conn.execute(
        f"SELECT {', '.join(LEDGER_COLUMNS)} FROM fills"
        " WHERE ts_event <= ? ORDER BY ts_event, rowid LIMIT ?",
        (end, MAX_EQUITY_FILLS + 1),
    ).fetchall()
    truncated = len(fill_rows) > MAX_EQUITY_FILLS
    fill_rows = fill_rows[:MAX_EQUITY_FILLS]
    book = Book()
    syms = sorted({r[SYMBOL_AT] for r in fill_rows})
    n = max(1, min(points, (end - start) or 1))
    step = max(1, (end - start) // n)
    out: list[list[Any]] = []
    i = 0
    for k in range(n + 1):
        t = min(end, start + k * step) if k < n else end
        while i < len(fill_rows) and fill_rows[i][TS_AT] <= t:
            book.apply_rows([fill_rows[i]])
            i += 1
        if out and out[-1][0] == t:
            continue
        equity = book.ledger.equity(marks(conn, syms, t)) if syms else Decimal(0)
        out.append([t, str(equity)])
    return {
        "from_ns": start,
        "to_ns": end,
        "columns": ["ts_event", "equity"],
        "points": out,
        "fill_count": len(fill_rows),
        "truncated": truncated,
    }
