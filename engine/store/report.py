"""The operator's audit of a database: positions, PnL, counts -- and conservation.

``build_report`` reads a database (read-only) and rebuilds everything from the
persisted records alone: the ledger from ``fills`` (the same ``Ledger`` the
engine uses), marks from the latest persisted tick of each symbol, order
outcomes from each order's last ``order_events`` row, vetoes by reason, and the
trading state from the last ``risk_states`` row.

Checks (any failure makes ``ok`` false and the CLI exit non-zero):

* **conservation** (I4): ``cash_delta + position_delta * price + fee == 0``
  exactly, for every row of ``fills`` (a value that is not a decimal fails);
* **fills vs orders**: the quantity filled according to each order's last
  transition equals the sum of its fills, and no order is overfilled -- a
  cancelled partial must not have been booked twice (S11).
"""

from __future__ import annotations

import decimal
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from engine.core.events import NS_PER_S, Fill, TradingState
from engine.core.ledger import Ledger
from engine.core.sizing import conserves
from engine.exits import ConfigError
from engine.store.figures import (
    SAMPLE_NS,
    Figures,
    Money,
    PricePoint,
    figures_builtins,
    finite_decimal,
    money_for,
    run_figures,
    trip_builtins,
)
from engine.store.restore import load_marks
from engine.store.rows import (
    count_by,
    has_column,
    has_table,
    record_of,
    row_count,
    select_rows,
)
from engine.store.runs import (
    SUMMARY_TABLES,
    RunRecord,
    count_runs,
    iso_ns,
    load_runs,
    previous_modes,
)

MAX_LISTED_PROBLEMS = 20
"""Problems listed by name in the report; the count covers all of them."""

MAX_REPORTED_RUNS = 20
"""Runs listed in a report (the latest ones); ``runs_total`` counts all of them."""

MAX_SHOWN_DECIMALS: Final = 20
"""Decimal places the audit's text shows. Cash, fees, positions and marks are exact
sums of fill products (8-decimal prices and quantities, a fee rate: at most about
20 places) and are shown exactly; only the pro-rata cost basis of a partial sale
is rounded at 40 digits (``engine.core.ledger.COST_CONTEXT``), and a realised PnL
carrying it is shown rounded to this many places, marked ``~``. ``--json`` keeps
every value's exact string."""


def shown(value: Decimal) -> str:
    """An audit amount for a person: exact, without trailing zeros or an exponent
    (``-0.2318132380800000000000000000`` -> ``-0.23181323808``, ``1E+2`` -> ``100``);
    past ``MAX_SHOWN_DECIMALS`` places rounded (half-even) to them and marked ``~``.
    For display only: nothing stored or digested passes through here. (Not
    ``Decimal.normalize``: it rounds to the context's 28 digits, silently.)"""
    if not value.is_finite():
        return str(value)
    approx = ""
    if -int(value.as_tuple().exponent) > MAX_SHOWN_DECIMALS:
        wide = decimal.Context(prec=len(value.as_tuple().digits) + 1,
                               rounding=decimal.ROUND_HALF_EVEN)
        rounded = value.quantize(Decimal(1).scaleb(-MAX_SHOWN_DECIMALS), context=wide)
        approx = "" if rounded == value else "~"
        value = rounded
    sign, digits, exponent = value.as_tuple()
    exponent = int(exponent)
    while exponent < 0 and len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    if not any(digits):
        return approx + "0"  # not "-0", not "0.00"
    return approx + format(Decimal((sign, digits, exponent)), "f")


