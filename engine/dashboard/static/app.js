// hybrid-engine dashboard: fetches the JSON API and draws plain SVG; no external assets.
"use strict";

const REFRESH_MS = 2000;       // how often the page re-reads the API (no page reload)
const MAX_CHART_SYMBOLS = 4;   // price charts drawn at most
const LIST_LIMIT = 15;         // rows per record table
const SVG_NS = "http://www.w3.org/2000/svg";
const W = 900, H = 220, PAD_L = 64, PAD_R = 10, PAD_T = 10, PAD_B = 22;
const COUNTER_ORDER = [
  "tick_count", "signal_count", "shadow_orders", "paper_orders", "trade_count", "persist_count",
  "persist_errors", "persist_batches", "ingest_received", "ingest_processed", "bp_drops_tick",
  "bp_drops_signal", "bp_drops_persist", "risk_vetoes", "stale_vetoes", "parse_errors",
  "skipped_messages", "duplicates", "gaps", "stale_ticks", "reconnects", "connected", "backoff_ms",
];
const ALERT_COUNTERS = new Set(["persist_errors", "bp_drops_tick", "bp_drops_signal",
  "bp_drops_persist", "parse_errors", "gaps"]);

const $ = (sel) => document.querySelector(sel);

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${url}: ${response.status} ${body.error || ""}`);
  return body;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function fmtTime(ns) {
  if (ns === null || ns === undefined) return "";
  const d = new Date(Number(ns) / 1e6);
  return d.toISOString().replace("T", " ").slice(0, 23);
}

function fmtNum(text, digits = 2) {
  if (text === null || text === undefined) return "-";
  const x = Number(text);
  if (!Number.isFinite(x)) return String(text);
  return x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function signClass(text) {
  const x = Number(text);
  return x > 0 ? "pos" : x < 0 ? "neg" : "";
}

function tile(label, value, extra = {}) {
  const t = el("div", { class: "tile" + (extra.alert ? " alert" : "") });
  if (extra.key) t.setAttribute(extra.keyAttr || "data-key", extra.key);
  t.append(el("div", { class: "label" }, label));
  const v = el("div", { class: "value " + (extra.valueClass || "") }, value);
  t.append(v);
  if (extra.rate !== undefined) t.append(el("div", { class: "rate" }, extra.rate));
  return t;
}

function renderStatus(status) {
  $("#mode").textContent = "mode " + (status.mode || "?");
  $("#trading-state").textContent = "state " + (status.trading_state || "?");
  const live = $("#liveness");
  const health = status.health || {};
  const hb = status.heartbeat;
  if (hb) {
    live.textContent = `heartbeat ${fmtNum(hb.age_s, 1)} s ago` + (hb.final ? " (final)" : "");
  } else {
    live.textContent = "no heartbeat";
  }
  const stale = !hb || hb.final || (health.limit_s && hb.age_s > health.limit_s);
  live.className = "badge " + (stale ? "stale" : "fresh");
  live.dataset.state = stale ? "stale" : "fresh";
  const problems = $("#problems");
  problems.hidden = !(health.problems && health.problems.length);
  problems.textContent = problems.hidden ? "" : "Unhealthy: " + health.problems.join("; ");

  const box = $("#counters");
  box.replaceChildren();
  const counters = (hb && hb.counters) || {};
  const rates = (hb && hb.rates) || {};
  const names = COUNTER_ORDER.filter((n) => n in counters)
    .concat(Object.keys(counters).filter((n) => !COUNTER_ORDER.includes(n)).sort());
  for (const name of names) {
    const rate = name in rates ? `${fmtNum(rates[name], 1)}/s` : "";
    box.append(tile(name, fmtNum(counters[name], 0), {
      key: name, keyAttr: "data-counter", rate,
      alert: ALERT_COUNTERS.has(name) && counters[name] > 0,
    }));
  }
}

function renderPortfolio(p) {
  const box = $("#portfolio");
  box.replaceChildren(
    tile("equity", fmtNum(p.equity, 4), { key: "equity", valueClass: signClass(p.equity) }),
    tile("cash", fmtNum(p.cash, 4), { key: "cash" }),
    tile("realised PnL", fmtNum(p.realized_pnl, 4), { key: "realized_pnl", valueClass: signClass(p.realized_pnl) }),
    tile("unrealised PnL", fmtNum(p.unrealized_pnl, 4), { key: "unrealized_pnl", valueClass: signClass(p.unrealized_pnl) }),
    tile("fees", fmtNum(p.fees, 4), { key: "fees" }),
    tile("fills", fmtNum(p.fill_count, 0), { key: "fill_count" }),
  );
  const body = $("#positions tbody");
  body.replaceChildren();
  for (const pos of p.positions) {
    const row = el("tr");
    row.append(el("td", {}, pos.symbol), el("td", {}, pos.qty), el("td", {}, fmtNum(pos.avg_price)),
      el("td", {}, fmtNum(pos.mark_price)),
      el("td", { class: signClass(pos.realized_pnl) }, fmtNum(pos.realized_pnl, 4)),
      el("td", { class: signClass(pos.unrealized_pnl) }, fmtNum(pos.unrealized_pnl, 4)));
    body.append(row);
  }
}

// Scales mapping data (x: ns, y: value) into the SVG's viewBox.
function scales(xs, ys) {
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.06;
  y0 -= pad; y1 += pad;
  return {
    x: (v) => PAD_L + (v - x0) / (x1 - x0) * (W - PAD_L - PAD_R),
    y: (v) => PAD_T + (1 - (v - y0) / (y1 - y0)) * (H - PAD_T - PAD_B),
    x0, x1, y0, y1,
  };
}

function axes(svg, s, digits) {
  for (const frac of [0, 0.5, 1]) {
    const v = s.y0 + (s.y1 - s.y0) * frac;
    const label = svgEl("text", { x: 4, y: s.y(v) + 4 });
    label.textContent = fmtNum(v, digits);
    svg.append(label);
  }
  for (const [frac, anchor] of [[0, "start"], [1, "end"]]) {
    const v = s.x0 + (s.x1 - s.x0) * frac;
    const label = svgEl("text", { x: s.x(v), y: H - 6, "text-anchor": anchor });
    label.textContent = fmtTime(v).slice(11, 19);
    svg.append(label);
  }
}

function polyline(svg, points, cls, s) {
  const pts = points.filter((p) => p[1] !== null && p[1] !== undefined)
    .map((p) => `${s.x(Number(p[0])).toFixed(1)},${s.y(Number(p[1])).toFixed(1)}`);
  if (pts.length === 0) return;
  svg.append(svgEl("polyline", { class: cls, points: pts.join(" "), "data-points": pts.length }));
}

// What the run's strategy is, for a person: "sma_cross fast=5 slow=20 on 1 s bars"
// (the bars only when they are the strategy's own parameter; the chart's are then its).
function strategyText(strategy, barSeconds) {
  if (!strategy) return "";
  const own = Object.prototype.hasOwnProperty.call(strategy.params || {}, "bar_seconds");
  const params = Object.entries(strategy.params || {}).filter(([k]) => k !== "bar_seconds")
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
  const bars = barSeconds === 0 ? "trade bars" : `${barSeconds} s bars`;
  return [strategy.kind, ...params].join(" ") + (own ? " on " + bars : "");
}

// The legend names only what is drawn: the SMA lines exist for the SMA crossover alone.
function legendFor(data) {
  const legend = el("div", { class: "legend", "data-strategy": data.strategy ? data.strategy.kind : "" });
  legend.append(el("span", { class: "k-price" }, "\u25ac price"));
  if (data.columns.includes("sma_fast")) {
    legend.append(el("span", { class: "k-fast" }, `\u25ac SMA fast (${data.fast} bars)`),
      el("span", { class: "k-slow" }, `\u25ac SMA slow (${data.slow} bars)`));
  }
  legend.append(el("span", { class: "k-buy" }, "\u25b2 BUY"), el("span", { class: "k-sell" }, "\u25bc SELL"));
  return legend;
}

function chartFor(data) {
  const symbol = data.symbol;
  const id = "chart-" + symbol.replace(/[^A-Za-z0-9_-]/g, "_");
  let svg = document.getElementById(id);
  if (!svg) {
    const box = el("div", { class: "chart-box" });
    box.append(el("h3", {}, symbol));
    svg = svgEl("svg", { id, class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
      role: "img" });
    box.append(svg, el("div", { class: "legend" }));
    $("#charts").append(box);
  }
  const sma = data.columns.includes("sma_fast");
  svg.setAttribute("aria-label", `${symbol} price${sma ? " with SMAs" : ""} and signals`);
  svg.nextElementSibling.replaceWith(legendFor(data));
  return svg;
}

function renderPrices(data) {
  const svg = chartFor(data);
  svg.replaceChildren();
  svg.dataset.bars = data.bars.length;
  svg.dataset.signals = data.signals.length;
  const label = $("#strategy-label");
  if (label) label.textContent = strategyText(data.strategy, data.bar_seconds);
  if (data.bars.length === 0) return;
  const xs = data.bars.map((b) => Number(b[0]));
  const ys = [];
  for (const b of data.bars) for (const v of b.slice(1)) if (v !== null) ys.push(Number(v));
  for (const sig of data.signals) xs.push(Number(sig.ts_event));
  const s = scales(xs, ys);
  axes(svg, s, 2);
  polyline(svg, data.bars.map((b) => [b[0], b[1]]), "price", s);
  const column = (name) => data.columns.indexOf(name);
  if (column("sma_fast") > 0) {
    polyline(svg, data.bars.map((b) => [b[0], b[column("sma_fast")]]), "sma-fast", s);
    polyline(svg, data.bars.map((b) => [b[0], b[column("sma_slow")]]), "sma-slow", s);
  }
  for (const sig of data.signals) {
    const x = s.x(Number(sig.ts_event)), y = s.y(Number(sig.price));
    const buy = sig.side === "BUY";
    const pts = buy ? `${x},${y + 2} ${x - 5},${y + 11} ${x + 5},${y + 11}`
                    : `${x},${y - 2} ${x - 5},${y - 11} ${x + 5},${y - 11}`;
    const marker = svgEl("polygon", { class: "marker " + (buy ? "buy" : "sell"), points: pts });
    const title = svgEl("title");
    title.textContent = `${sig.side} ${sig.price} at ${fmtTime(sig.ts_event)}`;
    marker.append(title);
    svg.append(marker);
  }
}

function renderEquity(data) {
  const svg = $("#equity-chart");
  svg.replaceChildren();
  svg.dataset.points = data.points.length;
  if (data.points.length === 0) return;
  const xs = data.points.map((p) => Number(p[0]));
  const ys = data.points.map((p) => Number(p[1])).concat([0]);
  const s = scales(xs, ys);
  axes(svg, s, 4);
  svg.append(svgEl("line", { class: "zero", x1: PAD_L, x2: W - PAD_R, y1: s.y(0), y2: s.y(0) }));
  polyline(svg, data.points, "equity", s);
}

function fillTable(selector, rows, cells) {
  const body = $(selector + " tbody");
  body.replaceChildren();
  for (const r of rows) {
    const tr = el("tr");
    for (const c of cells(r)) tr.append(c);
    body.append(tr);
  }
}

const td = (text, cls) => el("td", cls ? { class: cls } : {}, text === null ? "" : String(text));

function renderLists(signals, vetoes, orders, fills) {
  fillTable("#signals", signals.signals, (s) => [td(fmtTime(s.ts_event)), td(s.symbol),
    td(s.side, "side-" + s.side), td(fmtNum(s.price))]);
  fillTable("#vetoes", vetoes.vetoes, (v) => [td(fmtTime(v.ts_event)), td(v.symbol),
    td(v.reason), td(v.detail)]);
  fillTable("#orders", orders.orders, (o) => {
    const chain = el("td");
    o.transitions.forEach((t, i) => {
      if (i) chain.append(document.createTextNode("\u2192"));
      const chip = el("span", { class: "chip " + t.state, title: `${fmtTime(t.ts_event)} ${t.reason}` }, t.state);
      chain.append(chip);
    });
    return [td(fmtTime(o.ts_event)), td(o.symbol), td(o.side, "side-" + o.side), td(o.qty),
      td(fmtNum(o.price)), td(o.mode), chain];
  });
  fillTable("#fills", fills.fills, (f) => [td(fmtTime(f.ts_event)), td(f.symbol),
    td(f.side, "side-" + f.side), td(f.qty), td(fmtNum(f.price)), td(f.fee),
    td(fmtNum(f.cash_delta, 4), signClass(f.cash_delta))]);
}

function renderRuns(data) {
  fillTable("#runs", data.runs, (r) => {
    const link = el("td");
    link.append(el("a", { href: "/report?run_id=" + encodeURIComponent(r.run_id), "data-run": r.run_id },
      "report"));
    return [td(r.run_id), td(r.command), td(r.mode), td(fmtTime(r.started_wall_ns)),
      td(r.exit_code === null ? "running" : r.exit_code), link];
  });
}

async function refresh() {
  const errors = [];
  const guard = (p) => p.catch((e) => { errors.push(e.message); return null; });
  const q = `limit=${LIST_LIMIT}`;
  const [status, portfolio, symbols, equity, signals, vetoes, orders, fills, runs] = await Promise.all([
    guard(getJSON("/api/status")), guard(getJSON("/api/portfolio")), guard(getJSON("/api/symbols")),
    guard(getJSON("/api/equity?points=400")), guard(getJSON("/api/signals?" + q)),
    guard(getJSON("/api/vetoes?" + q)), guard(getJSON("/api/orders?" + q)), guard(getJSON("/api/fills?" + q)),
    guard(getJSON("/api/runs?" + q)),
  ]);
  if (status) renderStatus(status);
  if (portfolio) renderPortfolio(portfolio);
  if (equity) renderEquity(equity);
  if (signals && vetoes && orders && fills) renderLists(signals, vetoes, orders, fills);
  if (runs) renderRuns(runs);
  if (symbols) {
    const charts = await Promise.all(symbols.symbols.slice(0, MAX_CHART_SYMBOLS).map(
      (s) => guard(getJSON("/api/prices?points=600&symbol=" + encodeURIComponent(s.symbol)))));
    for (const c of charts) if (c) renderPrices(c);
  }
  const err = $("#error");
  err.hidden = errors.length === 0;
  err.textContent = errors.join("; ");
  $("#updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

async function loop() {
  try { await refresh(); } catch (e) { $("#error").hidden = false; $("#error").textContent = String(e); }
  setTimeout(loop, REFRESH_MS);
}

loop();
