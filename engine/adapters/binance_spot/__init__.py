"""LIVE only: the Binance Spot execution adapter. Only ``engine.app`` (through
``engine.runtime.live``) imports it, so SHADOW and PAPER never load it (I1).
"""
