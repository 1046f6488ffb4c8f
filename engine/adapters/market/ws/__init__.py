"""The exchange WebSocket source: stream (the feed's policy on the shared link,
``engine.adapters.link``), intake, forwarder, silence watch, endpoints, parse budget.
"""
