"""Configuration: a TOML file decoded into frozen Structs, overridable from the environment.

Resolution order (later wins): built-in safe defaults, the TOML file, then
environment variables named ``ENGINE_<SECTION>_<KEY>`` (``ENGINE_RISK_MAX_EXPOSURE_USD=500``).
List keys take comma-separated values from the environment.

Anything wrong -- a file that is not a regular file of at most 1 MiB, unreadable
or hostile TOML (nesting, huge dotted keys or integers), an unknown section or key,
a wrong type, a value outside its ``Range`` (every numeric key has one, beside it
below; decimals are also bounded in syntax and precision, see
``engine.config_bounds``) -- raises ``ConfigError`` whose message names the key
(``--config`` for the file); the CLI prints it as one line and exits 12. The
environment passes the same bounds, and so do command-line twins of keys
(``admit_argument``: ``--speed`` is ``ingest.speed``).

The LIVE arm flag is deliberately *not* a key: it is only the environment
variable ``LIVE_ARMED=true`` (see ``engine.gate``).
"""

from __future__ import annotations

import enum
import functools
import os
import stat
import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec

from engine.config_bounds import (
    PATTERN_MEANINGS,
    FilePath,
    Paths,
    Range,
    RequiredPath,
    Symbols,
    Url,
    decimal_syntax_problem,
    problem,
)
from engine.exits import ConfigError

ENV_PREFIX: Final = "ENGINE_"

MAX_CONFIG_BYTES: Final = 1 << 20
"""Largest configuration file read (1 MiB); a bigger one, or one that is not a
regular file (``/dev/zero``, a FIFO, a directory), is refused before it is read."""

MAX_CONFIG_DOTS: Final = 10_000
"""Most ``.`` characters in a configuration file. Python's TOML parser spends
time quadratic in the length of a dotted key (50,000 dots: 5 s and out of
memory); this bounds that cost to well under a second."""

_S: Final = "s"
_MS: Final = "ms"
_USD: Final = "USD"
_BPS: Final = "bps"
_BILLION: Final = Decimal(10**9)
_INT64_MAX: Final = 2**63 - 1

Seconds = Annotated[float, Range(0.01, 3600.0, _S)]
"""Most timeouts and intervals: 10 ms to an hour."""
UsdAmount = Annotated[Decimal, Range(Decimal(0), _BILLION, _USD, lo_open=True)]
Bps = Annotated[Decimal, Range(Decimal(0), Decimal(1000), _BPS)]
"""0 to 1,000 bps (10%): beyond that a price offset or fee is a typo, not a policy."""
Seed = Annotated[int, Range(0, _INT64_MAX)]


class Mode(enum.StrEnum):
    SHADOW = "shadow"
    PAPER = "paper"
    LIVE = "live"


class Source(enum.StrEnum):
    SYNTHETIC = "synthetic"
    REPLAY = "replay"
    WEBSOCKET = "websocket"


class Venue(enum.StrEnum):
    BINANCE = "binance"
    COINBASE = "coinbase"


