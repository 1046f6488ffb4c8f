"""Capture files: raw market-data messages with their local receive times, on disk.

Two line formats are read (detected per file from its first non-blank line):

* ``RECORDER`` -- ``<ts_recv_ns> <raw JSON>``: the format of the bundled Binance
  capture and of what our own recorder writes (``format_capture_line``).
* ``CRYPTOFEED`` -- cryptofeed's raw-data recorder: ``<epoch_s>: <json>`` for a
  received message, whose decimal seconds become exact integer nanoseconds
  (digits past the 9th are dropped, never rounded through a float); lines
  starting ``wss://`` mark a connection or a message *we sent* and are not data.

Either may be plain text or gzip, recognised by the gzip magic bytes, not the name.
The history CSV layouts of ``engine.adapters.market.history`` (Binance public
dumps, Tardis) are sniffed here too, and may also be a zip holding one file (the
way Binance publishes them).

Several captures may be named by a directory (its regular files, by name) or a
glob pattern (``expand_captures``).

*Sniffing* (``sniff_capture``, at start-up, before the pipeline): a file is only
replayed if one of its first lines has the shape of a supported format
(``CAPTURE_FORMATS``, a table a new format extends with its recogniser). A zip,
a CSV, random or NUL bytes, an empty file or a directory is refused with exit 12
and one line naming the file and the formats understood -- never a replay that
"completes" with 0 ticks. A file that starts well and turns bad later is not
refused: each bad line is counted as malformed (exit 11 beyond the rate).

*Why blocks:* a replay reads a million lines; a generator yielding one object per
line costs more than decoding it. ``read_capture_blocks`` reads ~1 MiB at a time and
splits each block into two parallel lists (receive times, payloads) in one tight
loop, so the consumer iterates plain lists. Memory stays bounded by one block.

Every line keeps its position: in a block, index ``i`` is line ``first_line_no + i``
(1-based), so a malformed line can be reported with its line number. A line that
is not a data message has a negative ``ts_recv`` sentinel: ``NON_DATA`` (blank
lines and ``wss://`` markers, payload ``b""``) or ``MALFORMED`` (no parsable
timestamp or no message; payload = the whole line, for the log sample).
"""

from __future__ import annotations

import enum
import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final, NamedTuple

from engine.adapters.market.history import SHAPES, HistoryFormat, is_history_format, recogniser
from engine.core.events import NS_PER_S
from engine.exits import ConfigError

READ_BLOCK_BYTES: Final = 1 << 20
"""Bytes read per block. Bound on memory: one block plus one partial line."""

GZIP_MAGIC: Final = b"\x1f\x8b"
ZIP_MAGIC: Final = b"PK\x03\x04"
CRYPTOFEED_MARKER: Final = b"wss://"
NON_DATA: Final = -1
"""``ts_recv`` of a line that carries no message (blank, connection/sent marker)."""
MALFORMED: Final = -2
"""``ts_recv`` of a line that should carry a message but has no parsable timestamp."""
MAX_TS_NS: Final = 2**63 - 1
"""A receive time must fit SQLite's signed 64-bit INTEGER; a larger one is malformed."""
MAX_TS_DIGITS: Final = len(str(MAX_TS_NS))
"""Longer digit runs are malformed before ``int()`` sees them: past 4,300 digits
``int()`` raises instead of returning (CPython's conversion limit)."""

_NS_DIGITS: Final = 9
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # gzip header and trailer


class CaptureFormat(enum.Enum):
    RECORDER = "recorder"
    CRYPTOFEED = "cryptofeed"


class CaptureBlock(NamedTuple):
    """Consecutive lines of a capture, split; ``ts_recv[i]``/``payloads[i]`` is one line."""

    first_line_no: int
    ts_recv: list[int]
    payloads: list[bytes]


class CaptureLine(NamedTuple):
    """One line of a capture (see the module docstring for the sentinels)."""

    line_no: int
    ts_recv: int
    payload: bytes


def open_capture(path: Path) -> io.BufferedIOBase:
    """Open a capture for binary reading, decompressing it if it starts with gzip magic,
    or opening the one file inside it if it starts with zip magic.

    *Resource handling:* the caller closes the returned file (``with``).
    *Error handling:* ``OSError`` as from ``open``; a corrupt gzip stream raises
    ``gzip.BadGzipFile`` and a truncated one ``EOFError`` while reading; a zip that
    is corrupt or holds other than exactly one file raises ``zipfile.BadZipFile``
    (here, or while reading).
    """
    raw = path.open("rb")
    try:
        magic = raw.read(len(ZIP_MAGIC))
        raw.seek(0)
        if magic == ZIP_MAGIC:
            return ZipMember(raw)
    except BaseException:
        raw.close()
        raise
    return GzipReader(raw) if magic[: len(GZIP_MAGIC)] == GZIP_MAGIC else raw


