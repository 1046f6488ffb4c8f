"""The replay floor: a plain loop that decodes a capture with msgspec and inserts every
trade with ``executemany`` into a WAL database. No pipeline, no strategy, no checks.

The database is created exactly as the engine creates its own (same PRAGMAs, same
migrations, so the same ``ticks`` table and indexes): the floor and the engine do
the same disk work, and the ratio measures only what the engine adds.

Usage: python bench/floor.py CAPTURE DB  -> prints {"ticks": n, "seconds": s}
"""

from __future__ import annotations

import gzip
import sys
import time

import msgspec

from engine.store.connection import open_writer
from engine.store.schema import migrate


class Trade(msgspec.Struct):
    s: str
    t: int
    p: str
    q: str
    T: int


class Envelope(msgspec.Struct):
    stream: str
    data: Trade


INSERT = (
    "INSERT INTO ticks (event_id, venue, symbol, trade_id, ts_event, ts_recv, price, qty)"
    " VALUES (?,?,?,?,?,?,?,?)"
)


def main() -> None:
    capture, db = sys.argv[1], sys.argv[2]
    conn = open_writer(db)
    migrate(conn)
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
                conn.executemany(INSERT, rows)
                conn.execute("COMMIT")
                total += len(rows)
                rows = []
    if rows:
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
        total += len(rows)
    seconds = time.perf_counter() - started
    print(msgspec.json.encode({"ticks": total, "seconds": seconds}).decode())


if __name__ == "__main__":
    main()
