"""The running engine: one Trio nursery (``pipeline``), its state, heartbeat, drain and systemd
notify; LIVE orchestration in ``live``. See docs/architecture.md.
"""
