"""Configuration: a TOML file decoded into frozen Structs, overridable from the environment.

Resolution order (later wins): built-in safe defaults, the TOML file, then
environment variables named ``ENGINE_<SECTION>_<KEY>`` (``ENGINE_RISK_MAX_EXPOSURE_USD=500``).
List keys take comma-separated values from the environment.

Anything wrong -- a file that is not a regular file of at most 1 MiB, unreadable
or hostile TOML (nesting, huge dotted keys or integers), an unknown section or key,
a wrong type, a value outside its ``Range`` (every numeric key has one, beside it
below; decimals are also bounded in syntax and precision, see
``engine.config.bounds``) -- raises ``ConfigError`` whose message names the key
(``--config`` for the file); the CLI prints it as one line and exits 12. The
environment passes the same bounds, and so do command-line twins of keys
(``admit_argument``: ``--speed`` is ``ingest.speed``).

The LIVE arm flag is deliberately *not* a key: it is only the environment
variable ``LIVE_ARMED=true`` (see ``engine.proof.gate``).
"""

from __future__ import annotations

import enum
import functools
import typing
from decimal import Decimal
from typing import Annotated, Final

import msgspec

from engine.config.bounds import (
    FilePath,
    Paths,
    Range,
    RequiredPath,
    Symbols,
    Url,
    problem,
)

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

    Every numeric field carries a ``Range`` (``engine.config.bounds``) that
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
    store_ticks: bool = True
    """``False``: a replay writes no ``ticks`` rows, only the ``tape`` (engine.store.tape);
    signals, orders, fills and risk states are stored as ever. Replays only."""


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
    # admission (engine.adapters.market.admission, docs/ingest.md "Admission"): at most a
    # day of event-time skew (wider admits the trade stamped 2100); a band tighter
    # than 0.1 % refuses ordinary ticks, wider than 1,000 % is no band.
    event_time_window_s: Annotated[float, Range(1.0, 86_400.0, _S)] = 300.0
    price_band_pct: Annotated[Decimal, Range(Decimal("0.1"), Decimal(1000), "%")] = Decimal("10")

    def check(self) -> None:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("must be >= initial_backoff_s - at `$.max_backoff_s`")


class StrategySection(Section, frozen=True):
    """``sma_cross``'s parameters (the default strategy's ``[strategy]`` keys besides ``kind``)."""

    fast: Annotated[int, Range(1, 9_999, "bars")] = 5
    slow: Annotated[int, Range(2, 10_000, "bars")] = 20
    bar_seconds: Annotated[int, Range(0, 86_400, _S)] = 1

    def check(self) -> None:
        if self.slow <= self.fast:
            raise ValueError(
                f"slow ({self.slow}) must be greater than fast ({self.fast}) - at `$.slow`"
            )


DONCHIAN_MAX_LOOKBACK: Final = 10_000
"""Largest ``donchian_breakout`` lookback: its per-symbol history is this many bars."""


class DonchianParams(Section, frozen=True):
    """``donchian_breakout``'s parameters (``[strategy] kind = "donchian_breakout"``)."""

    lookback: Annotated[int, Range(1, DONCHIAN_MAX_LOOKBACK, "bars")] = 20
    bar_seconds: Annotated[int, Range(0, 86_400, _S)] = 1


DEFAULT_STRATEGY: Final = "sma_cross"


class StrategyChoice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[strategy]``: ``kind`` names the strategy, every other key is one of its parameters.

    ``load_config`` admits the section through ``engine.config.strategies.admit_strategy``:
    the kind is resolved (a built-in, ``package.module:Class`` or ``file.py:Class``)
    and the other keys are decoded into that strategy's own ``Params`` struct, so an
    unknown or bad key is refused naming it (``strategy.lookback: ...``).
    """

    kind: str = DEFAULT_STRATEGY
    params: msgspec.Struct = StrategySection()


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
    starting_cash: Annotated[Decimal | None, Range(Decimal(0), _BILLION, _USD, lo_open=True)] = None
    """SHADOW/PAPER: the ledger's opening cash (quote currency); a BUY beyond the cash
    not yet committed is vetoed INSUFFICIENT_CASH. Unset: cash starts at 0, unchecked."""


class LiveSection(Section, frozen=True):
    rest_url: Url = "https://api.binance.com"
    ws_url: Url = "wss://ws-api.binance.com:443/ws-api/v3"
    """The WebSocket **API** (not the market-data stream host): the LIVE user-data
    subscription ``userDataStream.subscribe.signature`` lives there."""
    credentials_file: FilePath = ""


class Config(Section, frozen=True):
    engine: EngineSection = EngineSection()
    ingest: IngestSection = IngestSection()
    strategy: StrategyChoice = StrategyChoice()
    risk: RiskSection = RiskSection()
    execution: ExecutionSection = ExecutionSection()
    live: LiveSection = LiveSection()




























