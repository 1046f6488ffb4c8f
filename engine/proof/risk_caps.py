"""The proof's risk-cap validation: tight caps on a real capture, audited from the database.

The first case of the packaged ``cases.toml`` (a real Binance capture) is replayed
in a fresh PAPER-mode process once per ``SCENARIOS`` entry -- caps that bind at
the last cent of one order, and caps that fit one order but not a second one
attempted while the first is held or open. Then ``audit`` re-derives, from the
persisted record alone and without the engine's risk code, the exposure and
the open-order count at every moment an order was created.

PASS needs, for every scenario:

* at least one ``RISK_CAP`` veto persisted (the caps were actually exercised),
* at least one fill (something was still traded, so "never exceeded" is not vacuous),
* no violation found by ``audit`` (I2), and every fill conserving (I4).

*How the audit orders events.* An order is created when its signal's causing
tick is processed, so its decision time is that tick's ``ts_event`` (the
order's own when the tick is unknown). Fills and order transitions at the same
``ts_event`` count as having happened before the decision (the engine processes
a tick's fills and expiries before the signal it causes). Exposure of a symbol
is ``(position + unfilled remainder of open BUY orders) x mark``, the mark being
the price of the order's causing tick (the latest trade the engine had seen when
it decided, exactly what ``engine.core.risk`` marks at); other symbols keep the
mark of their latest order. Ties can only make the audit more lenient by a
same-millisecond SELL fill or expiry, never report a breach that did not happen.
Orders whose lifecycle holds ``DENIED`` never reached the (simulated) venue and
are not counted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from engine.core.events import Fill, OrderEvent, OrderState
from engine.proof import replay
from engine.proof.checks import check_env, tail, timed
from engine.proof.evidence import CheckResult
from engine.store.audit import AuditRows, OrderEntry, read_audit_rows


@dataclass(frozen=True, slots=True)
class Caps:
    max_exposure_usd: Decimal
    max_symbol_exposure_usd: Decimal
    max_open_orders: int


@dataclass(frozen=True, slots=True)
class Scenario:
    """One tight-cap replay: the ``ENGINE_*`` overrides it runs with and the caps it audits."""

    name: str
    why: str
    caps: Caps
    execution: Mapping[str, str]

    def env(self) -> dict[str, str]:
        return {
            "ENGINE_ENGINE_MODE": "paper",
            "ENGINE_RISK_MAX_EXPOSURE_USD": str(self.caps.max_exposure_usd),
            "ENGINE_RISK_MAX_SYMBOL_EXPOSURE_USD": str(self.caps.max_symbol_exposure_usd),
            "ENGINE_RISK_MAX_OPEN_ORDERS": str(self.caps.max_open_orders),
            **self.execution,
        }


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario(
        name="boundary",
        why="caps just under one 100 USD market order: whether an entry fits depends on its "
        "rounded size and the mark, so the cap binds at the last cent",
        caps=Caps(Decimal("99.9"), Decimal("99.9"), 1),
        execution={"ENGINE_EXECUTION_ORDER_NOTIONAL_USD": "100"},
    ),
    Scenario(
        name="second_entry",
        why="caps fit one 100 USD order, not two; limit orders 5 bps under the signal rest up "
        "to 120 s, so a later entry meets a position or an open order and must be refused",
        caps=Caps(Decimal("150"), Decimal("150"), 1),
        execution={
            "ENGINE_EXECUTION_ORDER_NOTIONAL_USD": "100",
            "ENGINE_EXECUTION_ORDER_TYPE": "limit",
            "ENGINE_EXECUTION_LIMIT_OFFSET_BPS": "5",
            "ENGINE_EXECUTION_ORDER_TIMEOUT_S": "120",
        },
    ),
)
"""Fixed (not the operator's caps): the check proves the cap *mechanism* of this code on a
real tape; the bundle binds the operator's own risk config through its hash."""

REPLAY_TIMEOUT_S: Final = 600.0
"""Upper bound on the risk replay process; beyond it it is killed and the check FAILs."""

MAX_REPORTED_VIOLATIONS: Final = 10
TERMINAL_STATES: Final = frozenset({"FILLED", "CANCELED", "REJECTED", "DENIED", "EXPIRED"})


@dataclass(slots=True)
class Audit:
    orders: int = 0
    fills: int = 0
    risk_cap_vetoes: int = 0
    vetoes_by_reason: dict[str, int] = field(default_factory=dict)
    max_open_orders_seen: int = 0
    max_symbol_exposure_seen: Decimal = Decimal(0)
    max_exposure_seen: Decimal = Decimal(0)
    violations: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "fills": self.fills,
            "risk_cap_vetoes": self.risk_cap_vetoes,
            "vetoes_by_reason": dict(sorted(self.vetoes_by_reason.items())),
            "max_open_orders_seen": self.max_open_orders_seen,
            "max_symbol_exposure_seen": str(self.max_symbol_exposure_seen),
            "max_exposure_seen": str(self.max_exposure_seen),
            "violations": len(self.violations),
        }


