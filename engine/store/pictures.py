"""``report --html FILE``: one self-contained page of a run's pictures (docs/report.md).

No network: the page is one file holding its data (one JSON ``<script>``), its
style and the script that draws three kinds of inline SVG charts -- the equity
curve, the drawdown, and per symbol the price with a marker at every entry
(a fill that opens or adds to a position) and exit (one that reduces it).
Each chart's ``<svg>`` carries ``data-points`` / ``data-entries`` /
``data-exits`` once drawn, and ``<body data-drawn>`` says the script finished.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from engine.core.events import NS_PER_MS, Side
from engine.store.report import RunFigures, duration_text

MAX_CURVE_POINTS: Final = 4_000
"""Points drawn per line (a longer series is thinned to every k-th point plus its last)."""


def _thin(points: list[Any]) -> list[Any]:
    if len(points) <= MAX_CURVE_POINTS:
        return points
    step = -(-len(points) // MAX_CURVE_POINTS)
    return [*points[::step], points[-1]] if (len(points) - 1) % step else points[::step]


def _f(value: Decimal) -> str:
    """A number for a chart's coordinates only (the page's figures are the exact strings)."""
    return str(value)


def page_data(report: RunFigures) -> dict[str, Any]:
    """What the page draws: event times in ms, values as decimal strings."""
    fig = report.figures
    curve = _thin([[p.ts_event // NS_PER_MS, _f(p.equity)] for p in fig.curve])
    peak: Decimal | None = None
    drawdown = []
    for p in fig.curve:
        peak = p.equity if peak is None or p.equity > peak else peak
        drawdown.append([p.ts_event // NS_PER_MS, _f(p.equity - peak)])
    symbols: dict[str, Any] = {}
    for symbol in report.symbols:
        prices = [
            [p.ts_event // NS_PER_MS, _f(p.price)] for p in report.prices if p.symbol == symbol
        ]
        entries: list[list[Any]] = []
        exits: list[list[Any]] = []
        for fill in report.fills:
            if fill.symbol != symbol:
                continue
            mark = [fill.ts_event // NS_PER_MS, _f(fill.price)]
            (entries if fill.side is Side.BUY else exits).append(mark)
        symbols[symbol] = {"prices": _thin(prices), "entries": entries, "exits": exits}
    return {
        "decimals": report.money.decimals,
        "equity": curve,
        "drawdown": _thin(drawdown),
        "symbols": symbols,
    }


_STYLE: Final = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td{padding:2px 12px 2px 0}
svg{background:#fafafa;border:1px solid #ddd;display:block;margin:0.5em 0 1.5em}
.line{fill:none;stroke:#1f77b4;stroke-width:1.5}.dd{fill:#d62728;fill-opacity:.25;stroke:#d62728}
.entry{fill:#2ca02c}.exit{fill:#d62728}.axis{font-size:11px;fill:#666}
"""