@dataclass(slots=True)
class Report:
    positions: dict[str, Decimal] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    cash: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    realised_pnl: Decimal = Decimal(0)
    unrealised_pnl: Decimal = Decimal(0)
    equity: Decimal = Decimal(0)
    signals: int = 0
    orders_by_state: dict[str, int] = field(default_factory=dict)
    fills: int = 0
    vetoes_by_reason: dict[str, int] = field(default_factory=dict)
    trading_state: str = str(TradingState.ACTIVE)
    conservation_violations: int = 0
    fill_mismatches: int = 0
    problems: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    """Every mode the database's runs recorded (one, unless it predates the refusal rules)."""
    runs_total: int = 0
    runs: list[RunRecord] = field(default_factory=list)
    """The latest ``MAX_REPORTED_RUNS`` runs, oldest first."""
    run: RunFigures | None = None
    """The trader's figures of one run (``build_report(conn, run=...)``; the latest by default)."""

    @property
    def ok(self) -> bool:
        return self.conservation_violations == 0 and self.fill_mismatches == 0

    def to_builtins(self) -> dict[str, Any]:
        """JSON-able form: decimals as exact strings."""
        return {
            "ok": self.ok,
            "trading_state": self.trading_state,
            "positions": {k: str(v) for k, v in self.positions.items()},
            "marks": {k: str(v) for k, v in self.marks.items()},
            "cash": str(self.cash),
            "fees": str(self.fees),
            "realised_pnl": str(self.realised_pnl),
            "unrealised_pnl": str(self.unrealised_pnl),
            "equity": str(self.equity),
            "signals": self.signals,
            "orders_by_state": self.orders_by_state,
            "fills": self.fills,
            "vetoes_by_reason": self.vetoes_by_reason,
            "conservation_violations": self.conservation_violations,
            "fill_mismatches": self.fill_mismatches,
            "problems": self.problems,
            "modes": self.modes,
            "runs_total": self.runs_total,
            "runs": [r.to_builtins() for r in self.runs],
            "run": self.run.to_builtins() if self.run is not None else None,
        }

    def _mark(self, symbol: str) -> str:
        mark = self.marks.get(symbol)
        return "?" if mark is None else shown(mark)

    def to_text(self, *, trades: bool = False) -> str:
        head = [] if self.run is None else [*self.run.text_lines(trades=trades), "", "audit"]
        lines = [
            *head,
            f"mode              {', '.join(self.modes) or 'none recorded'}",
            f"trading state     {self.trading_state}",
            "positions         "
            + (
                ", ".join(f"{s} {shown(q)} @ {self._mark(s)}" for s, q in self.positions.items())
                or "none"
            ),
            f"cash              {shown(self.cash)}",
            f"fees              {shown(self.fees)}",
            f"realised PnL      {shown(self.realised_pnl)}",
            f"unrealised PnL    {shown(self.unrealised_pnl)}",
            f"equity            {shown(self.equity)}",
            f"signals           {self.signals}",
            "orders            "
            + (", ".join(f"{k} {v}" for k, v in self.orders_by_state.items()) or "none"),
            f"fills             {self.fills}",
            "vetoes            "
            + (", ".join(f"{k} {v}" for k, v in self.vetoes_by_reason.items()) or "none"),
            "conservation      "
            + (
                "OK"
                if self.conservation_violations == 0
                else f"FAILED for {self.conservation_violations} fill(s)"
            ),
            "fills vs orders   "
            + (
                "OK" if self.fill_mismatches == 0 else f"FAILED for {self.fill_mismatches} order(s)"
            ),
        ]
        lines.extend(f"  problem: {p}" for p in self.problems)
        listed = f" (latest {len(self.runs)} listed)" if len(self.runs) < self.runs_total else ""
        lines.append(f"runs              {self.runs_total}{listed}")
        lines.extend(f"  {run_line(r)}" for r in self.runs)
        return "\n".join(lines)


def _wall(ns: int | None) -> str:
    return "?" if ns is None else iso_ns(ns).replace(".000Z", "Z")


def counts_text(counts: dict[str, int]) -> str:
    """``"9757 ticks, 16 signals, 15 orders, 15 fills, 1 vetoes"``."""
    return ", ".join(f"{counts.get(t, 0)} {t}" for t in SUMMARY_TABLES)


