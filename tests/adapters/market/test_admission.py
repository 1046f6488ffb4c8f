"""The admission path: a table per class of bad input, with real frames and capture lines.

Issue 10, "Accepted input that breaks later stages": each class below was once accepted
and broke a later stage. Live frames go through ``FrameIntake`` (what the WebSocket
reader calls), capture lines through ``ReplayStream`` and a real ``hybrid-engine replay``
subprocess, all through ``engine.adapters.market.admission``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.adapters.market import admission, binance, coinbase
from engine.adapters.market.admission import (
    BAND_CONFIRM_TICKS,
    REFUSAL_LOG_EVERY,
    REFUSAL_LOG_FIRST,
    Admission,
    AdmissionSettings,
    Refusal,
    parse_decimal,
    parse_symbol,
)
from engine.adapters.market.decoding import MalformedMessage
from engine.adapters.market.dedup import TradeDedup
from engine.adapters.market.replay import ReplayStream
from engine.adapters.market.ws.intake import FrameIntake
from engine.config.schema import IngestSection, Source, Venue
from engine.core.events import Tick
from engine.counters import Counters
from engine.logs import Captured
from engine.ports import TickBatch
from tests.fakes.engine_process import REAL_CAPTURE, run_engine

NOW_MS = 1_796_000_000_000  # a receive time in 2026, for frames stamped "now"
NOW_NS = NOW_MS * 1_000_000
BTC_MATCH_TIME = (
    dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=NOW_MS)
).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
BIG = "1" + "7" * 75  # 76 significant digits: finite, once "inside the range"


def real_trade_frames(count: int) -> list[dict[str, Any]]:
    """The first ``count`` real Binance trade events of the bundled capture (decoded JSON)."""
    out: list[dict[str, Any]] = []
    with gzip.open(REAL_CAPTURE, "rb") as capture:
        for line in capture:
            _, _, payload = line.partition(b" ")
            if payload.startswith(b'{"stream":"btcusdt@trade"'):
                out.append(json.loads(payload))
                if len(out) == count:
                    break
    return out


def binance_frame(t: int = 3735683259, **fields: object) -> bytes:
    """A real Binance trade frame (the capture's first), stamped now, with ``fields`` changed."""
    data: dict[str, object] = {
        "e": "trade", "E": NOW_MS + 1, "s": "BTCUSDT", "t": t, "p": "61837.63000000",
        "q": "0.02000000", "T": NOW_MS, "m": True, "M": True,
    }  # fmt: skip
    data.update(fields)
    symbol = str(data["s"]).lower() if isinstance(data["s"], str) else "x"
    return json.dumps({"stream": f"{symbol}@trade", "data": data}).encode()


def coinbase_frame(trade_id: int = 280232, **fields: object) -> bytes:
    message: dict[str, object] = {
        "type": "match", "trade_id": trade_id, "side": "sell", "size": "985",
        "price": "0.00001305", "product_id": "SKL-BTC", "sequence": 177100030,
        "time": BTC_MATCH_TIME,
    }  # fmt: skip
    message.update(fields)
    return json.dumps(message).encode()


def intake(venue: Venue = Venue.BINANCE, symbols: tuple[str, ...] = ("BTCUSDT",),
           **section: Any) -> tuple[FrameIntake, Counters]:  # fmt: skip
    counters = Counters()
    cfg = IngestSection(source=Source.WEBSOCKET, venue=venue, symbols=symbols,
                        max_parse_errors_per_min=100_000, **section)  # fmt: skip
    return FrameIntake(cfg, counters, TradeDedup()), counters


def refused(counters: Counters) -> dict[str, int]:
    return {r.value: getattr(counters, f"refused_{r.value}") for r in Refusal if
            getattr(counters, f"refused_{r.value}")}  # fmt: skip


# -- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("61837.63000000", "61837.63000000"),
        ("0.02000000", "0.02000000"),
        ("0.000000000001", "1E-12"),
        ("999999999999999", "999999999999999"),
        ("999999999999999.999999999999", "999999999999999.999999999999"),
        ("0.100000000000000000000000", "0.100000000000000000000000"),  # 12 places + 12 zeros
        ("1.5E+3", "1500"),
        ("2.5e-5", "0.000025"),
        ("7", "7"),
    ],
)
def test_parse_decimal_admits_exact_value(text: str, value: str) -> None:
    got = parse_decimal(text)
    assert got is not None and got == Decimal(value) and str(got) == str(Decimal(value))