def stored_position(stream: io.BufferedIOBase) -> int:
    """How far into the file *as stored* ``stream`` (from ``open_capture``) has read."""
    raw = stream._raw if isinstance(stream, GzipReader | ZipMember) else stream
    return raw.tell()


class ZipMember(io.BufferedIOBase):
    """The one file inside a zip (a Binance dump), read forward; closes the zip too.

    ``zipfile`` decompresses a member incrementally: ``read(size)`` returns at most
    ``size`` bytes, so memory stays bounded as for gzip.
    """

    def __init__(self, raw: io.BufferedIOBase) -> None:
        super().__init__()
        self._raw = raw
        self._zip = zipfile.ZipFile(raw)
        try:
            members = [i for i in self._zip.infolist() if not i.is_dir()]
            if len(members) != 1:
                raise zipfile.BadZipFile(f"a zip capture holds one file, this one {len(members)}")
            self._member = self._zip.open(members[0])
        except BaseException:
            self._zip.close()
            raise

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._member.read(-1 if size is None else size)

    def close(self) -> None:
        self._member.close()
        self._zip.close()
        self._raw.close()
        super().close()


GZIP_INPUT_BYTES: Final = 1 << 17
"""Compressed bytes fed to zlib per call; output per ``read`` is capped at its ``size``."""


class GzipReader(io.BufferedIOBase):
    """A forward-only gzip reader that hands zlib big slices of input.

    *Why not ``gzip.GzipFile``:* on Python 3.11 it feeds zlib 8 KiB at a time,
    which costs about as much as decoding the real capture (32 ms vs 18 ms for a
    one-shot ``zlib`` call on its 11 MB). ``read(size)`` returns at most ``size``
    decompressed bytes (some, until EOF; ``b""`` at EOF), so memory stays bounded
    even for a highly compressible stream; ``read()`` returns everything. Concatenated members (a
    recorder that appends) are read one after another, like ``GzipFile`` does.

    *Error handling:* ``EOFError`` when the stream ends inside a member (after
    every byte that could be decompressed was returned); ``gzip.BadGzipFile``
    for data that is not gzip.
    """

    def __init__(self, raw: io.BufferedIOBase) -> None:
        super().__init__()
        self._raw = raw
        self._z = zlib.decompressobj(wbits=_GZIP_WBITS)
        self._input = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:  # io contract: everything up to EOF
            return b"".join(iter(lambda: self.read(READ_BLOCK_BYTES), b""))
        limit = max(size, 1)
        while True:
            z = self._z
            if z.eof:  # a member ended: another may follow
                self._input = z.unused_data + self._input
                if not self._input:
                    self._input = self._raw.read(GZIP_INPUT_BYTES)
                    if not self._input:
                        return b""
                self._z = z = zlib.decompressobj(wbits=_GZIP_WBITS)
            data = z.unconsumed_tail or self._input or self._raw.read(GZIP_INPUT_BYTES)
            self._input = b""
            if not data:
                out = z.flush()
                if out:
                    return out
                raise EOFError("gzip stream ended before the end-of-stream marker")
            try:
                out = z.decompress(data, limit)
            except zlib.error as exc:
                raise gzip.BadGzipFile(f"not a valid gzip stream: {exc}") from None
            if out:
                return out

    def close(self) -> None:
        self._raw.close()
        super().close()


def detect_format(line: bytes) -> CaptureFormat:
    """The format of a capture, from its first non-blank line."""
    if line.startswith(CRYPTOFEED_MARKER):
        return CaptureFormat.CRYPTOFEED
    head = line.partition(b" ")[0]
    return CaptureFormat.CRYPTOFEED if head.endswith(b":") else CaptureFormat.RECORDER


def parse_epoch_seconds(text: bytes) -> int:
    """``b"1618677817.1295161"`` -> ``1618677817129516100`` ns, exactly (no float).

    *Error handling:* ``ValueError`` unless ``text`` is digits with an optional
    fractional part of digits, and the time fits in ``MAX_TS_NS``.
    """
    whole, _, frac = text.partition(b".")
    if not whole.isdigit() or len(whole) > MAX_TS_DIGITS or (frac and not frac.isdigit()):
        raise ValueError(f"not an epoch-seconds timestamp: {text[:40]!r}")
    ns = int(whole) * NS_PER_S + int(frac[:_NS_DIGITS].ljust(_NS_DIGITS, b"0"))
    if ns > MAX_TS_NS:
        raise ValueError(f"epoch-seconds timestamp beyond 64 bits: {text[:40]!r}")
    return ns