# Event kinds in the audit timeline; at equal ts_event, lower sorts first.
_FILL, _TRANSITION, _OPEN = 0, 1, 2


def _timeline(rows: AuditRows) -> list[tuple[int, int, int, Fill | OrderEvent | OrderEntry]]:
    """Every fill, transition and (not denied) order opening, by event time then kind.

    At an equal time and kind, insertion order (the list position: rowid order).
    """
    timeline: list[tuple[int, int, int, Fill | OrderEvent | OrderEntry]] = []
    timeline.extend((f.ts_event, _FILL, i, f) for i, f in enumerate(rows.fills))
    timeline.extend((e.ts_event, _TRANSITION, i, e) for i, e in enumerate(rows.transitions))
    denied = {e.order_id for e in rows.transitions if e.state == OrderState.DENIED}
    timeline.extend(
        (o.ts_event, _OPEN, i, o) for i, o in enumerate(rows.entries) if o.order_id not in denied
    )
    timeline.sort(key=lambda r: (r[0], r[1], r[2]))
    return timeline


def audit(db_path: str | Path, caps: Caps) -> Audit:
    """Re-derive exposure and open orders over the persisted record; collect every breach."""
    result = Audit()
    position: dict[str, Decimal] = {}
    price: dict[str, Decimal] = {}
    open_orders: dict[str, tuple[str, str]] = {}  # order_id -> (symbol, side)
    leaves: dict[str, Decimal] = {}  # open BUY order_id -> unfilled quantity

    def committed(symbol: str) -> Decimal:
        buys = sum((q for oid, q in leaves.items() if open_orders[oid][0] == symbol), Decimal(0))
        return position.get(symbol, Decimal(0)) + buys

    def breach(message: str) -> None:
        if len(result.violations) < MAX_REPORTED_VIOLATIONS:
            result.violations.append(message)
        else:
            result.violations.append("")  # counted, not reported

    stored = read_audit_rows(db_path)
    result.vetoes_by_reason.update(stored.vetoes_by_reason)
    result.risk_cap_vetoes = result.vetoes_by_reason.get("RISK_CAP", 0)
    for _ts, _kind, _at, row in _timeline(stored):
        if isinstance(row, Fill):
            symbol, d = row.symbol, row.position_delta
            if row.cash_delta + d * row.price + row.fee != 0:
                breach(f"{row.fill_id}: cash_delta + position_delta * price + fee != 0")
            position[symbol] = position.get(symbol, Decimal(0)) + d
            result.fills += 1
        elif isinstance(row, OrderEvent):
            order_id = row.order_id
            if order_id in leaves:
                leaves[order_id] = row.leaves_qty
            if row.state in TERMINAL_STATES:
                open_orders.pop(order_id, None)
                leaves.pop(order_id, None)
        else:
            order_id, symbol, side, qty, px, ts = (
                row.order_id, row.symbol, row.side, row.qty, row.price, row.ts_event
            )
            result.orders += 1
            count = len(open_orders) + 1
            result.max_open_orders_seen = max(result.max_open_orders_seen, count)
            if count > caps.max_open_orders:
                breach(f"{order_id} at {ts}: {count} open orders > {caps.max_open_orders}")
            if side == "BUY":
                price[symbol] = px
                sym = (committed(symbol) + qty) * price[symbol]
                total = (
                    sum((committed(s) * price[s] for s in price if s != symbol), Decimal(0)) + sym
                )
                result.max_symbol_exposure_seen = max(result.max_symbol_exposure_seen, sym)
                result.max_exposure_seen = max(result.max_exposure_seen, total)
                if sym > caps.max_symbol_exposure_usd:
                    breach(f"{order_id} at {ts}: {symbol} exposure {sym} > "
                           f"{caps.max_symbol_exposure_usd}")  # fmt: skip
                if total > caps.max_exposure_usd:
                    breach(f"{order_id} at {ts}: total exposure {total} > {caps.max_exposure_usd}")
                leaves[order_id] = qty
            open_orders[order_id] = (symbol, side)
    return result


