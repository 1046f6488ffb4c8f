"""The replay floor: a plain loop that decodes a capture with msgspec and inserts every
trade with ``executemany`` into a WAL database. No pipeline, no strategy, no checks.

Usage: python bench/floor.py CAPTURE DB  -> prints {"ticks": n, "seconds": s}
"""

from __future__ import annotations

import gzip
import sqlite3
import sys
import time

import msgspec


class Trade(msgspec.Struct):
    s: str
    t: int
    p: str
    q: str
    T: int


class Envelope(msgspec.Struct):
    stream: str
    data: Trade


def main() -> None:
    capture, db = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE ticks (event_id TEXT PRIMARY KEY, venue TEXT, symbol TEXT, trade_id INTEGER,"
        " ts_event INTEGER, ts_recv INTEGER, price TEXT, qty TEXT)"
    )
    decode = msgspec.json.Decoder(Envelope).decode
    started = time.perf_counter()
    opener = gzip.open if capture.endswith(".gz") else open
    rows = []
    total = 0
    with opener(capture, "rb") as fh:
        for line in fh:
            ts, _, raw = line.partition(b" ")
            d = decode(raw).data
            rows.append(
                (f"binance:{d.s}:{d.t}", "binance", d.s, d.t, d.T * 1_000_000, int(ts), d.p, d.q)
            )
            if len(rows) == 1000:
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO ticks VALUES (?,?,?,?,?,?,?,?)", rows)
                conn.execute("COMMIT")
                total += len(rows)
                rows = []
    if rows:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO ticks VALUES (?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
        total += len(rows)
    seconds = time.perf_counter() - started
    print(msgspec.json.encode({"ticks": total, "seconds": seconds}).decode())


if __name__ == "__main__":
    main()
