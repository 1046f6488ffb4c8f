"""The read-only dashboard: a separate process that reads the engine's database.

``app.build_app`` is the ASGI app, ``server.serve`` runs it under Hypercorn's
Trio worker; ``queries`` holds the bounded read-only SQL."""
