"""The tape: which trades a run processed, when the ticks themselves are not stored.

A replay may leave its ticks out of the database (``[engine] store_ticks = false``:
their source is already on disk, and they are most of a 30-day database). Restore
still needs two facts from them (``engine.store.restore``): the trade ids whose
effects are persisted (``tape_islands``, so a continued run skips exactly those)
and each symbol's latest price (``marks``). Instead of one row per tick, each
persisted batch writes one ``tape`` row per run of consecutive trade ids of a
``venue:symbol`` *in arrival order*: its first and last id and the event time and
price of its last tick. A batch of 1,000 in-order trades of one symbol is one row.

Written in the same transaction as the batch's other records, so the database
holds a consistent prefix whichever is stored (``engine.core.restored``). Rows of
two runs over the same trades may overlap (batches are cut by time, not by id):
restore merges the ranges. Not part of the digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from engine.core.events import Record, Tick
from engine.store.schema import RecordTable

TapeRow = tuple[str, str, int, int, int, str]

TAPE_TABLE: Final[RecordTable] = RecordTable(
    Tick,  # written from the batch's ticks; not one of RECORD_TABLES (no record per row)
    "tape",
    ("venue", "symbol", "first_trade_id", "last_trade_id", "ts_event", "price"),
    ("venue", "symbol", "first_trade_id", "last_trade_id"),
    False,
    tuple,  # tape_rows builds the row tuples itself
    tuple,  # read as plain rows (engine.store.restore)
)


def tape_rows(ticks: Sequence[Record]) -> list[TapeRow]:
    """The ``tape`` rows of one batch's ticks (see the module docstring).

    Rows are emitted as their run ends; each ``venue:symbol``'s last run comes after
    its earlier ones, so its latest row (by rowid) holds its latest tick.
    """
    rows: list[TapeRow] = []
    open_runs: dict[tuple[str, str], list[int | str]] = {}
    for tick in ticks:
        assert type(tick) is Tick
        key = (tick.venue, tick.symbol)
        run = open_runs.get(key)
        if run is not None and tick.trade_id == run[1] + 1:  # type: ignore[operator]
            run[1] = tick.trade_id
            run[2] = tick.ts_event
            run[3] = str(tick.price)
            continue
        if run is not None:
            rows.append((*key, run[0], run[1], run[2], run[3]))  # type: ignore[arg-type]
        open_runs[key] = [tick.trade_id, tick.trade_id, tick.ts_event, str(tick.price)]
    for key, run in open_runs.items():
        rows.append((*key, run[0], run[1], run[2], run[3]))  # type: ignore[arg-type]
    return rows