_SCRIPT: Final = r"""
(function () {
  var data = JSON.parse(document.getElementById('data').textContent);
  var NS = 'http://www.w3.org/2000/svg', W = 900, H = 240, P = 40;
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function scale(series) {
    var xs = [], ys = [];
    series.forEach(function (s) { s.forEach(function (p) { xs.push(p[0]); ys.push(+p[1]); }); });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) x1 = x0 + 1; if (y1 === y0) { y0 -= 1; y1 += 1; }
    return {
      x: function (v) { return (P + (v - x0) / (x1 - x0) * (W - 2 * P)).toFixed(1); },
      y: function (v) { return (H - P - (+v - y0) / (y1 - y0) * (H - 2 * P)).toFixed(1); },
      y0: y0, y1: y1
    };
  }
  function chart(id, title, series, cls, marks) {
    var svg = el('svg', {id: id, width: W, height: H, viewBox: '0 0 ' + W + ' ' + H});
    var box = document.getElementById('charts');
    var h = document.createElement('h3'); h.textContent = title; box.appendChild(h);
    box.appendChild(svg);
    if (!series.length) { svg.setAttribute('data-points', '0'); return svg; }
    var all = [series].concat(marks ? [marks.entries, marks.exits] : []);
    var s = scale(all.filter(function (a) { return a.length; }));
    var pts = series.map(function (p) { return s.x(p[0]) + ',' + s.y(p[1]); });
    if (cls === 'dd') pts = [s.x(series[0][0]) + ',' + s.y(0)].concat(pts,
        [s.x(series[series.length - 1][0]) + ',' + s.y(0)]);
    el(cls === 'dd' ? 'polygon' : 'polyline', {'class': cls, points: pts.join(' ')}, svg);
    var dec = data.decimals;
    el('text', {'class': 'axis', x: 2, y: P - 8}, svg).textContent = s.y1.toFixed(dec);
    el('text', {'class': 'axis', x: 2, y: H - P + 14}, svg).textContent = s.y0.toFixed(dec);
    svg.setAttribute('data-points', String(series.length));
    if (marks) {
      marks.entries.forEach(function (p) {
        el('circle', {'class': 'entry', r: 4, cx: s.x(p[0]), cy: s.y(p[1])}, svg);
      });
      marks.exits.forEach(function (p) {
        el('rect', {'class': 'exit', width: 7, height: 7,
                    x: s.x(p[0]) - 3.5, y: s.y(p[1]) - 3.5}, svg);
      });
      svg.setAttribute('data-entries', String(marks.entries.length));
      svg.setAttribute('data-exits', String(marks.exits.length));
    }
    return svg;
  }
  chart('equity', 'Equity', data.equity, 'line');
  chart('drawdown', 'Drawdown (equity minus its running peak)', data.drawdown, 'dd');
  Object.keys(data.symbols).sort().forEach(function (sym) {
    var d = data.symbols[sym];
    chart('price-' + sym, sym + ' price, entries (circles) and exits (squares)', d.prices,
          'line', {entries: d.entries, exits: d.exits});
  });
  document.body.setAttribute('data-drawn', '1');
})();
"""

def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE_POLICY: Final = (
    f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; style-src {_csp_hash(_STYLE)};"
    " base-uri 'none'; form-action 'none'"
)
"""The page's Content-Security-Policy: nothing from anywhere, only its own inline script
and style (by hash). The dashboard sends it as the header of ``/report``."""

_SUMMARY_KEYS: Final = (
    ("mode", "mode"), ("strategy", "strategy"), ("ticks", "ticks"),
    ("starting equity", "starting_equity"), ("final equity", "final_equity"),
    ("net PnL", "net_pnl"), ("net PnL %", "net_pnl_pct"), ("fees", "fees"),
    ("round trips", "round_trips"), ("wins", "wins"), ("losses", "losses"),
    ("win rate %", "win_rate_pct"), ("profit factor", "profit_factor"),
    ("expectancy", "expectancy"), ("max drawdown", "max_drawdown"),
    ("max drawdown %", "max_drawdown_pct"), ("Sharpe (per minute)", "sharpe_per_minute"),
    ("Sortino (per minute)", "sortino_per_minute"), ("exposure %", "exposure_pct"),
)


def render_html(report: RunFigures) -> str:
    """The page (a string): figures table, the data, and the script that draws the charts."""
    d = report.to_builtins()
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td data-key=\"{key}\">"
        f"{html.escape('-' if d[key] is None else str(d[key]))}</td></tr>"
        for label, key in _SUMMARY_KEYS
    )
    data = json.dumps(page_data(report), separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(f"hybrid-engine report: {report.run.run_id}")
    span = html.escape(duration_text(d["duration_s"]))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{PAGE_POLICY}\">"
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{title}</h1><p>{span} of data, {html.escape(', '.join(report.symbols))}</p>"
        f"<table id=\"figures\">{rows}</table><div id=\"charts\"></div>"
        f"<script type=\"application/json\" id=\"data\">{data}</script>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_html(report: RunFigures, path: Path) -> None:
    path.write_text(render_html(report), encoding="utf-8")
