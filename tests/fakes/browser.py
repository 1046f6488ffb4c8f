"""Headless chromium (Debian's), for the pages: found or not, and a page rendered to its DOM.

``scripts/install-test-deps.sh`` installs it. Without it the browser tests are
skipped with a message saying so (``needs_chromium``); under CI (``CI=true``) a
missing browser is a failure, never a quiet pass.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio

BROWSER_TIMEOUT_S = 60
VIRTUAL_TIME_MS = 5000
"""Virtual time the page runs for: enough for the first fetches and a couple of refreshes."""


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = _chromium()
IN_CI = os.environ.get("CI", "").lower() == "true"
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not IN_CI,
    reason="chromium not installed: run scripts/install-test-deps.sh (apt-get install chromium)",
)


async def render(url: str, profile: Path) -> str:
    assert CHROMIUM is not None, "CI=true but chromium is missing (scripts/install-test-deps.sh)"
    result = await trio.run_process(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--dump-dom", url,
        ],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return result.stdout.decode()
