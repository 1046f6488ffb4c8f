"""Configuration: a TOML file decoded into frozen Structs, overridable from the environment.

Resolution order (later wins): built-in safe defaults, the TOML file, then
environment variables named ``ENGINE_<SECTION>_<KEY>`` (``ENGINE_RISK_MAX_EXPOSURE_USD=500``).
List keys take comma-separated values from the environment.

Anything wrong -- unreadable TOML, an unknown section or key, a wrong type, a
nonsensical value -- raises ``ConfigError`` whose message names the key; the CLI
prints it as one line and exits 12.

The LIVE arm flag is deliberately *not* a key: it is only the environment
variable ``LIVE_ARMED=true`` (see ``engine.gate``).
"""

from __future__ import annotations

import enum
import math
import os
import typing
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final

import msgspec

from engine.exits import ConfigError

ENV_PREFIX: Final = "ENGINE_"

BPS_WHOLE: Final = Decimal(10_000)
"""100% in basis points: the bound of ``slippage_bps`` and ``limit_offset_bps``."""

MAX_EVENT_TIME_WINDOW_S: Final = 86_400.0
"""``ingest.event_time_window_s`` at most a day: wider admits the 2100-dated trade."""
MIN_PRICE_BAND_PCT: Final = Decimal("0.1")
MAX_PRICE_BAND_PCT: Final = Decimal("1000")
"""``ingest.price_band_pct`` bounds: tighter than 0.1 % refuses ordinary ticks,
wider than 1000 % is no band."""

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
EventTimeWindow = Annotated[float, msgspec.Meta(ge=1, le=MAX_EVENT_TIME_WINDOW_S)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]


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


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Shared options of every config section.

    msgspec cannot put bounds on ``Decimal`` fields, so sections list theirs in
    ``_positive`` / ``_non_negative`` and ``__post_init__`` checks them.
    """

    _positive: ClassVar[tuple[str, ...]] = ()
    _non_negative: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            # NaN would escape the bound checks below as decimal.InvalidOperation (exit 1,
            # not 12); an infinity would pass them and crash the engine (or disable a
            # bound, e.g. max_proof_age_h) later.
            finite = (
                value.is_finite()
                if isinstance(value, Decimal)
                else not isinstance(value, float) or math.isfinite(value)
            )
            if not finite:
                raise ValueError(f"Expected a finite number, got {value} - at `$.{name}`")
        for name in self._positive:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Expected a decimal > 0 - at `$.{name}`")
        for name in self._non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"Expected a decimal >= 0 - at `$.{name}`")
        self.check()

    def check(self) -> None:
        """Cross-field rules of a section; raise ``ValueError`` naming the key."""


class EngineSection(Section, frozen=True):
    mode: Mode = Mode.SHADOW
    db_path: str = "./var/engine.db"
    heartbeat_interval_s: PositiveFloat = 10.0
    drain_timeout_s: PositiveFloat = 20.0
    busy_timeout_ms: Annotated[int, msgspec.Meta(ge=1000)] = 5000
    proof_path: str = "./var/proof.json"
    max_proof_age_h: PositiveFloat = 24.0


class IngestSection(Section, frozen=True):
    _positive = ("synthetic_start_price",)

    source: Source = Source.SYNTHETIC
    # replay source
    captures: tuple[str, ...] = ()
    speed: NonNegativeFloat = 0.0
    # synthetic source
    synthetic_symbols: tuple[str, ...] = ("BTCUSDT",)
    synthetic_rate_per_s: PositiveFloat = 20.0
    synthetic_seed: int = 1
    synthetic_start_price: Decimal = Decimal("60000")
    synthetic_max_ticks: NonNegativeInt = 0
    # websocket source
    venue: Venue = Venue.BINANCE
    symbols: tuple[str, ...] = ("BTCUSDT",)
    url: str = ""
    connect_timeout_s: PositiveFloat = 10.0
    keepalive_interval_s: PositiveFloat = 20.0
    pong_timeout_s: PositiveFloat = 10.0
    initial_backoff_s: PositiveFloat = 0.5
    max_backoff_s: PositiveFloat = 30.0
    backoff_factor: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    backoff_seed: int = 0
    max_reconnect_failures: PositiveInt = 10
    max_downtime_s: PositiveFloat = 300.0
    max_parse_errors_per_min: NonNegativeInt = 60
    max_message_size: PositiveInt = 1 << 20
    record_path: str = ""
    # admission (engine.adapters.admission, docs/ingest.md "Admission")
    event_time_window_s: EventTimeWindow = 300.0
    price_band_pct: Decimal = Decimal("10")

    def check(self) -> None:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("must be >= initial_backoff_s - at `$.max_backoff_s`")
        if not MIN_PRICE_BAND_PCT <= self.price_band_pct <= MAX_PRICE_BAND_PCT:
            raise ValueError(
                f"must be within [{MIN_PRICE_BAND_PCT}, {MAX_PRICE_BAND_PCT}] (percent)"
                " - at `$.price_band_pct`"
            )


class StrategySection(Section, frozen=True):
    fast: PositiveInt = 5
    slow: PositiveInt = 20
    bar_seconds: NonNegativeInt = 1

    def check(self) -> None:
        if self.slow <= self.fast:
            raise ValueError(
                f"slow ({self.slow}) must be greater than fast ({self.fast}) - at `$.slow`"
            )


class RiskSection(Section, frozen=True):
    max_exposure_usd: Decimal = Decimal("1000")
    max_symbol_exposure_usd: Decimal = Decimal("500")
    max_open_orders: PositiveInt = 4
    max_staleness_ms: PositiveInt = 5000
    max_drawdown_usd: Decimal | None = None

    _positive = ("max_exposure_usd", "max_symbol_exposure_usd", "max_drawdown_usd")

    def check(self) -> None:
        if self.max_symbol_exposure_usd > self.max_exposure_usd:
            raise ValueError(
                "must be <= max_exposure_usd - at `$.max_symbol_exposure_usd`"
            )


class ExecutionSection(Section, frozen=True):
    _positive = ("order_notional_usd", "qty_step")
    _non_negative = ("fee_bps", "slippage_bps", "limit_offset_bps")

    order_notional_usd: Decimal = Decimal("100")
    qty_step: Decimal = Decimal("0.00001")
    fee_bps: Decimal = Decimal("10")
    slippage_bps: Decimal = Decimal("1")
    latency_ms: NonNegativeInt = 50
    order_timeout_s: PositiveFloat = 30.0
    order_type: OrderTypeName = OrderTypeName.MARKET
    limit_offset_bps: Decimal = Decimal("0")

    def check(self) -> None:
        # 10,000 bps or more would make a SELL's assumed price or a BUY's limit price
        # zero or negative (and a zero price divides by zero in the sizing).
        for name in ("slippage_bps", "limit_offset_bps"):
            if not getattr(self, name) < BPS_WHOLE:
                raise ValueError(f"must be < {BPS_WHOLE} (100%) - at `$.{name}`")


class LiveSection(Section, frozen=True):
    rest_url: str = "https://api.binance.com"
    ws_url: str = "wss://ws-api.binance.com:443/ws-api/v3"
    """The WebSocket **API** (not the market-data stream host): the LIVE user-data
    subscription ``userDataStream.subscribe.signature`` lives there."""
    credentials_file: str = ""


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
    unknown = message.removeprefix("Object contains unknown field ")
    if unknown != message:
        parts.append(unknown.strip("`"))
        message = "unknown key"
    return f"{'.'.join(p for p in parts if p)}: {message}"


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the effective configuration: defaults < TOML file < environment.

    Raises ``ConfigError`` naming the offending key.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
        try:
            data = msgspec.toml.decode(raw)
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    data = _merge(data, env_overrides(environ))
    try:
        return msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def config_to_builtins(config: Config) -> dict[str, Any]:
    """The configuration as plain JSON-able data (Decimals as strings)."""
    result: dict[str, Any] = msgspec.to_builtins(config)
    return result
