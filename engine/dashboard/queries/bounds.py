"""The bounds every dashboard query shares (the API answers a 400 beyond them).

Bounds that belong to one kind of query live beside it: ``MAX_BARS`` and
``DEFAULT_WINDOW_S`` with the price chart (``market``), ``MAX_EQUITY_FILLS``
with the equity curve (``ledger``).
"""

from __future__ import annotations

from typing import Final

MAX_LIMIT: Final = 500
"""Most rows any list endpoint returns. Larger ``limit`` is a 400."""

DEFAULT_LIMIT: Final = 50

MAX_POINTS: Final = 2000
"""Most points in a chart series. Larger ``points`` is a 400."""

DEFAULT_POINTS: Final = 600
