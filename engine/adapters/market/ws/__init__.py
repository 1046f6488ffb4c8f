"""The exchange WebSocket source: stream (reconnect loop), session, intake, forwarder,
keepalive, silence watch.
"""
