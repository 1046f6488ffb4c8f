"""The gate and its evidence: the proof bundle, its checks, risk caps, replay digests. See
docs/going-live.md.
"""
