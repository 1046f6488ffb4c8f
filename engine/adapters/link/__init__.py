"""One reconnecting WebSocket link, run by both the market feed and the LIVE user stream:
the reconnect loop and one connection's session (reconnect), its state (session), the
keepalive, the bounded handshake and close (deadlines) and what counts as lost (failures).
Each stream brings a small policy for what differs (docs/architecture.md "Reconnecting").
"""
