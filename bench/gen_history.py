"""Generate a multi-day history in the Binance public-dump layout, for scale runs.

``python bench/gen_history.py --trades 50000000 --days 30 --out /tmp/hist30`` writes
``BTCUSDT-trades-2024-08-01.csv`` ... one file per day (spot ``trades`` layout,
``id,price,qty,quote_qty,time,is_buyer_maker,is_best_match``, no header, ms times;
``--us`` writes µs times like Binance's files from 2025 on). Trades are spread
evenly over each day, ids run on across days, and the price is a seeded random
walk in steps of 0.01 around 60,000 -- the same arguments give the same bytes.

Replay it: ``python -m engine replay /tmp/hist30 --db F`` (a directory replays its
files merged in event-time order). See docs/performance.md, "30-day replay".
"""

from __future__ import annotations

import argparse
import calendar
import random
import time
from pathlib import Path

_MS_PER_DAY = 86_400_000


def write_day(  # noqa: PLR0917
    path: Path, first_id: int, n: int, day_start_ms: int, price_cents: int,
    rng: random.Random, *, us: bool,
) -> int:
    """Write ``n`` trades of one day; return the last price (cents)."""
    step = _MS_PER_DAY / n
    scale = 1000 if us else 1
    qtys = ("0.00010000", "0.00150000", "0.01000000", "0.02500000", "0.10000000", "0.50000000")
    qty_values = (1, 15, 100, 250, 1000, 5000)  # in 1e-4 units, for quote_qty
    moves = (-2, -1, -1, 0, 0, 0, 1, 1, 2)
    lines: list[str] = []
    with path.open("w", encoding="ascii", newline="\n") as out:
        for i in range(n):
            price_cents = max(100, price_cents + rng.choice(moves))
            k = rng.randrange(6)
            t = (day_start_ms + int(i * step)) * scale
            quote = price_cents * qty_values[k]  # cents * 1e-4 = 1e-6 units
            lines.append(
                f"{first_id + i},{price_cents // 100}.{price_cents % 100:02d}000000,{qtys[k]},"
                f"{quote // 1_000_000}.{quote % 1_000_000:06d}00,{t},"
                f"{'True' if rng.random() < 0.5 else 'False'},True\n"
            )
            if len(lines) >= 100_000:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))
    return price_cents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=50_000_000, help="total trades")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--start", default="2024-08-01", help="first day, YYYY-MM-DD")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--us", action="store_true", help="µs times (Binance 2025+ layout)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    year, month, day = (int(x) for x in args.start.split("-"))
    start_ms = calendar.timegm((year, month, day, 0, 0, 0)) * 1000
    rng = random.Random(args.seed)
    per_day = args.trades // args.days
    price = 6_000_000
    next_id = 1_000_000_000
    for d in range(args.days):
        n = per_day + (args.trades % args.days if d == args.days - 1 else 0)
        day_ms = start_ms + d * _MS_PER_DAY
        y, m, dd = time.gmtime(day_ms // 1000)[:3]
        path = args.out / f"{args.symbol}-trades-{y:04d}-{m:02d}-{dd:02d}.csv"
        price = write_day(path, next_id, n, day_ms, price, rng, us=args.us)
        next_id += n
        print(f"{path} {n} trades")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
