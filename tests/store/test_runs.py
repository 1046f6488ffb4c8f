"""One database, one account (engine.store.runs, engine.runtime.identity): run rows, run ids
on records, the continuation rules, per-run counts. In process, on real SQLite files."""

from __future__ import annotations

import gzip
import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.load import load_config
from engine.config.schema import Config
from engine.core.events import Fill, Side, Signal, Tick
from engine.proof.evidence import risk_config_hash
from engine.runtime.identity import (
    HASH_SPAN_BYTES,
    first_trade_ns,
    head_tail_sha256,
    identify_capture,
    identify_run,
)
from engine.store import schema
from engine.store.digest import digest
from engine.store.runs import (
    AccountMismatch,
    CaptureIdentity,
    RunIdentity,
    check_continuation,
    continuation_refusal,
    counted_run_counts,
    load_runs,
)
from engine.store.schema import RUN_TAGGED_TABLES
from engine.store.sqlite_store import SqliteStore
from engine.store.summary import run_summary, summary_text
from tests.fakes.engine_process import REAL_CAPTURE
from tests.fakes.legacy_store import open_legacy_store

BTC_TRADE = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":%d,"s":"BTCUSDT","t":%d,'
    b'"p":"61000.10","q":"0.001","T":%d,"m":false,"M":true}}'
)
FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # tmp_path_factory: one fresh db per example


def trade_line(trade_id: int, t_ms: int) -> bytes:
    return b"%d %s\n" % (t_ms * 1_000_000 + 5, BTC_TRADE % (t_ms, trade_id, t_ms))


def write_capture(path: Path, lines: list[bytes]) -> Path:
    with gzip.open(path, "wb") as f:
        f.writelines(lines)
    return path


def tick(n: int, ts: int | None = None) -> Tick:
    return Tick(event_id=f"binance:BTCUSDT:{n}", venue="binance", symbol="BTCUSDT", trade_id=n,
                ts_event=ts if ts is not None else 1_000 + n, ts_recv=2_000 + n,
                price=Decimal("61000.10"), qty=Decimal("0.001"))


def signal(n: int) -> Signal:
    return Signal(signal_id=f"sig:{n}", symbol="BTCUSDT", side=Side.BUY, ts_event=1_000 + n,
                  ts_recv=2_000 + n, price=Decimal("61000.10"), cause_id=f"binance:BTCUSDT:{n}")


def fill(n: int) -> Fill:
    return Fill(fill_id=f"fill:{n}", order_id=f"ord:{n}", symbol="BTCUSDT", side=Side.BUY,
                qty=Decimal(1), price=Decimal(2), fee=Decimal(0), cash_delta=Decimal(-2),
                position_delta=Decimal(1), ts_event=1_000 + n)


def identity(mode: str = "shadow", risk: str = "r" * 64,
             captures: tuple[CaptureIdentity, ...] = (), kind: str = "sma_cross",
             params: dict[str, object] | None = None) -> RunIdentity:
    return RunIdentity(mode=mode, strategy_kind=kind,
                       strategy_params={"fast": 5} if params is None else params,
                       risk_config_hash=risk, source_kind="replay" if captures else "synthetic",
                       source={}, captures=captures)


def capture(
    name: str, first: int | None, size: int = 10, sha: str | None = None
) -> CaptureIdentity:
    return CaptureIdentity(name=name, size=size, head_tail_sha256=sha or name * 8,
                           first_event_ns=first)


def start(store: SqliteStore, run_id: str, who: RunIdentity) -> None:
    store.start_run(run_id, 1, "replay", who.mode, 0, "v", "{}", who)


# -------------------------------------------------------------- run ids on records


