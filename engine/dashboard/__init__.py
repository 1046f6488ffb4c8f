"""The read-only dashboard: a separate process that reads the engine's database.

``app.build_app`` is the ASGI app, ``server.serve`` runs it under Hypercorn's
Trio worker; ``queries`` holds the bounded read-only SQL.
"""

from typing import Final

DEFAULT_HOST: Final = "127.0.0.1"
"""Loopback: the dashboard has no authentication, so exposing it is an explicit choice."""

DEFAULT_PORT: Final = 8080
