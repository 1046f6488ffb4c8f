"""Capture files: both line formats, gzip by magic, exact timestamps, line numbering."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.market.capture import (
    MALFORMED,
    NON_DATA,
    CaptureFormat,
    CaptureLine,
    GzipReader,
    detect_format,
    format_capture_line,
    iter_capture,
    open_capture,
    parse_epoch_seconds,
    read_capture_blocks,
    read_line_blocks,
)

ROOT = Path(__file__).resolve().parents[3]
BINANCE = ROOT / "replays" / "btcusdt_20240808.gz"
COINBASE = ROOT / "tests" / "data" / "coinbase_sample.ws"

TRADE = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
    b'"t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
)


def test_iter_capture_real_binance_file_every_line_is_data() -> None:
    lines = list(iter_capture(BINANCE))
    assert len(lines) == 41_249
    assert all(line.ts_recv >= 0 for line in lines)
    assert [line.line_no for line in lines] == list(range(1, 41_250))
    assert lines[0].ts_recv == 1723161253937085768
    assert lines[0].payload.startswith(b'{"stream":"btcusdt@depth@100ms"')
    assert lines[-1].ts_recv == 1723161599999231384
    assert sum(b'"btcusdt@trade"' in line.payload for line in lines) == 9_757
    trade = next(line for line in lines if b"@trade" in line.payload)
    assert trade == CaptureLine(4, 1723161254087896568, TRADE)


def test_open_capture_gzip_detected_by_magic_not_name(tmp_path: Path) -> None:
    content = format_capture_line(1, TRADE) + format_capture_line(2, b"{}")
    gz_named_txt = tmp_path / "capture.txt"
    gz_named_txt.write_bytes(gzip.compress(content))
    plain_named_gz = tmp_path / "capture.gz"
    plain_named_gz.write_bytes(content)
    for path in (gz_named_txt, plain_named_gz):
        with open_capture(path) as f:
            assert f.read() == content
    assert (
        list(iter_capture(gz_named_txt))
        == list(iter_capture(plain_named_gz))
        == [
            CaptureLine(1, 1, TRADE),
            CaptureLine(2, 2, b"{}"),
        ]
    )


def test_iter_capture_cryptofeed_real_lines_exact_ns_and_markers_non_data() -> None:
    lines = list(iter_capture(COINBASE))
    assert len(lines) == 18
    assert [line.ts_recv for line in lines[:4]] == [NON_DATA] * 4  # wss:// markers
    assert [line.ts_recv for line in lines[-2:]] == [NON_DATA] * 2  # blank tail
    data = lines[4:16]
    assert all(line.ts_recv >= 0 for line in data)
    assert data[0] == CaptureLine(
        5,
        1618677817061845000,
        b'{"type":"subscriptions","channels":[{"name":"level2","product_ids":["BAND-GBP",'
        b'"BAND-BTC","YFI-BTC","NU-GBP","CRV-EUR","SKL-GBP","SKL-USD","SKL-BTC","NMR-EUR",'
        b'"DASH-BTC"]}]}',
    )
    match = next(line for line in data if b'"type":"match"' in line.payload)
    assert match.ts_recv == 1618677817129516100  # "1618677817.1295161", exact
    assert match.payload.startswith(b'{"type":"match","trade_id":280232,')
    assert [line.ts_recv for line in data][-1] == 1618677847846469900


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        (b"1618677817.1295161", 1618677817129516100),
        (b"1618677817.079", 1618677817079000000),
        (b"1618677817", 1618677817000000000),
        (b"1618677817.", 1618677817000000000),
        (b"0.000000001", 1),
        (b"1618677817.1234567899", 1618677817123456789),  # past ns: dropped, not rounded
    ],
)
def test_parse_epoch_seconds_exact(text: bytes, ns: int) -> None:
    assert parse_epoch_seconds(text) == ns


@pytest.mark.parametrize(
    "text", [b"", b"abc", b"-1.5", b"1.5e3", b"1,5", b"1.2.3", b" 1.5", b"9223372037"]
)
def test_parse_epoch_seconds_invalid_raises(text: bytes) -> None:
    with pytest.raises(ValueError, match="epoch-seconds"):
        parse_epoch_seconds(text)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_parse_epoch_seconds_inverse_of_ns_formatting(ns: int) -> None:
    text = b"%d.%09d" % divmod(ns, 1_000_000_000)
    assert parse_epoch_seconds(text) == ns


@pytest.mark.parametrize(
    ("line", "fmt"),
    [
        (b"1723161254087896568 {}", CaptureFormat.RECORDER),
        (b"1618677817.061845: {}", CaptureFormat.CRYPTOFEED),
        (b"wss://ws-feed.pro.coinbase.com <-> 1618677816.8434298", CaptureFormat.CRYPTOFEED),
        (b"garbage", CaptureFormat.RECORDER),
    ],
)
def test_detect_format_from_first_line(line: bytes, fmt: CaptureFormat) -> None:
    assert detect_format(line) is fmt


def test_iter_capture_recorder_malformed_and_blank_lines_classified(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_bytes(
        b"\n"  # 1 blank
        b"100 {}\n"  # 2 data
        b"no-timestamp {}\n"  # 3
        b"-5 {}\n"  # 4 negative
        b"12x {}\n"  # 5
        b"200\n"  # 6 no message
        b"200 \n"  # 7 empty message
        b"   \n"  # 8 blank (spaces)
        b"1_000 {}\n"  # 9 int() would take it; we do not
        b"9223372036854775808 {}\n"  # 2**63: beyond SQLite INTEGER
        b'300 {"a": 1}'  # 11 data, no final newline
    )
    got = [(line.line_no, line.ts_recv, line.payload) for line in iter_capture(path)]
    assert got == [
        (1, NON_DATA, b""),
        (2, 100, b"{}"),
        (3, MALFORMED, b"no-timestamp {}"),
        (4, MALFORMED, b"-5 {}"),
        (5, MALFORMED, b"12x {}"),
        (6, MALFORMED, b"200"),
        (7, MALFORMED, b"200 "),
        (8, NON_DATA, b""),
        (9, MALFORMED, b"1_000 {}"),
        (10, MALFORMED, b"9223372036854775808 {}"),
        (11, 300, b'{"a": 1}'),
    ]


def test_iter_capture_cryptofeed_malformed_lines_classified(tmp_path: Path) -> None:
    path = tmp_path / "c.ws"
    path.write_bytes(
        b"wss://x <-> 1.5\n"
        b"1.5: {}\n"
        b"1.5 {}\n"  # no colon
        b"x.5: {}\n"
        b"1.5:\n"
        b"1.5: \n"
        b"\n"
        b"2.25: [1]\n"
    )
    got = [(line.ts_recv, line.payload) for line in iter_capture(path)]
    assert got == [
        (NON_DATA, b""),
        (1_500_000_000, b"{}"),
        (MALFORMED, b"1.5 {}"),
        (MALFORMED, b"x.5: {}"),
        (MALFORMED, b"1.5:"),
        (MALFORMED, b"1.5: "),
        (NON_DATA, b""),
        (2_250_000_000, b"[1]"),
    ]


def test_iter_capture_empty_file_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert list(iter_capture(path)) == []


def test_read_capture_blocks_leading_blank_blocks_keep_line_numbers() -> None:
    content = b"\n" * 50 + b"7 {}\n" + b"\n" * 3 + b"8 {}\n"
    blocks = list(read_capture_blocks(io.BytesIO(content), block_bytes=16))
    flat = [
        (b.first_line_no + i, ts)
        for b in blocks
        for i, ts in enumerate(b.ts_recv)
        if ts != NON_DATA
    ]
    assert flat == [(51, 7), (55, 8)]
    assert sum(len(b.ts_recv) for b in blocks) == 55


@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=40),
    st.booleans(),
    st.integers(min_value=1, max_value=64),
)
def test_read_line_blocks_any_block_size_gives_the_same_lines(
    lines: list[bytes], final_newline: bool, block_bytes: int
) -> None:
    content = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    got = [ln for block in read_line_blocks(io.BytesIO(content), block_bytes) for ln in block]
    expected = content.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert got == expected


def test_format_capture_line_round_trips_through_iter_capture(tmp_path: Path) -> None:
    path = tmp_path / "rec.txt"
    path.write_bytes(format_capture_line(1723161254087896568, TRADE))
    assert list(iter_capture(path)) == [CaptureLine(1, 1723161254087896568, TRADE)]


def test_format_capture_line_newlines_in_json_become_spaces() -> None:
    assert format_capture_line(5, b'{\r\n "a": 1\n}') == b'5 {   "a": 1 }\n'


def test_format_capture_line_negative_ts_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_capture_line(-1, b"{}")


def test_gzip_reader_real_capture_equals_gzip_module() -> None:
    with open_capture(BINANCE) as f:
        assert isinstance(f, GzipReader)
        chunks = list(iter(lambda: f.read(1 << 16), b""))
    assert b"".join(chunks) == gzip.decompress(BINANCE.read_bytes())
    assert max(len(c) for c in chunks) <= 1 << 16  # read(size) bounds memory


def test_gzip_reader_concatenated_members_read_in_order(tmp_path: Path) -> None:
    path = tmp_path / "appended.gz"
    path.write_bytes(gzip.compress(b"1 {}\n") + gzip.compress(b"") + gzip.compress(b"2 {}\n"))
    assert [(ln.ts_recv, ln.payload) for ln in iter_capture(path)] == [(1, b"{}"), (2, b"{}")]


def test_gzip_reader_truncated_stream_returns_data_then_raises_eof(tmp_path: Path) -> None:
    content = b"".join(format_capture_line(i, TRADE) for i in range(1, 2001))
    packed = gzip.compress(content)
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[:-20])  # the trailer and some data are gone
    got = bytearray()
    with open_capture(path) as f, pytest.raises(EOFError, match="end-of-stream"):
        while chunk := f.read(1 << 12):
            got += chunk
    assert len(got) > len(content) // 2 and content.startswith(bytes(got))


def test_gzip_reader_garbage_after_magic_raises_bad_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with open_capture(path) as f, pytest.raises(gzip.BadGzipFile):
        f.read()


def test_gzip_reader_read_all_returns_everything() -> None:
    with open_capture(BINANCE) as f:
        assert f.read() == gzip.decompress(BINANCE.read_bytes())
        assert f.read(10) == b""


def test_iter_capture_timestamp_of_thousands_of_digits_malformed_not_a_crash(
    tmp_path: Path,
) -> None:
    # int() refuses digit strings past 4,300 digits with ValueError: one such line
    # must be a malformed line, not the end of the replay (docs/contract.md L3).
    path = tmp_path / "c.txt"
    huge = b"1" * 5000
    path.write_bytes(huge + b" {}\n" + b"100 {}\n")
    got = [(line.ts_recv, line.payload) for line in iter_capture(path)]
    assert got == [(MALFORMED, huge + b" {}"), (100, b"{}")]
    with pytest.raises(ValueError, match="not an epoch-seconds"):
        parse_epoch_seconds(huge + b".5")
