"""Market data: one admission path, venue decoders, the capture file, replay and synthetic
sources. See docs/architecture.md "Parts and arrows".
"""