def risk_capture(cases_dir: Path) -> Path:
    """The capture the risk replay runs on: the first (real) replay case."""
    cases = replay.load_cases(cases_dir)
    if not cases:
        raise FileNotFoundError(f"{replay.CASES_FILE} in {cases_dir} lists no capture")
    return (cases_dir / cases[0].capture).resolve()


def _replay_scenario(
    capture: Path, scenario: Scenario, environ: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """Replay ``capture`` under ``scenario`` in a fresh process and audit the result."""
    figures: dict[str, Any] = {
        "caps": {k.removeprefix("ENGINE_").lower(): v for k, v in scenario.env().items()}
    }
    with tempfile.TemporaryDirectory(prefix="proof-risk-") as tmp:
        db = Path(tmp) / "risk.db"
        cmd = [sys.executable, "-m", "engine", "replay", str(capture), "--db", str(db)]
        try:
            proc = subprocess.run(
                cmd, cwd=tmp, env=check_env(environ, scenario.env()), capture_output=True,
                text=True, timeout=REPLAY_TIMEOUT_S, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return figures, [f"replay did not finish within {REPLAY_TIMEOUT_S:g} s"]
        figures["returncode"] = proc.returncode
        if proc.returncode != 0 or not db.exists():
            return figures, [f"replay exited {proc.returncode}: {tail(proc.stdout + proc.stderr)}"]
        result = audit(db, scenario.caps)
    figures.update(result.figures())
    problems = [v for v in result.violations if v]
    if len(result.violations) > len(problems):
        problems.append(f"... {len(result.violations)} violations in all")
    if result.risk_cap_vetoes == 0:
        problems.append("no RISK_CAP veto: the caps were never exercised")
    if result.fills == 0:
        problems.append("no fill: nothing was traded, so 'never exceeded' proves nothing")
    return figures, problems


def _risk_caps(
    cases_dir: Path, environ: Mapping[str, str]
) -> tuple[bool, dict[str, Any], str, str]:
    capture = risk_capture(cases_dir)
    figures: dict[str, Any] = {"capture": capture.name}
    problems: list[str] = []
    summaries: list[str] = []
    for scenario in SCENARIOS:
        scenario_figures, scenario_problems = _replay_scenario(capture, scenario, environ)
        figures[scenario.name] = scenario_figures
        problems += [f"{scenario.name}: {p}" for p in scenario_problems]
        summaries.append(
            f"{scenario.name}: {scenario_figures.get('risk_cap_vetoes', 0)} RISK_CAP vetoes, "
            f"{scenario_figures.get('fills', 0)} fills, "
            f"{scenario_figures.get('violations', '?')} violations"
        )
    return not problems, figures, "; ".join(summaries), tail("; ".join(problems))


def check_risk_caps(
    cases_dir: Path | None = None, environ: Mapping[str, str] = os.environ
) -> CheckResult:
    """Run every ``SCENARIOS`` replay (fixed caps, whatever the live config) and audit it."""
    where = replay.packaged_cases_dir() if cases_dir is None else cases_dir
    return timed("risk_caps", lambda: _risk_caps(where, environ))
