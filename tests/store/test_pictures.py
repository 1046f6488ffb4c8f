"""``report --html``: the page rendered by a real headless browser (Debian's chromium).

Skipped with a message when chromium is missing on a developer's machine; under
CI (``CI=true``) a missing browser fails (as in ``tests/e2e/test_browser.py``).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import trio

from tests.fakes.browser import BROWSER_TIMEOUT_S, needs_chromium
from tests.fakes.browser import render as _render
from tests.fakes.dashboard_support import serve_dashboard
from tests.fakes.engine_process import paper_replay, run_engine

pytestmark = needs_chromium


async def test_html_report_draws_equity_drawdown_and_every_entry_and_exit(
    tmp_path: Path,
) -> None:
    db = paper_replay(tmp_path / "paper.db")
    page = tmp_path / "report.html"
    done = run_engine(["report", "--db", str(db), "--html", str(page)])
    assert done.returncode == 0, done.stderr[-2000:]
    source = page.read_text()
    # self-contained: nothing to fetch (the only URL is the SVG namespace), and the page's
    # own policy forbids any fetch
    assert re.findall(r"https?://[^\s'\"]+", source) == ["http://www.w3.org/2000/svg"]
    assert "default-src 'none'" in source
    with trio.fail_after(BROWSER_TIMEOUT_S):
        dom = await _render(page.as_uri(), tmp_path / "profile")

    assert 'data-drawn="1"' in dom  # the script ran to its end
    conn = sqlite3.connect(db)
    buys, sells = (
        conn.execute("SELECT COUNT(*) FROM fills WHERE side = ?", (side,)).fetchone()[0]
        for side in ("BUY", "SELL")
    )
    conn.close()
    price = re.search(r'<svg id="price-BTCUSDT"[^>]*>.*?</svg>', dom, re.S)
    assert price, "no price chart for BTCUSDT"
    chart = price.group(0)
    assert f'data-entries="{buys}"' in chart and f'data-exits="{sells}"' in chart
    assert chart.count('class="entry"') == buys and chart.count('class="exit"') == sells
    line = re.search(r'<polyline class="line" points="([^"]+)"', chart)
    assert line and len(line.group(1).split()) > 100  # the price path, not a stub
    for name in ("equity", "drawdown"):
        svg = re.search(rf'<svg id="{name}"[^>]*data-points="(\d+)"[^>]*>(.*?)</svg>', dom, re.S)
        assert svg, name
        shape = re.search(r'points="([^"]+)"', svg.group(2))
        assert shape
        drawn = len(shape.group(1).split())
        # the drawdown polygon closes on the zero line at both ends
        assert drawn == int(svg.group(1)) + (2 if name == "drawdown" else 0)
        assert int(svg.group(1)) >= buys + sells + 2  # at least every fill, the start and end
    assert '<td data-key="net_pnl">-1.74</td>' in dom
    assert '<td data-key="round_trips">7</td>' in dom


async def test_dashboard_links_each_run_to_its_report_page(tmp_path: Path) -> None:
    db = paper_replay(tmp_path / "paper.db")
    conn = sqlite3.connect(db)
    (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
    conn.close()
    with trio.fail_after(BROWSER_TIMEOUT_S * 3):
        async with trio.open_nursery() as nursery:
            url = await serve_dashboard(nursery, db)
            dom = await _render(url + "/", tmp_path / "profile")
            page = await _render(f"{url}/report?run_id={run_id}", tmp_path / "profile2")
            missing = await _render(f"{url}/report?run_id=run-nope", tmp_path / "profile3")
            nursery.cancel_scope.cancel()
    assert f'<a href="/report?run_id={run_id}" data-run="{run_id}">report</a>' in dom
    # served by the dashboard under the page's own policy, the script still draws
    assert 'data-drawn="1"' in page
    assert re.search(r'<svg id="price-BTCUSDT"[^>]*data-entries="\d+"', page)
    assert '<td data-key="net_pnl">-1.74</td>' in page
    assert "no run" in missing and "data-drawn" not in missing