class OrderTypeName(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class ProgressSetting(enum.StrEnum):
    AUTO = "auto"
    """Progress lines on stderr when it is a terminal (none under systemd)."""
    ALWAYS = "always"
    NEVER = "never"


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Shared options of every config section.

    Every numeric field carries a ``Range`` (``engine.config_bounds``) that
    ``__post_init__`` checks -- msgspec cannot bound ``Decimal`` fields, and one
    mechanism for every number keeps the README's ranges in one place.
    """

    def __post_init__(self) -> None:
        for name, bound in field_ranges(type(self)).items():
            reason = problem(getattr(self, name), bound)
            if reason is not None:
                raise ValueError(f"{reason} - at `$.{name}`")
        self.check()

    def check(self) -> None:
        """Cross-field rules of a section; raise ``ValueError`` naming the key."""


@functools.cache
def field_ranges(section: type[Section]) -> dict[str, Range]:
    """The ``Range`` of each numeric field of a section, from its annotations."""
    hints = typing.get_type_hints(section, include_extras=True)
    ranges: dict[str, Range] = {}
    for name in section.__struct_fields__:
        for meta in getattr(hints[name], "__metadata__", ()):
            if isinstance(meta, Range):
                ranges[name] = meta
    return ranges


class EngineSection(Section, frozen=True):
    mode: Mode = Mode.SHADOW
    db_path: RequiredPath = "./var/engine.db"
    heartbeat_interval_s: Seconds = 10.0
    drain_timeout_s: Annotated[float, Range(0.1, 3600.0, _S)] = 20.0
    enqueue_timeout_s: Annotated[float, Range(0.1, 3600.0, _S)] = 30.0
    busy_timeout_ms: Annotated[int, Range(1000, 600_000, _MS)] = 5000
    proof_path: RequiredPath = "./var/proof.json"
    max_proof_age_h: Annotated[float, Range(0.01, 720.0, "h")] = 24.0
    progress: ProgressSetting = ProgressSetting.AUTO


class IngestSection(Section, frozen=True):
    source: Source = Source.SYNTHETIC
    # replay source
    captures: Paths = ()
    speed: Annotated[float, Range(0.001, 1000.0, zero=True)] = 0.0
    # synthetic source
    synthetic_symbols: Symbols = ("BTCUSDT",)
    synthetic_rate_per_s: Annotated[float, Range(0.01, 100_000.0, "per s")] = 20.0
    synthetic_seed: Seed = 1
    synthetic_start_price: Annotated[Decimal, Range(Decimal("0.01"), Decimal(10**6))] = Decimal(
        "60000"
    )
    synthetic_max_ticks: Annotated[int, Range(0, 10**12)] = 0
    # websocket source
    venue: Venue = Venue.BINANCE
    symbols: Symbols = ("BTCUSDT",)
    url: Url = ""
    connect_timeout_s: Annotated[float, Range(0.01, 300.0, _S)] = 10.0
    keepalive_interval_s: Annotated[float, Range(0.001, 3600.0, _S)] = 20.0
    pong_timeout_s: Annotated[float, Range(0.01, 600.0, _S)] = 10.0
    initial_backoff_s: Annotated[float, Range(0.001, 3600.0, _S)] = 0.5
    max_backoff_s: Annotated[float, Range(0.001, 3600.0, _S)] = 30.0
    backoff_factor: Annotated[float, Range(1.0, 10.0)] = 2.0
    backoff_seed: Seed = 0
    max_reconnect_failures: Annotated[int, Range(1, 10**9)] = 10
    max_downtime_s: Annotated[float, Range(0.1, 604_800.0, _S)] = 300.0
    max_parse_errors_per_min: Annotated[int, Range(0, 10**9)] = 60
    max_message_size: Annotated[int, Range(1024, 64 << 20, "bytes")] = 1 << 20
    record_path: FilePath = ""
    # admission (engine.adapters.admission, docs/ingest.md "Admission"): at most a
    # day of event-time skew (wider admits the trade stamped 2100); a band tighter
    # than 0.1 % refuses ordinary ticks, wider than 1,000 % is no band.
    event_time_window_s: Annotated[float, Range(1.0, 86_400.0, _S)] = 300.0
    price_band_pct: Annotated[Decimal, Range(Decimal("0.1"), Decimal(1000), "%")] = Decimal("10")

    def check(self) -> None:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("must be >= initial_backoff_s - at `$.max_backoff_s`")


class StrategySection(Section, frozen=True):
    fast: Annotated[int, Range(1, 9_999, "bars")] = 5
    slow: Annotated[int, Range(2, 10_000, "bars")] = 20
    bar_seconds: Annotated[int, Range(0, 86_400, _S)] = 1

    def check(self) -> None:
        if self.slow <= self.fast:
            raise ValueError(
                f"slow ({self.slow}) must be greater than fast ({self.fast}) - at `$.slow`"
            )


class RiskSection(Section, frozen=True):
    max_exposure_usd: UsdAmount = Decimal("1000")
    max_symbol_exposure_usd: UsdAmount = Decimal("500")
    max_open_orders: Annotated[int, Range(1, 1000)] = 4
    max_staleness_ms: Annotated[int, Range(1, 3_600_000, _MS)] = 5000
    max_drawdown_usd: Annotated[Decimal | None, Range(Decimal(0), _BILLION, _USD, lo_open=True)] = (
        None
    )

    def check(self) -> None:
        if self.max_symbol_exposure_usd > self.max_exposure_usd:
            raise ValueError(
                "must be <= max_exposure_usd - at `$.max_symbol_exposure_usd`"
            )


class ExecutionSection(Section, frozen=True):
    order_notional_usd: UsdAmount = Decimal("100")
    qty_step: Annotated[Decimal, Range(Decimal("1E-12"), Decimal(10**6))] = Decimal("0.00001")
    fee_bps: Bps = Decimal("10")
    slippage_bps: Bps = Decimal("1")
    latency_ms: Annotated[int, Range(0, 3_600_000, _MS)] = 50
    order_timeout_s: Annotated[float, Range(0.001, 86_400.0, _S)] = 30.0
    order_type: OrderTypeName = OrderTypeName.MARKET
    limit_offset_bps: Bps = Decimal("0")


class LiveSection(Section, frozen=True):
    rest_url: Url = "https://api.binance.com"
    ws_url: Url = "wss://ws-api.binance.com:443/ws-api/v3"
    """The WebSocket **API** (not the market-data stream host): the LIVE user-data
    subscription ``userDataStream.subscribe.signature`` lives there."""
    credentials_file: FilePath = ""


class Config(Section, frozen=True):
    engine: EngineSection = EngineSection()
    ingest: IngestSection = IngestSection()
    strategy: StrategySection = StrategySection()
    risk: RiskSection = RiskSection()
    execution: ExecutionSection = ExecutionSection()
    live: LiveSection = LiveSection()


def _section_types() -> dict[str, type[Section]]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in Config.__struct_fields__}


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (list, tuple)


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Collect ``ENGINE_<SECTION>_<KEY>`` variables into a nested dict of raw strings.

    An ``ENGINE_`` variable that names no known key is an error: a typo in an
    override must not silently leave a default in force.
    """
    sections = _section_types()
    out: dict[str, dict[str, Any]] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section, section_type in sections.items():
            prefix = section + "_"
            if rest.startswith(prefix) and rest[len(prefix) :] in section_type.__struct_fields__:
                key = rest[len(prefix) :]
                hint = typing.get_type_hints(section_type, include_extras=False)[key]
                value: Any = raw
                if _is_list(hint):
                    value = [s.strip() for s in raw.split(",") if s.strip()]
                out.setdefault(section, {})[key] = value
                break
        else:
            raise ConfigError(f"{name}: no such configuration key ({section_names_hint()})")
    return out


def section_names_hint() -> str:
    return "sections: " + ", ".join(_section_types())


def _merge(base: dict[str, Any], extra: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in extra.items():
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: must be a table")
        target.update(values)
    return merged


def _describe(err: msgspec.ValidationError) -> str:
    """Turn msgspec's ``... - at `$.risk.max_open_orders``` into ``risk.max_open_orders: ...``."""
    message, *paths = str(err).split(" - at ")
    # A section's own check reports its key; msgspec appends the section's path.
    parts = [p.strip("`").removeprefix("$").lstrip(".") for p in reversed(paths)]
    for pattern, meaning in PATTERN_MEANINGS.items():
        message = message.replace(f"Expected `str` matching regex {pattern!r}", meaning)
    unknown = message.removeprefix("Object contains unknown field ")
    if unknown != message:
        parts.append(unknown.strip("`"))
        message = "unknown key"
    return f"{'.'.join(p for p in parts if p)}: {message}"


def read_config_file(path: str | Path) -> bytes:
    """The bytes of a configuration file: a regular file of at most ``MAX_CONFIG_BYTES``.

    Opened non-blocking so that a FIFO cannot hang the open; checked with
    ``fstat`` on the open descriptor, so what is read is what was checked.

    *Error handling:* ``ConfigError`` naming ``--config`` for a missing or
    unreadable file, one that is not a regular file, or one that is too big.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(f"--config {path}: cannot read config file ({reason})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"--config {path}: not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES and (chunk := os.read(fd, MAX_CONFIG_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"--config {path}: larger than {MAX_CONFIG_BYTES} bytes")
    return raw


def decode_toml(path: str | Path, raw: bytes) -> dict[str, Any]:
    """Parse a configuration file's TOML in bounded time and depth."""
    if raw.count(b".") > MAX_CONFIG_DOTS:
        raise ConfigError(f"--config {path}: invalid TOML (more than {MAX_CONFIG_DOTS} dots)")
    try:
        data = msgspec.toml.decode(raw)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"--config {path}: invalid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"--config {path}: invalid TOML (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer beyond Python's 4,300-digit conversion limit
        raise ConfigError(f"--config {path}: invalid TOML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: invalid TOML (not a table)")
    return data


def _check_decimal_syntax(data: Mapping[str, Any]) -> None:
    """Refuse a decimal key given as a string that is not a plain ASCII decimal.

    ``Decimal()`` accepts ``" 5 "``, ``"+5"``, ``"1_000"`` and Arabic-Indic
    digits; the converted value cannot tell, so the raw strings are checked here.
    """
    for section, section_type in _section_types().items():
        values = data.get(section)
        if not isinstance(values, dict):
            continue
        hints = typing.get_type_hints(section_type)
        for key, raw in values.items():
            hint = hints.get(key)
            if isinstance(raw, str) and hint is not None and Decimal in _leaf_types(hint):
                reason = decimal_syntax_problem(raw)
                if reason is not None:
                    raise ConfigError(f"{section}.{key}: {reason}")


def _leaf_types(annotation: Any) -> tuple[Any, ...]:
    args = typing.get_args(annotation)
    return args if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (
        annotation,
    )


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the effective configuration: defaults < TOML file < environment.

    Raises ``ConfigError`` naming the offending key (or ``--config`` for the file).
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        data = decode_toml(path, read_config_file(path))
    data = _merge(data, env_overrides(environ))
    _check_decimal_syntax(data)
    try:
        return msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except RecursionError:
        raise ConfigError("--config: a value is nested too deeply") from None


def admit_argument(flag: str, value: float, key: str) -> float:
    """Check a command-line twin of a key (``--speed`` for ``ingest.speed``) by the key's range.

    *Error handling:* ``ConfigError`` naming ``flag``, exactly as the key would be refused.
    """
    section, _, name = key.partition(".")
    bound = field_ranges(_section_types()[section])[name]
    reason = problem(value, bound)
    if reason is not None:
        raise ConfigError(f"{flag}: {reason}")
    return value


def admit_db_path(path: str, key: str) -> None:
    """Refuse a database path that can never hold the engine's database, naming ``key``.

    ``key`` is where the path came from: ``--db`` or ``engine.db_path``. An existing
    path must be a regular file (not ``/dev/null``, not a directory); otherwise the
    nearest existing ancestor must be a directory this process may write (the
    database, its ``-wal`` and ``-shm`` files are created there).
    """
    if not path or "\x00" in path:
        raise ConfigError(f"{key}: {path!r} is not a file path")
    target = Path(path)
    try:
        if target.exists():
            if not target.is_file():
                kind = "a directory" if target.is_dir() else "not a regular file"
                raise ConfigError(f"{key}: {path} is {kind}")
            if not os.access(target, os.R_OK | os.W_OK):
                raise ConfigError(f"{key}: {path} is not writable")
        parent = target.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise ConfigError(f"{key}: {path}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}: {path}: directory {parent} is not writable")
    except OSError as exc:  # e.g. a name too long, a loop of symlinks
        raise ConfigError(f"{key}: {path}: {exc.strerror or exc}") from None


def config_to_builtins(config: Config) -> dict[str, Any]:
    """The configuration as plain JSON-able data (Decimals as strings)."""
    result: dict[str, Any] = msgspec.to_builtins(config)
    return result