def test_records_carry_the_run_that_first_wrote_them(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    start(store, "run-a", identity())
    store.write_records([tick(1), tick(2), signal(1), fill(1)])
    store.end_run("run-a", 1, 0, True)
    start(store, "run-b", identity())  # a later run repeating one record and adding one
    store.write_records([tick(2), tick(3)])
    conn = store.connection
    assert conn.execute("SELECT trade_id, run_id FROM ticks ORDER BY trade_id").fetchall() == [
        (1, "run-a"), (2, "run-a"), (3, "run-b")]
    assert conn.execute("SELECT run_id FROM signals").fetchall() == [("run-a",)]
    assert conn.execute("SELECT run_id FROM fills").fetchall() == [("run-a",)]
    store.end_run("run-b", 2, 0, True)
    counts = dict(conn.execute("SELECT run_id, counts_json FROM runs").fetchall())
    assert json.loads(counts["run-a"])["ticks"] == 2
    assert json.loads(counts["run-b"])["ticks"] == 1  # its own rows only, not the store's
    store.close()


def test_every_trading_table_has_run_id_and_no_digest_column_is_run_id(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    tables = {spec.table for spec in schema.RECORD_TABLES.values()}
    assert tables == set(RUN_TAGGED_TABLES)
    for table in RUN_TAGGED_TABLES:
        columns = {r[1] for r in store.connection.execute(f"PRAGMA table_info({table})")}
        assert "run_id" in columns, table
    for spec in schema.DIGEST_TABLES:
        assert "run_id" not in spec.columns
    store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(ids=st.lists(st.integers(0, 50), min_size=1, max_size=40), split=st.integers(0, 40))
def test_digest_same_whichever_runs_wrote_the_records(
    tmp_path_factory: pytest.TempPathFactory, ids: list[int], split: int
) -> None:
    records = [r for n in ids for r in (tick(n), signal(n), fill(n))]
    digests = []
    for layout in ("one run", "two runs"):
        db = tmp_path_factory.mktemp("d") / "e.db"
        store = SqliteStore.open(db)
        if layout == "one run":
            start(store, "run-1", identity())
            store.write_records(records)
        else:
            start(store, "run-x", identity())
            store.write_records(records[: split * 3])
            start(store, "run-y", identity())
            store.write_records(records)
        digests.append(digest(store.connection))
        store.close()
    assert digests[0] == digests[1]


def test_end_run_records_counts_equal_to_rows_carrying_the_run_id(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    start(store, "run-a", identity())
    store.write_records([tick(1, ts=50), tick(2, ts=70), signal(1)])
    store.write_records([tick(2), tick(3, ts=60), fill(3)])  # one duplicate
    store.end_run("run-a", 9, 0, True)
    conn = store.connection
    recorded = json.loads(conn.execute("SELECT counts_json FROM runs").fetchone()[0])
    assert recorded == {"ticks": 3, "signals": 1, "orders": 0, "fills": 1, "vetoes": 0}
    assert counted_run_counts(conn, ["run-a"])["run-a"] == recorded
    # first / last trade in arrival order (no capture head recorded for this run)
    assert conn.execute("SELECT first_event_ns, last_event_ns FROM runs").fetchone() == (50, 60)
    [run] = load_runs(conn, 5)
    assert run.counts == recorded and run.counts_recorded
    store.close()


def test_load_runs_counts_a_run_that_never_ended_from_its_run_ids(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    start(store, "run-killed", identity())
    store.write_records([tick(1), tick(2), signal(2)])
    [run] = load_runs(store.connection, 5)
    assert run.ended_wall_ns is None and not run.counts_recorded
    assert run.counts == {"ticks": 2, "signals": 1, "orders": 0, "fills": 0, "vetoes": 0}
    store.close()


# -------------------------------------------------------------- the continuation rules


def test_mode_switch_refused_naming_both_modes_and_a_new_db(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    start(store, "run-a", identity("shadow"))
    reason = continuation_refusal(store.connection, identity("paper"), "e.db")
    assert reason is not None
    assert "holds shadow runs" in reason and "this run is paper" in reason
    assert "new --db" in reason and "\n" not in reason
    with pytest.raises(AccountMismatch):
        check_continuation(store.connection, identity("paper"), "e.db")
    assert continuation_refusal(store.connection, identity("shadow"), "e.db") is None
    store.close()


def test_other_risk_config_refused_same_continues(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    start(store, "run-a", identity(risk="a" * 64))
    reason = continuation_refusal(store.connection, identity(risk="b" * 64), "e.db")
    assert reason is not None and "aaaaaaaaaaaa" in reason and "bbbbbbbbbbbb" in reason
    assert continuation_refusal(store.connection, identity(risk="a" * 64), "e.db") is None
    store.close()


def test_other_strategy_kind_or_parameters_refused_naming_both(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    start(store, "run-a", identity(params={"fast": 5, "slow": "20"}))
    conn = store.connection
    kind = continuation_refusal(conn, identity(kind="donchian_breakout", params={"n": 20}), "e.db")
    assert kind is not None and "\n" not in kind and "new --db" in kind
    assert 'strategy sma_cross {"fast":5,"slow":"20"}' in kind
    assert "this run's strategy is donchian_breakout" in kind
    other = continuation_refusal(conn, identity(params={"fast": 3, "slow": "20"}), "e.db")
    assert other is not None and '{"fast":3,"slow":"20"}' in other
    # the same kind and parameters, whatever order the keys come in, continue
    assert continuation_refusal(conn, identity(params={"slow": "20", "fast": 5}), "e.db") is None
    store.close()


def test_strategy_refusal_line_is_bounded_for_a_long_user_kind(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    start(store, "run-a", identity())
    long_kind = "strategies/" + "x" * 400 + ".py:Mine"
    reason = continuation_refusal(store.connection, identity(kind=long_kind), "e.db")
    assert reason is not None and len(reason) < 700 and "..." in reason
    store.close()


def test_database_predating_run_identity_missing_hash_is_compatible_mode_still_binds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "old.db"
    legacy = open_legacy_store(db, monkeypatch)
    legacy.connection.execute(
        "INSERT INTO ticks (event_id, venue, symbol, trade_id, ts_event, ts_recv, price, qty)"
        " VALUES ('binance:BTCUSDT:1', 'binance', 'BTCUSDT', 1, 500, 501, '1', '1')")
    legacy.close()
    store = SqliteStore.open(db)  # applies 0005: the old rows read NULL in the new columns
    conn = store.connection
    assert conn.execute("SELECT risk_config_hash, source_json FROM runs").fetchone() == (None, None)
    assert conn.execute("SELECT run_id FROM ticks").fetchone() == (None,)
    assert continuation_refusal(conn, identity("shadow", risk="z" * 64), "old.db") is None
    assert continuation_refusal(conn, identity(kind="donchian_breakout"), "old.db") is None
    assert continuation_refusal(conn, identity("paper"), "old.db") is not None
    [run] = load_runs(conn, 5)
    assert run.run_id == "run-old" and run.mode == "shadow"
    store.close()


def test_capture_rules_known_next_older_and_headless(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    day1 = capture("day1", first=1_000)
    start(store, "run-1", identity(captures=(day1,)))
    store.write_records([tick(1, ts=1_000), tick(2, ts=2_000)])
    conn = store.connection
    ok = [identity(captures=(day1,)),  # the same capture again (restart after a crash)
          identity(captures=(capture("day1 renamed", 1_000, sha=day1.head_tail_sha256),)),
          identity(captures=(capture("day2", 2_000),)),  # starts at the last trade held
          identity(captures=(day1, capture("day2", 2_500)))]
    for who in ok:
        assert continuation_refusal(conn, who, "e.db") is None, who
    older = continuation_refusal(conn, identity(captures=(capture("day0", 1_999),)), "e.db")
    assert older is not None and "capture day0 starts at" in older and "before the last" in older
    headless = continuation_refusal(conn, identity(captures=(capture("junk", None),)), "e.db")
    assert headless is not None and "no trade found" in headless
    store.close()


def test_capture_rules_empty_account_takes_any_capture(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    start(store, "run-1", identity())  # a run that wrote no trades
    assert continuation_refusal(
        store.connection, identity(captures=(capture("junk", None),)), "e.db") is None
    store.close()


MODES = st.sampled_from(["shadow", "paper", "live"])
HASHES = st.sampled_from(["a" * 64, "b" * 64, None])
STRATEGIES = st.sampled_from([("sma_cross", {"fast": 5}), ("sma_cross", {"fast": 3}),
                              ("donchian_breakout", {"fast": 5})])


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(previous=st.lists(st.tuples(MODES, HASHES, st.none() | STRATEGIES), max_size=5),
       mode=MODES, risk=st.sampled_from(["a" * 64, "b" * 64]), strategy=STRATEGIES)
def test_refused_exactly_when_a_previous_mode_recorded_hash_or_strategy_differs(
    tmp_path_factory: pytest.TempPathFactory,
    previous: list[tuple[str, str | None, tuple[str, dict[str, object]] | None]],
    mode: str, risk: str, strategy: tuple[str, dict[str, object]],
) -> None:
    store = SqliteStore.open(tmp_path_factory.mktemp("p") / "e.db")
    for i, (m, h, s) in enumerate(previous):
        kind, params = (None, None) if s is None else (s[0], json.dumps(s[1]))
        store.connection.execute(
            "INSERT INTO runs (run_id, mode, risk_config_hash, strategy_kind,"
            " strategy_params_json) VALUES (?, ?, ?, ?, ?)", (f"r{i}", m, h, kind, params))
    who = identity(mode, risk, kind=strategy[0], params=strategy[1])
    refused = continuation_refusal(store.connection, who, "e.db") is not None
    expected = any(m != mode or (h is not None and h != risk) or (s is not None and s != strategy)
                   for m, h, s in previous)
    assert refused == expected
    store.close()


# -------------------------------------------------------------- identities


def test_capture_identity_of_the_real_capture(tmp_path: Path) -> None:
    got = identify_capture(REAL_CAPTURE)
    assert got.name == REAL_CAPTURE.name
    assert got.size == REAL_CAPTURE.stat().st_size
    assert got.first_event_ns == 1_723_161_255_342_000_000  # its first trade's T (ms -> ns)
    copy = tmp_path / "renamed.gz"
    copy.write_bytes(REAL_CAPTURE.read_bytes())
    again = identify_capture(copy)
    assert (again.size, again.head_tail_sha256) == (got.size, got.head_tail_sha256)


def test_head_tail_hash_sees_both_ends_not_the_middle(tmp_path: Path) -> None:
    size = 3 * HASH_SPAN_BYTES
    base = bytearray(b"x" * size)
    path = tmp_path / "c"
    variants = {}
    for name, at in (("same", None), ("head", 10), ("middle", size // 2), ("tail", size - 10)):
        data = bytearray(base)
        if at is not None:
            data[at] = ord("y")
        path.write_bytes(bytes(data))
        variants[name] = head_tail_sha256(path, size)
    assert variants["head"] != variants["same"] and variants["tail"] != variants["same"]
    assert variants["middle"] == variants["same"]  # the documented price of a cheap identity


def test_first_trade_skips_non_trades_and_is_bounded(tmp_path: Path) -> None:
    depth = b'1 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",' \
            b'"U":1,"u":2,"b":[],"a":[]}}\n'
    path = write_capture(tmp_path / "c.gz", [depth, b"garbage line\n", trade_line(7, 1_700)])
    assert first_trade_ns(path) == 1_700 * 1_000_000
    assert first_trade_ns(write_capture(tmp_path / "none.gz", [depth] * 3)) is None
    assert first_trade_ns(path, max_blocks=0) is None
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)  # gzip magic, corrupt stream
    assert first_trade_ns(junk) is None


def test_identify_run_binds_mode_strategy_risk_hash_and_source(tmp_path: Path) -> None:
    config = load_config(environ={"ENGINE_ENGINE_MODE": "paper", "ENGINE_STRATEGY_FAST": "3"})
    replay = identify_run(config, [str(REAL_CAPTURE)])
    assert replay.mode == "paper" and replay.strategy_kind == "sma_cross"
    assert replay.strategy_params == {"fast": 3, "slow": 20, "bar_seconds": 1}
    assert replay.risk_config_hash == risk_config_hash(config)
    assert replay.source_kind == "replay" and [c.name for c in replay.captures] == [
        REAL_CAPTURE.name]
    synthetic = identify_run(Config())
    assert synthetic.source_kind == "synthetic" and synthetic.source["seed"] == 1
    ws = identify_run(load_config(environ={"ENGINE_INGEST_SOURCE": "websocket"}))
    assert ws.source["venue"] == "binance" and ws.source["url"].startswith("wss://")


def test_run_row_records_identity_columns(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    who = identify_run(Config(), [str(REAL_CAPTURE)])
    start(store, "run-a", who)
    conn = sqlite3.connect(tmp_path / "e.db")
    row = conn.execute("SELECT strategy_kind, strategy_params_json, risk_config_hash, source_kind,"
                       " source_json, first_event_ns FROM runs").fetchone()
    conn.close()
    assert row[0] == "sma_cross" and json.loads(row[1]) == {"fast": 5, "slow": 20,
                                                            "bar_seconds": 1}
    assert row[2] == risk_config_hash(Config()) and row[3] == "replay"
    [entry] = json.loads(row[4])["captures"]
    assert entry["name"] == REAL_CAPTURE.name and entry["size"] == REAL_CAPTURE.stat().st_size
    assert row[5] == 1_723_161_255_342_000_000
    store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.one_of(
    st.binary(max_size=4096),
    st.binary(max_size=4096).map(gzip.compress),
    st.lists(st.sampled_from([trade_line(3, 1_500), b"1 {}\n", b"x\n", b"\n", b"9 [1]\n",
                              b'1 {"stream":"s","data":{"e":"trade"}}\n', b"\xff\xfe\n"]),
             max_size=20).map(b"".join),
))
def test_capture_identity_of_any_bytes_never_raises(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("c") / "capture"
    path.write_bytes(data)
    got = identify_capture(path)
    assert got.size == len(data)
    assert got.first_event_ns is None or got.first_event_ns == 1_500 * 1_000_000


def test_summary_names_mode_run_and_outcome_and_keeps_totals_apart(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "e.db")
    start(store, "run-a", identity("paper"))
    store.write_records([tick(1), tick(2), signal(1)])
    store.end_run("run-a", 1, 0, True)
    start(store, "run-b", identity("paper"))
    store.write_records([tick(2), tick(3)])
    store.end_run("run-b", 2, 13, False)
    summary = run_summary(store.connection, "run-b")
    store.close()
    text = summary_text(summary, "run", 13, str(tmp_path / "e.db")).splitlines()
    assert text[0] == ("run stopped with exit 13 (OVERLOAD), mode paper, run-b: this run wrote"
                       " 1 ticks, 0 signals, 0 orders, 0 fills, 0 vetoes")
    assert text[1].endswith("(2 runs, mode paper): 3 ticks, 1 signals, 0 orders, 0 fills, 0 vetoes")
    assert text[2].startswith(f"digest {summary.digest} of the database")
    assert "exit 99 (?)" in summary_text(summary, "run", 99, "e.db")