def run_line(run: RunRecord) -> str:
    """One run for a person: id, command, mode, wall-clock span, exit, what it wrote."""
    if run.ended_wall_ns is None:
        end = "not ended (running, or killed)"
    else:
        end = f"{_wall(run.ended_wall_ns)} exit {run.exit_code}"
    counted = "" if run.counts_recorded else " (counted from run_id)"
    return (
        f"{run.run_id}  {run.command or '?'}  {run.mode or '?'}  "
        f"{_wall(run.started_wall_ns)} -> {end}: {counts_text(run.counts)}{counted}"
    )


def _note(report: Report, problem: str) -> None:
    if len(report.problems) < MAX_LISTED_PROBLEMS:
        report.problems.append(problem)


def _fill_from_row(row: tuple[Any, ...]) -> Fill | None:
    """A stored fill, or ``None`` when a value does not parse (reported, not booked)."""
    try:
        return record_of(Fill, row)
    except (InvalidOperation, ValueError, TypeError):
        return None


def _book_fills(conn: sqlite3.Connection, report: Report) -> tuple[Ledger, dict[str, Decimal]]:
    """Check every fill and book the ones that conserve; return the ledger and qty per order."""
    ledger = Ledger()
    filled: dict[str, Decimal] = {}
    for row in select_rows(conn, Fill, "ORDER BY rowid"):
        report.fills += 1
        fill = _fill_from_row(row)
        if fill is None or not conserves(
            fill.cash_delta, fill.position_delta, fill.price, fill.fee
        ):
            report.conservation_violations += 1
            _note(report, f"fill {row[0]}: cash_delta + position_delta * price + fee != 0")
            continue
        ledger.apply(fill)
        filled[fill.order_id] = filled.get(fill.order_id, Decimal(0)) + fill.qty
    return ledger, filled


def _check_orders(conn: sqlite3.Connection, report: Report, filled: dict[str, Decimal]) -> None:
    rows = conn.execute(
        "SELECT o.order_id, o.qty, e.state, e.filled_qty FROM orders o"
        " LEFT JOIN order_events e ON e.order_id = o.order_id"
        " AND e.seq = (SELECT MAX(seq) FROM order_events WHERE order_id = o.order_id)"
        " ORDER BY o.order_id"
    )
    states: Counter[str] = Counter()
    for order_id, qty, state, filled_qty in rows:
        states[state or "NO_EVENTS"] += 1
        booked = filled.get(order_id, Decimal(0))
        try:
            expected = Decimal(filled_qty) if filled_qty is not None else Decimal(0)
            too_much = booked > Decimal(qty)
        except InvalidOperation:
            expected, too_much = Decimal(-1), True
        if booked != expected or too_much:
            report.fill_mismatches += 1
            _note(
                report,
                f"order {order_id}: fills total {booked}, last transition says "
                f"{filled_qty} of {qty}",
            )
    report.orders_by_state = dict(sorted(states.items()))


# -------------------------------------------------------------- one run's trader figures