@pytest.mark.parametrize(
    "text",
    [
        " 5 ", "5 ", " 5", "+5", "-5", "1_000", "\u0665", "\u0661\u0662\u0663", "\uff15",
        "5\u00b2", "NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", "1E+99", "1e-13",
        "1E+15", "0", "0.0", "0.00000000", "5.", ".5", "05", "00.5", "1000000000000000",
        "0.0000000000001", "0.1000000000001", BIG, "1." + "1" * 75, "", ".", "e5", "1e",
        "0x10", "1,5", "1.5.5", "1.5E+3 ", "\x00", "5\n", "1" * 100_000,
    ],
)  # fmt: skip
def test_parse_decimal_refuses_lenient_or_unbounded_text(text: str) -> None:
    assert parse_decimal(text) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("p", " 5 "), ("p", "+5"), ("q", "1_000"), ("p", "\u0665"), ("p", BIG), ("q", "NaN"),
     ("p", "1E+99"), ("p", "0"), ("q", "-0.5")],
)  # fmt: skip
def test_binance_frame_with_bad_number_is_malformed_number(field: str, value: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        binance.decode(binance_frame(**{field: value}), NOW_NS)
    assert info.value.refusal == Refusal.NUMBER


@pytest.mark.parametrize(("field", "value"), [("price", BIG), ("size", "+985"), ("price", "1e-20")])
def test_coinbase_frame_with_bad_number_is_malformed_number(field: str, value: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        coinbase.decode_coinbase(coinbase_frame(**{field: value}), NOW_NS)
    assert info.value.refusal == Refusal.NUMBER


def test_binance_json_number_instead_of_string_is_malformed() -> None:
    with pytest.raises(MalformedMessage):
        binance.decode(binance_frame(p=5.5), NOW_NS)


def test_intake_counts_number_refusal_in_parse_errors_and_by_reason() -> None:
    take, counters = intake()
    assert take.accept(binance_frame(p=BIG), NOW_NS, 0.0) is None
    assert (counters.parse_errors, refused(counters)) == (1, {"number": 1})


# -- symbols ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "symbol"), [("BTCUSDT", "BTCUSDT"), ("btcusdt", "BTCUSDT"), ("BTC-USD", "BTC-USD"),
                         ("1INCHUSDT", "1INCHUSDT"), ("A" * 32, "A" * 32)],
)  # fmt: skip
def test_parse_symbol_admits(text: str, symbol: str) -> None:
    assert parse_symbol(text) == symbol


@pytest.mark.parametrize(
    "text",
    ["\ufeffBTCUSDT", "BTC\u202eUSDT", "BTC\nUSDT", "BTC USDT", " BTCUSDT", "BTCUSDT ",
     "ZZZ' OR 1=1--", "\ufb00", "", "A" * 33, "-BTC", "BTC-", "BTC_USD", "BTCUSDT\x00",
     "B\u0130TC", "\u212aBTC", "BTC/USD", "BTC\tUSD"],
)  # fmt: skip
def test_parse_symbol_refuses(text: str) -> None:
    assert parse_symbol(text) is None