def split_recorder_lines(lines: list[bytes]) -> tuple[list[int], list[bytes]]:
    """Split ``<ts_recv_ns> <json>`` lines into receive times and payloads."""
    stamps: list[int] = []
    payloads: list[bytes] = []
    add_ts = stamps.append
    add_payload = payloads.append
    for line in lines:
        ts, _, payload = line.partition(b" ")
        if ts.isdigit() and payload and len(ts) <= MAX_TS_DIGITS and (ns := int(ts)) <= MAX_TS_NS:
            add_ts(ns)
            add_payload(payload)
        elif not line or line.isspace():
            add_ts(NON_DATA)
            add_payload(b"")
        else:
            add_ts(MALFORMED)
            add_payload(line)
    return stamps, payloads


def split_cryptofeed_lines(lines: list[bytes]) -> tuple[list[int], list[bytes]]:
    """Split cryptofeed ``<epoch_s>: <json>`` lines; ``wss://`` markers are NON_DATA."""
    stamps: list[int] = []
    payloads: list[bytes] = []
    for line in lines:
        head, sep, payload = line.partition(b": ")
        if line.startswith(CRYPTOFEED_MARKER) or not line or line.isspace():
            stamps.append(NON_DATA)
            payloads.append(b"")
            continue
        try:
            ts = parse_epoch_seconds(head)
        except ValueError:
            ts = MALFORMED
        if ts == MALFORMED or not sep or not payload:
            stamps.append(MALFORMED)
            payloads.append(line)
        else:
            stamps.append(ts)
            payloads.append(payload)
    return stamps, payloads


_SPLITTERS: Final = {
    CaptureFormat.RECORDER: split_recorder_lines,
    CaptureFormat.CRYPTOFEED: split_cryptofeed_lines,
}


def read_line_blocks(
    stream: io.BufferedIOBase, block_bytes: int = READ_BLOCK_BYTES
) -> Iterator[list[bytes]]:
    """Complete lines (without their ``\\n``) of ``stream``, about ``block_bytes`` at a time."""
    rest = b""
    while chunk := stream.read(block_bytes):
        lines = (rest + chunk).split(b"\n") if rest else chunk.split(b"\n")
        rest = lines.pop()
        if lines:
            yield lines
    if rest:
        yield [rest]


def read_capture_blocks(
    stream: io.BufferedIOBase, block_bytes: int = READ_BLOCK_BYTES
) -> Iterator[CaptureBlock]:
    """The lines of an open capture (see ``open_capture``), split, a block at a time.

    *Resource handling:* the caller owns ``stream`` and closes it.
    """
    split = None
    line_no = 1
    for lines in read_line_blocks(stream, block_bytes):
        if split is None:
            first = next((ln for ln in lines if ln and not ln.isspace()), None)
            if first is None:  # only blank lines so far: nothing to detect from
                yield CaptureBlock(line_no, [NON_DATA] * len(lines), [b""] * len(lines))
                line_no += len(lines)
                continue
            split = _SPLITTERS[detect_format(first)]
        stamps, payloads = split(lines)
        yield CaptureBlock(line_no, stamps, payloads)
        line_no += len(lines)


def iter_capture(path: Path) -> Iterator[CaptureLine]:
    """Every line of the capture at ``path`` (convenient; the replay uses the blocks)."""
    with open_capture(path) as stream:
        yield from _lines(read_capture_blocks(stream))


def _lines(blocks: Iterator[CaptureBlock]) -> Iterator[CaptureLine]:
    for block in blocks:
        for i, (ts, payload) in enumerate(zip(block.ts_recv, block.payloads, strict=True)):
            yield CaptureLine(block.first_line_no + i, ts, payload)


SNIFF_BYTES: Final = 64 * 1024
"""Decompressed bytes read at start-up to recognise a capture's format."""

SNIFF_LINES: Final = 16
"""Non-blank lines (``wss://`` markers aside) of which one must have a known shape."""

_RECORDER_LINE: Final = re.compile(rb"[0-9]{1,19} \s*[\[{]")
_CRYPTOFEED_LINE: Final = re.compile(rb"[0-9]{1,19}(\.[0-9]{1,20})?: \s*[\[{]")


class KnownFormat(NamedTuple):
    """One capture format the replay reads: its name, its line shape, its recogniser.

    ``recognises`` gets the start of one line (at most ``SNIFF_BYTES``, without
    the line break) and says whether it is a data line of this format.
    """

    name: str
    shape: str
    recognises: Callable[[bytes], bool]


CAPTURE_FORMATS: Final[tuple[KnownFormat, ...]] = (
    KnownFormat(
        CaptureFormat.RECORDER.value,
        "<ts_recv_ns> <JSON message>",
        lambda line: _RECORDER_LINE.match(line) is not None,
    ),
    KnownFormat(
        CaptureFormat.CRYPTOFEED.value,
        "<epoch_s>: <JSON message>",
        lambda line: _CRYPTOFEED_LINE.match(line) is not None,
    ),
    *(KnownFormat(fmt.value, SHAPES[fmt], recogniser(fmt)) for fmt in HistoryFormat),
)
"""The formats ``sniff_capture`` recognises, tried in order; extend it for a new format."""


