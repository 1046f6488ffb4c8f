"""The dashboard page rendered by a real headless browser (Debian's chromium).

``scripts/install-test-deps.sh`` installs chromium. On a developer's machine
without it this test is skipped with a message saying so; under CI (``CI=true``)
a missing browser is a failure, never a quiet pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import trio

from tests.fakes.browser import BROWSER_TIMEOUT_S, needs_chromium
from tests.fakes.browser import render as _render
from tests.fakes.dashboard_support import live_copy, replay_database, serve_dashboard

pytestmark = needs_chromium


def _attr(dom: str, pattern: str) -> list[str]:
    return re.findall(pattern, dom)


async def test_page_renders_charts_counters_and_tables_in_chromium(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    live_copy(replay_database(tmp_path / "replay.db"), db, heartbeat_age_s=1.0)
    with trio.fail_after(BROWSER_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            url = await serve_dashboard(nursery, db)
            dom = await _render(url + "/", tmp_path / "profile")
            nursery.cancel_scope.cancel()

    # the page ran its script and refreshed itself without a reload
    refreshed = _attr(dom, r'data-refreshed="(\d+)"')
    assert refreshed and int(refreshed[0]) >= 2
    assert 'id="error" class="problems" hidden=""' in dom
    # liveness: a fresh heartbeat is shown green
    assert re.search(r'id="liveness" class="badge fresh"[^>]*>heartbeat [\d.]+ s ago<', dom)
    assert "mode shadow" in dom and "state ACTIVE" in dom
    # counters with values from the heartbeat
    tick = re.search(r'data-counter="tick_count"><div class="label">tick_count</div>'
                     r'<div class="value ">(\d+)</div>', dom)
    assert tick and tick.group(1) == "100"
    # the price chart: price and both SMAs drawn, one marker per signal (16 in the capture)
    chart = re.search(r'<svg id="chart-BTCUSDT".*?</svg>', dom, re.S)
    assert chart is not None
    svg = chart.group(0)
    for series in ("price", "sma-fast", "sma-slow"):
        points = re.search(rf'<polyline class="{series}" points="[^"]+" data-points="(\d+)"', svg)
        assert points and int(points.group(1)) > 100, series
    # labelled by the run's strategy: the SMA crossover's lines, named with their lengths
    assert re.search(r'id="strategy-label" class="muted">sma_cross fast=5 slow=20 on 1 s bars<',
                     dom)
    assert "SMA fast (5 bars)" in dom and "SMA slow (20 bars)" in dom
    assert len(re.findall(r'class="marker buy"', svg)) == 8
    assert len(re.findall(r'class="marker sell"', svg)) == 8
    # the equity curve
    assert re.search(r'<polyline class="equity" points="[^"]+" data-points="\d+"', dom)
    # tables: orders with transitions, vetoes with their reason
    assert dom.count('<span class="chip FILLED"') == 15
    assert "NO_POSITION" in dom


async def test_chart_of_another_strategy_draws_no_sma_and_says_which_strategy(
    tmp_path: Path,
) -> None:
    db = replay_database(tmp_path / "donchian.db",
                         env={"ENGINE_STRATEGY_KIND": "donchian_breakout"})
    with trio.fail_after(BROWSER_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            url = await serve_dashboard(nursery, db)
            dom = await _render(url + "/", tmp_path / "profile")
            nursery.cancel_scope.cancel()
    chart = re.search(r'<svg id="chart-BTCUSDT".*?</svg>', dom, re.S)
    assert chart is not None
    svg = chart.group(0)
    assert re.search(r'<polyline class="price" points="[^"]+" data-points="\d+"', svg)
    assert "sma-" not in svg  # no line the strategy never compared
    assert re.search(r'class="marker (buy|sell)"', svg)  # its own signals are marked
    legend = re.search(r'<div class="legend" data-strategy="donchian_breakout">.*?</div>', dom)
    assert legend is not None and "SMA" not in legend.group(0) and "price" in legend.group(0)
    assert re.search(
        r'id="strategy-label" class="muted">donchian_breakout lookback=20 on 1 s bars<', dom)
    section = re.search(r"<h2>Price and signals.*?</section>", dom, re.S)
    assert section is not None and "SMA" not in section.group(0)  # heading, legend, aria-label
