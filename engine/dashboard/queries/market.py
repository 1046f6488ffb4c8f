"""Market data: traded symbols, last prices, and the price chart of the run's strategy.

The chart's bars are the strategy's (its ``bar_seconds``); the fast and slow SMAs
are added only when the strategy is the SMA crossover (``ChartStrategy.sma``):
another built-in or a user strategy gets its bars and signals, and no line it
never compared.

Reads the ``ticks`` table only through index seeks and bounded ranges: a price
window holds at most ``MAX_BARS`` strategy bars, its SMA warm-up looks back a
bounded number of buckets, and the series is thinned to at most ``points``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from decimal import Context, Decimal
from typing import Any, Final

from engine.core.events import NS_PER_S
from engine.dashboard.queries.bounds import MAX_LIMIT
from engine.dashboard.queries.runs import ChartStrategy

MAX_BARS: Final = 20_000
"""Most strategy bars one price window may span. A wider window is a 400 naming the bound."""

WARMUP_LOOKBACK: Final = 4
"""The SMA warm-up before a window looks back at most this many times ``slow`` bars."""

DEFAULT_WINDOW_S: Final = 900
"""A price chart without ``from_ns`` shows this much before its end (data time, not wall time)."""

MAX_SYMBOLS: Final = 50
"""Most distinct symbols listed (a loose index scan stops there)."""

_SMA_CTX: Final = Context(prec=40)
SMA_PLACES: Final = Decimal("1e-8")


class WindowTooWide(ValueError):
    """Raised when a requested window spans more than ``MAX_BARS`` bars (a 400)."""


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
    strategy: ChartStrategy,
) -> dict[str, Any]:
    """Bar closes of one symbol with its signals, and the SMA crossover's fast/slow SMAs
    when that is the strategy.

    Bars are the strategy's (``bar_seconds`` buckets; each close is the bucket's
    last trade by event time; trade bars when ``bar_seconds == 0``), so the
    SMAs drawn are the ones the crossover compared. ``slow - 1`` bars before
    the window are read too, so the averages are defined from its first bar.
    The series is then thinned to at most ``points`` points for drawing.
    """
    sma = strategy.sma
    bar_ns = strategy.bar_seconds * NS_PER_S
    last = last_tick(conn, symbol)
    if last is None:
        return _empty_prices(symbol, strategy, from_ns, to_ns)
    end = to_ns if to_ns is not None else int(last["last_ts_event"])
    start = from_ns if from_ns is not None else end - DEFAULT_WINDOW_S * NS_PER_S
    warmup = sma.slow - 1 if sma is not None else 0
    if bar_ns > 0:
        start -= start % bar_ns  # whole bars only
        span_bars = (end - start) // bar_ns + 1
        if span_bars > MAX_BARS:
            raise WindowTooWide(
                f"window spans {span_bars} bars of {strategy.bar_seconds} s; at most {MAX_BARS}"
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
    series: list[list[Any]] = [[ts, str(close)] for ts, close in bars]
    if sma is not None:
        closes = [c for _, c in bars]
        for row, f, s in zip(series, _sma(closes, sma.fast), _sma(closes, sma.slow), strict=True):
            row += [f, s]
    series = series[n_warm:]
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
        **_chart_head(symbol, strategy),
        "from_ns": start,
        "to_ns": end,
        "bars": series,
        "thinned_by": step,
        "truncated": truncated,
        "signals": [
            {"signal_id": s, "side": side, "price": p, "ts_event": t}
            for s, side, p, t in reversed(sigs)
        ],
    }


def _chart_head(symbol: str, strategy: ChartStrategy) -> dict[str, Any]:
    """What a price chart says about its strategy: ``columns`` has the SMA columns only
    for the SMA crossover (``fast``/``slow`` are ``null`` otherwise)."""
    sma = strategy.sma
    return {
        "symbol": symbol,
        "strategy": {"kind": strategy.kind, "params": strategy.params},
        "bar_seconds": strategy.bar_seconds,
        "fast": sma.fast if sma is not None else None,
        "slow": sma.slow if sma is not None else None,
        "columns": ["ts_event", "close", *(("sma_fast", "sma_slow") if sma else ())],
    }


def _empty_prices(symbol: str, strategy: ChartStrategy, from_ns: int | None, to_ns: int | None
                  ) -> dict[str, Any]:
    return {
        **_chart_head(symbol, strategy), "from_ns": from_ns, "to_ns": to_ns, "bars": [],
        "thinned_by": 1, "truncated": False, "signals": [],
    }