def formats_understood() -> str:
    """``recorder (<ts_recv_ns> <JSON message>), cryptofeed (...); plain or gzip``."""
    listed = ", ".join(f"{fmt.name} ({fmt.shape})" for fmt in CAPTURE_FORMATS)
    return f"{listed}; plain, gzip or (history CSV) a one-file zip"


def sniff_capture(path: Path) -> str:
    """The name of the format of the capture at ``path``, from its first lines.

    Reads at most ``SNIFF_BYTES`` (decompressed) and looks at the first
    ``SNIFF_LINES`` lines that could carry data.

    *Error handling:* ``ConfigError`` (exit 12) naming the file and the formats
    understood when it is not a regular file, cannot be opened or decompressed,
    or none of those lines has the shape of a format in ``CAPTURE_FORMATS``.
    """
    found = _sniff(path)
    if isinstance(found, KnownFormat):
        return found.name
    raise ConfigError(f"capture {path}: {found}; replay reads {formats_understood()}")


def sniffed_format(path: Path) -> str | None:
    """The name of the format ``sniff_capture`` recognises in ``path``, or ``None``."""
    found = _sniff(path)
    return found.name if isinstance(found, KnownFormat) else None


def _sniff(path: Path) -> KnownFormat | str:
    """The format recognised, or why none is."""
    try:
        if not path.is_file():
            if path.is_dir():
                return "a directory"
            return "not a regular file" if path.exists() else "no such file"
        with open_capture(path) as stream:
            head = stream.read(SNIFF_BYTES)
            zipped = isinstance(stream, ZipMember)
    except OSError as exc:
        return f"cannot open ({exc.strerror or exc})"
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        return f"not a readable gzip stream ({exc})"
    except zipfile.BadZipFile as exc:
        return f"not a readable zip ({exc})"
    candidates = [
        line
        for line in head.split(b"\n")
        if line.strip() and not line.startswith(CRYPTOFEED_MARKER)
    ]
    for line in candidates[:SNIFF_LINES]:
        for fmt in CAPTURE_FORMATS:
            if fmt.recognises(line):
                if zipped and not is_history_format(fmt.name):
                    return f"a zip holding a {fmt.name} capture (a zip is read for history only)"
                return fmt
    if not head:
        return "empty"
    return f"no market data in a supported format (starts {head[:16]!r})"


MAX_CAPTURE_FILES: Final = 10_000
"""Files one replay may name, after directories and globs are expanded."""

_GLOB_CHARS: Final = frozenset("*?[")


def expand_captures(names: Sequence[str]) -> list[Path]:
    """The capture files ``names`` stand for: a file as given, a directory's regular
    files (not hidden; sorted by name), a glob pattern's matches (sorted by name).

    *Error handling:* ``ConfigError`` (exit 12) naming the argument when a glob
    matches nothing or a directory holds no file, or when more than
    ``MAX_CAPTURE_FILES`` files result. A name that is none of these is returned
    as given (``sniff_capture`` then names what is wrong with it).
    """
    out: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
            )
            if not found:
                raise ConfigError(f"capture {name}: a directory with no file in it")
        elif not path.exists() and _GLOB_CHARS & set(name):
            found = sorted(p for p in _glob(path) if p.is_file())
            if not found:
                raise ConfigError(f"capture {name}: the pattern matches no file")
        else:
            found = [path]
        out.extend(found)
        if len(out) > MAX_CAPTURE_FILES:
            raise ConfigError(
                f"capture {name}: more than {MAX_CAPTURE_FILES} capture files in one replay"
            )
    return out


def _glob(pattern: Path) -> Iterator[Path]:
    anchor = Path(pattern.anchor) if pattern.is_absolute() else Path()
    return anchor.glob(str(pattern.relative_to(anchor)) if pattern.is_absolute() else str(pattern))


def format_capture_line(ts_recv_ns: int, raw: bytes) -> bytes:
    """One ``RECORDER`` line: ``b"<ts_recv_ns> <raw>\\n"``.

    A raw JSON message may only contain a line break as insignificant whitespace
    (inside a string it must be escaped), so CR/LF are replaced by spaces: the
    line stays one line and the message decodes to the same value.

    *Error handling:* ``ValueError`` for a negative timestamp.
    """
    if ts_recv_ns < 0:
        raise ValueError(f"negative ts_recv_ns: {ts_recv_ns}")
    if b"\n" in raw or b"\r" in raw:
        raw = raw.replace(b"\r", b" ").replace(b"\n", b" ")
    return b"%d %s\n" % (ts_recv_ns, raw)