MAX_PRICE_POINTS: Final = 2_000
"""Price path resolution: the last trade of each symbol in each of at most this many
intervals of the run (whole seconds, at least one); see docs/report.md."""


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One run as a trader reads it (docs/report.md defines every figure)."""

    run: RunRecord
    strategy_params: dict[str, Any]
    symbols: list[str]
    ticks: int
    figures: Figures
    money: Money
    prices: list[PricePoint]
    interval_ns: int
    fills: list[Fill]

    def to_builtins(self) -> dict[str, Any]:
        fig = figures_builtins(self.figures, self.money)
        return {
            "run_id": self.run.run_id,
            "command": self.run.command,
            "mode": self.run.mode,
            "strategy": self.run.strategy_kind,
            "strategy_params": self.strategy_params,
            "symbols": self.symbols,
            "ticks": self.ticks,
            "sampling_s": SAMPLE_NS // NS_PER_S,
            "price_interval_s": self.interval_ns // NS_PER_S,
            **fig,
            "trades": [trip_builtins(t, self.money) for t in self.figures.trips],
        }

    def text_lines(self, *, trades: bool = False) -> list[str]:
        d = self.to_builtins()
        params = " ".join(f"{k}={v}" for k, v in sorted(self.strategy_params.items()))
        cash = d["starting_cash"]
        net_pct = f" ({d['net_pnl_pct']} % of starting cash)" if d["net_pnl_pct"] else ""
        fee_share = (
            f" ({d['fees_pct_of_gross']} % of gross PnL {d['gross_pnl']})"
            if d["fees_pct_of_gross"]
            else f" ({d['fees_pct_of_loss']} % of the loss; gross PnL {d['gross_pnl']})"
            if d["fees_pct_of_loss"]
            else f" (gross PnL {d['gross_pnl']})"
        )
        dd_pct = f" ({d['max_drawdown_pct']} %)" if d["max_drawdown_pct"] else ""
        dd_for = d["max_drawdown_duration_s"]
        lines = [
            f"run               {self.run.run_id} ({self.run.command or '?'},"
            f" {self.run.mode or '?'})",
            f"strategy          {self.run.strategy_kind or '?'} {params}".rstrip(),
            f"data              {_wall(self.figures.start_ns)} -> {_wall(self.figures.end_ns)}"
            f" ({duration_text(d['duration_s'])}), {self.ticks} ticks,"
            f" {', '.join(self.symbols) or 'no symbol'}",
            f"starting equity   {d['starting_equity']}"
            + ("" if cash else " (no [execution] starting_cash: equity is PnL)"),
            f"final equity      {d['final_equity']}",
            f"net PnL           {d['net_pnl']}{net_pct}",
            f"fees              {d['fees']}{fee_share}",
            f"round trips       {d['round_trips']} closed, {d['open_round_trips']} open:"
            f" {d['wins']} wins, {d['losses']} losses, win rate {_or(d['win_rate_pct'], ' %')}",
            f"avg win / loss    {_or(d['avg_win'])} / {_or(d['avg_loss'])}",
            f"best / worst      {_or(d['best'])} / {_or(d['worst'])}",
            f"profit factor     {_or(d['profit_factor'])}",
            f"expectancy        {_or(d['expectancy'])} per round trip",
            f"max drawdown      {d['max_drawdown']}{dd_pct}"
            + (f", lasting {duration_text(dd_for)}" if dd_for is not None else ""),
            f"sharpe / sortino  {_or(d['sharpe_per_minute'])} / {_or(d['sortino_per_minute'])}"
            f" per 1-minute sample ({d['samples']} samples; annualised Sharpe"
            f" {_or(d['sharpe_annualised'])})",
            f"exposure          {_or(d['exposure_pct'], ' %')} of the run in a position",
            "per symbol",
        ]
        for name, s in d["symbols"].items():
            lines.append(
                f"  {name:<12} {s['fills']} fills, {s['round_trips']} round trips"
                f" ({s['wins']} won, {s['losses']} lost), net {s['net_pnl']}, fees {s['fees']},"
                f" position {s['position']}, last {_or(s['last_price'])},"
                f" exposure {_or(s['exposure_pct'], ' %')}"
            )
        if trades:
            lines.append("round trips (entry -> exit, average prices, PnL net of fees)")
            lines.extend(trip_line(t) for t in d["trades"])
        return lines


def _or(value: object, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def duration_text(seconds: int | None) -> str:
    """``346`` -> ``"5 min 46 s"``; days and hours when the run is long."""
    if seconds is None:
        return "-"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{n} {unit}" for n, unit in parts if n]
    return " ".join(shown) or "0 s"


def trip_line(t: dict[str, Any]) -> str:
    exit_at = _wall(t["exit_ns"]) if t["closed"] else "open"
    return (
        f"  {t['symbol']:<12} {_wall(t['entry_ns'])} -> {exit_at}  qty {t['qty']}"
        f"  {_or(t['entry_price'])} -> {_or(t['exit_price'])}  fees {t['fees']}"
        f"  PnL {t['pnl']}"
    )


def select_run(conn: sqlite3.Connection, wanted: str | None) -> RunRecord | None:
    """Run ``wanted`` (its id, or its number: 1 the first, -1 the latest); the latest if None.

    *Error handling:* ``ConfigError`` naming ``--run`` when no such run exists.
    """
    if wanted is None:
        runs = load_runs(conn, 1)
        return runs[0] if runs else None
    runs = load_runs(conn, 1, run_id=wanted)
    if not runs and wanted.lstrip("-").isdigit() and len(wanted) <= 9:
        number = int(wanted)
        total = count_runs(conn)
        index = number - 1 if number > 0 else total + number
        if 0 <= index < total:
            runs = load_runs(conn, total - index)[:1]
    if not runs:
        raise ConfigError(f"--run: no run {wanted!r} in this database")
    return runs[0]


def _json_object(text: object) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _run_columns(
    conn: sqlite3.Connection, run_id: str
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """The run's rowid, recorded configuration and strategy parameters."""
    recorded = has_column(conn, "runs", "strategy_params_json")
    params_col = "strategy_params_json" if recorded else "NULL"
    row = conn.execute(
        f"SELECT rowid, config_json, {params_col} FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    return int(row[0]), _json_object(row[1]), _json_object(row[2])


def starting_cash_of(config: dict[str, Any]) -> Decimal | None:
    """``[execution] starting_cash`` from a run's recorded configuration (``None``: unset)."""
    execution = config.get("execution")
    cash = finite_decimal(execution.get("starting_cash") if isinstance(execution, dict) else None)
    return cash if cash is not None and cash > 0 else None


def _fills(conn: sqlite3.Connection, where: str, args: tuple[object, ...]) -> list[Fill]:
    rows = select_rows(conn, Fill, f"WHERE {where} ORDER BY rowid", args)
    return [f for f in (_fill_from_row(r) for r in rows) if f is not None]


def _event_range(conn: sqlite3.Connection, run: RunRecord, fills: list[Fill]) -> tuple[int, int]:
    first, last = run.first_event_ns, run.last_event_ns
    if first is None or last is None:
        lo, hi = conn.execute(
            "SELECT MIN(ts_event), MAX(ts_event) FROM ticks WHERE run_id = ?", (run.run_id,)
        ).fetchone()
        first = first if first is not None else lo
        last = last if last is not None else hi
    stamps = [f.ts_event for f in fills]
    first = first if first is not None else min(stamps, default=0)
    last = last if last is not None else max(stamps, default=first)
    return int(first), max(int(first), int(last))


def price_path(
    conn: sqlite3.Connection, start_ns: int, end_ns: int, interval_ns: int
) -> list[PricePoint]:
    """The last trade of each symbol in each ``interval_ns`` of ``[start_ns, end_ns]``
    (SQLite's bare column beside ``MAX``: the row holding the maximum; an index range scan)."""
    rows = conn.execute(
        "SELECT symbol, MAX(ts_event), price FROM ticks WHERE ts_event BETWEEN ? AND ?"
        " GROUP BY symbol, ts_event / ? ORDER BY 2, 1",
        (start_ns, end_ns, interval_ns),
    )
    points: list[PricePoint] = []
    for symbol, ts, price in rows:
        try:
            points.append(PricePoint(str(symbol), int(ts), Decimal(price)))
        except (InvalidOperation, TypeError, ValueError):
            continue
    return points


def _signal_prices(conn: sqlite3.Connection, run_id: str) -> list[Decimal]:
    prices = []
    for (text,) in conn.execute("SELECT price FROM signals WHERE run_id = ?", (run_id,)):
        try:
            prices.append(Decimal(text))
        except (InvalidOperation, TypeError):
            continue
    return prices


def ticks_processed(conn: sqlite3.Connection, run_id: str) -> int | None:
    """The ticks run ``run_id`` handed downstream (its last heartbeat's ``ingest_processed``)."""
    if not has_table(conn, "heartbeats"):
        return None
    row = conn.execute(
        "SELECT counters FROM heartbeats WHERE run_id = ? ORDER BY hb_id DESC LIMIT 1", (run_id,)
    ).fetchone()
    try:
        counters = json.loads(row[0]) if row is not None else None
    except (TypeError, ValueError):
        return None
    value = counters.get("ingest_processed") if isinstance(counters, dict) else None
    return value if isinstance(value, int) else None


def run_report(conn: sqlite3.Connection, run: RunRecord) -> RunFigures:
    """The figures of ``run``: its fills, booked after those of the runs before it."""
    rowid, config, params = _run_columns(conn, run.run_id)
    fills = _fills(conn, "run_id = ?", (run.run_id,))
    opening_fills = _fills(
        conn, "run_id IN (SELECT run_id FROM runs WHERE rowid < ?)", (rowid,)
    )
    opening = Ledger()
    for fill in opening_fills:
        opening.apply(fill)
    start, end = _event_range(conn, run, fills)
    interval = max(NS_PER_S, -(-(end - start) // MAX_PRICE_POINTS) // NS_PER_S * NS_PER_S)
    prices = price_path(conn, start, end, interval)
    figures = run_figures(
        fills,
        prices,
        start_ns=start,
        end_ns=end,
        starting_cash=starting_cash_of(config),
        opening={s: q for s, q in opening.positions().items() if q != 0},
        opening_cash=opening.cash,
    )
    # Trade prices give the instrument's precision (a PAPER fill's price carries slippage);
    # a run that stored no ticks still stored its signals, each at a trade's price.
    traded = [p.price for p in prices] or _signal_prices(conn, run.run_id)
    money = money_for(traded or [f.price for f in fills], [f.qty for f in fills])
    processed = ticks_processed(conn, run.run_id)
    return RunFigures(
        run=run,
        strategy_params=params,
        symbols=sorted({p.symbol for p in prices} | {f.symbol for f in fills}),
        ticks=processed if processed is not None else run.counts.get("ticks", 0),
        figures=figures,
        money=money,
        prices=prices,
        interval_ns=interval,
        fills=fills,
    )


def build_report(conn: sqlite3.Connection, run: str | None = None) -> Report:
    """Everything the operator needs from the database at ``conn`` (read-only), with the
    figures of run ``run`` (``select_run``: the latest by default)."""
    report = Report()
    report.modes = previous_modes(conn)
    report.runs_total = count_runs(conn)
    report.runs = load_runs(conn, MAX_REPORTED_RUNS)
    if not has_table(conn, "fills"):
        return report
    ledger, filled = _book_fills(conn, report)
    _check_orders(conn, report, filled)
    marks = load_marks(conn)
    report.positions = {s: q for s, q in ledger.positions().items() if q != 0}
    report.marks = {s: marks[s] for s in report.positions if s in marks}
    report.cash = ledger.cash
    report.fees = ledger.fees
    report.realised_pnl = ledger.realised
    report.unrealised_pnl = ledger.unrealised(marks)
    report.equity = ledger.equity(marks)
    report.signals = row_count(conn, "signals")
    report.vetoes_by_reason = count_by(conn, "vetoes", "reason")
    if has_table(conn, "risk_states"):
        last = conn.execute(
            "SELECT trading_state FROM risk_states ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        if last is not None:
            report.trading_state = last[0]
    chosen = select_run(conn, run)
    if chosen is not None:
        report.run = run_report(conn, chosen)
    return report