@pytest.mark.parametrize("symbol", ["\ufeffBTCUSDT", "BTC\u202eUSDT", "BTC\nUSDT", "BTC USDT"])
def test_binance_frame_with_bad_symbol_is_malformed_symbol(symbol: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        binance.decode(binance_frame(s=symbol), NOW_NS)
    assert info.value.refusal == Refusal.SYMBOL


def test_coinbase_frame_with_bad_product_is_malformed_symbol() -> None:
    with pytest.raises(MalformedMessage) as info:
        coinbase.decode_coinbase(coinbase_frame(product_id="SKL-BTC\u202e"), NOW_NS)
    assert info.value.refusal == Refusal.SYMBOL


# -- subscriptions ----------------------------------------------------------------------


def test_binance_live_unsubscribed_and_junk_symbols_never_admitted() -> None:
    take, counters = intake()
    frames = [binance_frame(1, s="ETHUSDT"), binance_frame(2, s="ZZZ' OR 1=1--"),
              binance_frame(3, s="BTCUSDT"), binance_frame(4, s="ethusdt")]  # fmt: skip
    ticks = [take.accept(f, NOW_NS, 0.0) for f in frames]
    assert [t.event_id if t else None for t in ticks] == [None, None, "binance:BTCUSDT:3", None]
    assert refused(counters) == {"unsubscribed": 2, "symbol": 1}


def test_coinbase_live_other_products_never_admitted() -> None:
    take, counters = intake(Venue.COINBASE, ("SKL-BTC",))
    frames = [coinbase_frame(1, product_id="BTC-USD"), coinbase_frame(2)]
    ticks = [take.accept(f, NOW_NS, 0.0) for f in frames]
    assert [t.symbol if t else None for t in ticks] == [None, "SKL-BTC"]
    assert refused(counters) == {"unsubscribed": 1}


def test_replay_admits_any_well_formed_symbol() -> None:
    adm = Admission(Counters())
    tick = binance.decode(binance_frame(s="ETHUSDT"), NOW_NS)
    assert tick is not None and adm.admit(tick)


# -- event time -------------------------------------------------------------------------

YEAR_2100_MS = 4_102_444_800_000


@pytest.mark.parametrize(
    ("t_ms", "admitted"),
    [(YEAR_2100_MS, False), (0, False), (NOW_MS - 301_000, False), (NOW_MS + 301_000, False),
     (NOW_MS - 299_000, True), (NOW_MS + 299_000, True), (NOW_MS - 1_200, True)],
)  # fmt: skip
def test_event_time_window_default_five_minutes(t_ms: int, admitted: bool) -> None:
    take, counters = intake()
    tick = take.accept(binance_frame(T=t_ms, E=t_ms), NOW_NS, 0.0)
    assert (tick is not None) is admitted
    assert refused(counters) == ({} if admitted else {"event_time": 1})


def test_event_time_window_configurable() -> None:
    take, _ = intake(event_time_window_s=3600.0)
    assert take.accept(binance_frame(T=NOW_MS - 1_800_000), NOW_NS, 0.0) is not None


def test_trade_stamped_2100_never_reaches_bars_later_trades_signal() -> None:
    from engine.core.strategy import SmaCross

    take, counters = intake()
    strategy = SmaCross(2, 5, 1)  # one-second bars
    times = [NOW_MS, YEAR_2100_MS] + [NOW_MS + 1000 * (i + 1) for i in range(60)]
    prices = ["60000", "60000"] + [str(60000 + (i % 7) * 10 - i) for i in range(60)]
    ticks = []
    for i, (t_ms, price) in enumerate(zip(times, prices, strict=True)):
        received = (min(t_ms, NOW_MS + 61_000) + 5) * 1_000_000  # 5 ms after the print
        tick = take.accept(binance_frame(i + 1, T=t_ms, E=t_ms, p=price), received, 0.0)
        if tick is not None:
            ticks.append(tick)
    assert [t.trade_id for t in ticks] == [1, *range(3, 63)]
    assert counters.refused_event_time == 1
    decisions = strategy.on_batch(ticks)
    assert any(type(d).__name__ == "Signal" for d in decisions)


# -- trade ids --------------------------------------------------------------------------


def test_huge_trade_id_refused_and_later_real_trades_admitted() -> None:
    take, counters = intake()
    ids = [3735683259 + i for i in range(50)]
    got = [take.accept(binance_frame(t), NOW_NS, 0.0) for t in ids[:10]]
    assert take.accept(binance_frame(2**63 - 1), NOW_NS, 0.0) is None
    got += [take.accept(binance_frame(t), NOW_NS, 0.0) for t in ids[10:]]
    assert [t.trade_id for t in got if t is not None] == ids
    assert refused(counters) == {"id_jump": 1} and counters.duplicates == 0


def test_trade_id_beyond_64_bits_is_malformed() -> None:
    take, counters = intake()
    assert take.accept(binance_frame(2**63), NOW_NS, 0.0) is None
    assert counters.parse_errors == 1


# -- price band -------------------------------------------------------------------------


def test_outlier_print_refused_band_follows_real_prices() -> None:
    take, counters = intake()
    prices = ["61837.63", "61840.00", "999999999999999", "61841.10", "0.00000001", "61850"]
    got = [take.accept(binance_frame(i, p=p), NOW_NS, 0.0) for i, p in enumerate(prices, 1)]
    assert [t.price if t else None for t in got] == [
        Decimal("61837.63"), Decimal("61840.00"), None, Decimal("61841.10"), None,
        Decimal("61850"),
    ]  # fmt: skip
    assert refused(counters) == {"price_band": 2}


def test_band_moves_with_admitted_ticks_a_slow_trend_is_never_refused() -> None:
    adm = Admission(Counters())
    price = Decimal(100)
    for i in range(1, 400):
        price = price * Decimal("1.009")  # +0.9 % a tick, 35x overall
        tick = binance.decode(binance_frame(i, p=str(price.quantize(Decimal("0.0001")))), NOW_NS)
        assert tick is not None and adm.admit(tick), i


def test_band_reanchors_after_consistent_refusals_bad_first_tick_cannot_blind() -> None:
    counters = Counters()
    adm = Admission(counters)
    first = binance.decode(binance_frame(1, p="999999999999999"), NOW_NS)  # a bad first print
    assert first is not None and adm.admit(first)
    verdicts = []
    for i in range(2, 12):
        tick = binance.decode(binance_frame(i, p=f"6183{i % 10}.5"), NOW_NS)
        assert tick is not None
        verdicts.append(adm.admit(tick))
    assert verdicts == [False] * (BAND_CONFIRM_TICKS - 1) + [True] * (11 - BAND_CONFIRM_TICKS)
    assert counters.refused_price_band == BAND_CONFIRM_TICKS - 1
    assert counters.band_reanchors == 1


def test_bogus_first_trade_id_reanchors_counted_later_trades_admitted() -> None:
    take, counters = intake()
    assert take.accept(binance_frame(2**63 - 1), NOW_NS, 0.0) is not None  # nothing to judge by
    got = [take.accept(binance_frame(t), NOW_NS, 0.0) for t in range(3735683259, 3735683300)]
    assert [t is not None for t in got] == [False, False] + [True] * 39
    assert (counters.refused_id_jump, counters.id_reanchors) == (2, 1)


def test_band_configurable() -> None:
    take, _ = intake(price_band_pct=Decimal("50"))
    got = [take.accept(binance_frame(i, p=p), NOW_NS, 0.0) for i, p in
           enumerate(["100", "140", "300"], 1)]  # fmt: skip
    assert [t is not None for t in got] == [True, True, False]


# -- counters and samples ---------------------------------------------------------------


def test_every_refusal_reason_is_a_heartbeat_counter() -> None:
    snapshot = Counters().snapshot()
    assert all(f"refused_{r.value}" in snapshot for r in Refusal)


def test_refusals_sampled_in_the_log_all_counted(log_lines: Captured) -> None:
    take, counters = intake()
    for i in range(2 * REFUSAL_LOG_EVERY):
        take.accept(binance_frame(i, s="ETHUSDT"), NOW_NS, 0.0)
    assert counters.refused_unsubscribed == 2 * REFUSAL_LOG_EVERY
    samples = log_lines.events("tick_refused")
    assert len(samples) == REFUSAL_LOG_FIRST + 2
    assert samples[0]["reason"] == "unsubscribed" and samples[0]["symbol"] == "ETHUSDT"


def test_settings_from_section_bounds_and_subscription() -> None:
    section = IngestSection(symbols=("btcusdt", "ETHUSDT"), event_time_window_s=60.0,
                            price_band_pct=Decimal("5"))  # fmt: skip
    live = AdmissionSettings.from_section(section, live=True)
    assert live == AdmissionSettings(60.0, Decimal("5"), frozenset({"BTCUSDT", "ETHUSDT"}))
    assert AdmissionSettings.from_section(section).subscribed is None


# -- replay: the same path, judged against the recorded receive time ----------------------


def capture_with_hostile_lines(path: Path, clean: Path) -> None:
    """The first 3,000 real trades, then hostile ones; ``clean`` gets only the real ones."""
    real = real_trade_frames(3000)
    last = real[-1]["data"]
    lines = [f"{ev['data']['T'] * 1_000_000 - 1_200_000_000} {json.dumps(ev)}" for ev in real]
    clean.write_text("\n".join(lines) + "\n")
    recv = last["T"] * 1_000_000

    def hostile(**fields: object) -> str:
        data = dict(last, **fields)
        return f"{recv} {json.dumps({'stream': 'btcusdt@trade', 'data': data})}"

    lines += [
        hostile(t=2**63 - 1),                          # id far beyond the dedup window
        hostile(t=last["t"] + 1, T=YEAR_2100_MS),      # stamped in 2100
        hostile(t=last["t"] + 2, T=0),                 # stamped in 1970
        hostile(t=last["t"] + 3, p="999999999999999"),  # an outlier print
        hostile(t=last["t"] + 4, p=" 5 "),
        hostile(t=last["t"] + 5, s="BTC USDT"),
        hostile(t=last["t"] + 6, p=BIG),               # 76 digits, and the last tick
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


async def test_replay_stream_refuses_each_class_counts_conserve(tmp_path: Path) -> None:
    capture, clean = tmp_path / "hostile.txt", tmp_path / "clean.txt"
    capture_with_hostile_lines(capture, clean)
    counters = Counters()
    send, receive = trio.open_memory_channel[TickBatch](100)
    async with send:
        await ReplayStream([capture], counters).stream(send)
    ticks: list[Tick] = [t async for batch in receive for t in batch]
    assert len(ticks) == 3000
    assert refused(counters) == {"id_jump": 1, "event_time": 2, "price_band": 1, "number": 2,
                                 "symbol": 1}  # fmt: skip
    plausibility = sum(getattr(counters, f"refused_{r}") for r in
                       ("unsubscribed", "event_time", "id_jump", "price_band"))  # fmt: skip
    assert counters.ingest_received == (
        counters.ingest_processed + counters.skipped_messages + counters.parse_errors
        + counters.duplicates + plausibility
    )


def test_replay_cli_hostile_capture_exit_0_report_0_same_digest_as_clean(tmp_path: Path) -> None:
    capture, clean = tmp_path / "hostile.txt", tmp_path / "clean.txt"
    capture_with_hostile_lines(capture, clean)
    config = tmp_path / "paper.toml"
    config.write_text('[engine]\nmode = "paper"\n[strategy]\nfast = 2\nslow = 5\nbar_seconds = 0\n')
    digests = []
    for name, path in (("hostile", capture), ("clean", clean)):
        db = tmp_path / f"{name}.db"
        result = run_engine(["replay", str(path), "--config", str(config), "--db", str(db)])
        assert result.returncode == 0, result.stderr[-2000:]
        report = run_engine(["report", "--db", str(db)])
        assert report.returncode == 0, report.stdout + report.stderr
        digests.append(run_engine(["digest", "--db", str(db)]).stdout.strip())
        if name == "hostile":
            beat = [json.loads(x) for x in result.stdout.splitlines() if '"heartbeat"' in x][-1]
            assert (beat["refused_id_jump"], beat["refused_event_time"],
                    beat["refused_price_band"], beat["refused_number"]) == (1, 2, 1, 2)  # fmt: skip
    assert digests[0] == digests[1] != ""


def test_module_bounds_are_what_the_docs_say() -> None:
    assert (Decimal("1E-12"), Decimal("1E+15")) == (admission.MIN_VALUE, admission.MAX_VALUE)
    assert admission.MAX_SIGNIFICANT_DIGITS == 27


@pytest.mark.parametrize(
    ("env", "value"),
    [("ENGINE_INGEST_PRICE_BAND_PCT", "0"), ("ENGINE_INGEST_PRICE_BAND_PCT", "1001"),
     ("ENGINE_INGEST_PRICE_BAND_PCT", "NaN"), ("ENGINE_INGEST_EVENT_TIME_WINDOW_S", "0.5"),
     ("ENGINE_INGEST_EVENT_TIME_WINDOW_S", "1e9"), ("ENGINE_INGEST_EVENT_TIME_WINDOW_S", "nan")],
)  # fmt: skip
def test_admission_config_out_of_range_exit_12_naming_the_key(env: str, value: str) -> None:
    result = run_engine(["config"], env={env: value})
    assert result.returncode == 12
    [line] = [x for x in result.stderr.splitlines() if x.strip()]
    assert env.removeprefix("ENGINE_INGEST_").lower() in line and "Traceback" not in line
