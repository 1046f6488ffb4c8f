"""Configuration: defaults, file, environment overrides, and errors that name the key."""

from __future__ import annotations

import math
import os
import typing
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.config.bounds import Range
from engine.config.load import (
    MAX_CONFIG_BYTES,
    _section_types,
    admit_argument,
    admit_db_path,
    load_config,
)
from engine.config.schema import Config, Mode, Source, StrategySection, field_ranges
from engine.exits import ConfigError, ExitCode


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(text)
    return path


def refused_naming(tmp_path: Path, text: str, env: dict[str, str], names: str) -> None:
    """Loading ``text`` with ``env`` is refused as exit 12, the message naming ``names``."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=env)
    assert names in str(info.value)
    assert info.value.exit_code is ExitCode.CONFIG


def test_load_config_without_file_gives_safe_defaults() -> None:
    config = load_config(environ={})
    assert config == Config()
    assert config.engine.mode is Mode.SHADOW
    assert config.engine.db_path == "./var/engine.db"
    assert config.ingest.source is Source.SYNTHETIC
    assert config.strategy.kind == "sma_cross"
    assert config.strategy.params == StrategySection(fast=5, slow=20, bar_seconds=1)
    assert config.execution.order_notional_usd == Decimal("100")


def test_load_config_file_values_are_exact_decimals(tmp_path: Path) -> None:
    path = write(tmp_path, "[execution]\nfee_bps = 7.5\norder_notional_usd = '250.10'\n")
    config = load_config(path, environ={})
    assert config.execution.fee_bps == Decimal("7.5")
    assert config.execution.order_notional_usd == Decimal("250.10")


def test_load_config_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[risk]\nmax_exposure_usd = 800\n")
    env = {"ENGINE_RISK_MAX_EXPOSURE_USD": "500", "ENGINE_INGEST_SYMBOLS": "btcusdt, ethusdt"}
    config = load_config(path, environ=env)
    assert config.risk.max_exposure_usd == Decimal("500")
    assert config.ingest.symbols == ("btcusdt", "ethusdt")


@pytest.mark.parametrize(
    ("text", "env", "names"),
    [
        ("[risk]\nmax_open_orders = 'three'\n", {}, "risk.max_open_orders"),
        ("[risk]\nmax_exposure_usd = -5\n", {}, "risk.max_exposure_usd"),
        ("[risk]\nfoo = 1\n", {}, "risk.foo"),
        ("[riks]\nmax_open_orders = 1\n", {}, "riks"),
        ("[strategy]\nfast = 20\nslow = 20\n", {}, "strategy.slow"),
        ("[strategy]\nfast = 0\n", {}, "strategy.fast"),
        ("[engine]\nmode = 'yolo'\n", {}, "engine.mode"),
        ("[execution]\nfee_bps = -1\n", {}, "execution.fee_bps"),
        ("", {"ENGINE_RISK_MAX_OPEN_ORDERS": "x"}, "risk.max_open_orders"),
        ("", {"ENGINE_RISK_MAX_EXPOSURE": "1"}, "ENGINE_RISK_MAX_EXPOSURE"),
        ("[engine\n", {}, "invalid TOML"),
    ],
)
def test_load_config_invalid_raises_config_error_naming_key(
    tmp_path: Path, text: str, env: dict[str, str], names: str
) -> None:
    refused_naming(tmp_path, text, env, names)


def test_load_config_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read"):
        load_config(tmp_path / "nope.toml", environ={})


def test_load_config_live_arm_flag_is_not_a_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[engine]\nlive_armed = true\n")
    with pytest.raises(ConfigError, match=r"engine\.live_armed"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("text", "env", "names"),
    [
        ("", {"ENGINE_RISK_MAX_EXPOSURE_USD": "NaN"}, "risk.max_exposure_usd"),
        ("", {"ENGINE_RISK_MAX_DRAWDOWN_USD": "sNaN"}, "risk.max_drawdown_usd"),
        ("", {"ENGINE_EXECUTION_FEE_BPS": "NaN"}, "execution.fee_bps"),
        ("", {"ENGINE_EXECUTION_ORDER_NOTIONAL_USD": "Infinity"}, "execution.order_notional_usd"),
        ("[risk]\nmax_exposure_usd = 'inf'\n", {}, "risk.max_exposure_usd"),
        ("[execution]\norder_timeout_s = inf\n", {}, "execution.order_timeout_s"),
        ("", {"ENGINE_ENGINE_DRAIN_TIMEOUT_S": "inf"}, "engine.drain_timeout_s"),
    ],
)
def test_load_config_non_finite_number_raises_config_error_naming_key(
    tmp_path: Path, text: str, env: dict[str, str], names: str
) -> None:
    # A NaN used to escape as decimal.InvalidOperation (exit 1, restarted forever) and an
    # infinity was accepted, then crashed the first order (qty_for_notional) or Execution().
    refused_naming(tmp_path, text, env, names)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[execution]\nslippage_bps = 10000\n", "execution.slippage_bps"),
        ("[execution]\nlimit_offset_bps = 10000\n", "execution.limit_offset_bps"),
        ("[execution]\nlimit_offset_bps = 25000\n", "execution.limit_offset_bps"),
    ],
)
def test_load_config_price_offset_of_100_percent_or_more_raises_config_error(
    tmp_path: Path, text: str, names: str
) -> None:
    # 10,000 bps or more makes a SELL's assumed price (slippage) or a BUY's limit price
    # (offset) zero or negative: a BUY limit at 0 divided by zero in the sizing and
    # crashed the engine (exit 1, restarted forever) at its first signal.
    refused_naming(tmp_path, text, {}, names)


# --- bounds: every number has a range, decimals a precision, strings a shape -------------

RANGED_KEYS = [
    (section, key, bound)
    for section, section_type in _section_types().items()
    for key, bound in field_ranges(section_type).items()
]


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "1e-300"}, "engine.heartbeat_interval_s"),
        ({"ENGINE_EXECUTION_ORDER_TIMEOUT_S": "1e300"}, "execution.order_timeout_s"),
        ({"ENGINE_EXECUTION_QTY_STEP": "1E-80"}, "execution.qty_step"),
        ({"ENGINE_EXECUTION_FEE_BPS": "1E+100"}, "execution.fee_bps"),
        ({"ENGINE_EXECUTION_SLIPPAGE_BPS": "1" * 79}, "execution.slippage_bps"),
        ({"ENGINE_EXECUTION_SLIPPAGE_BPS": "1.00000000000000000001"}, "execution.slippage_bps"),
        ({"ENGINE_INGEST_SYNTHETIC_START_PRICE": "1E+15"}, "ingest.synthetic_start_price"),
        ({"ENGINE_EXECUTION_FEE_BPS": " 5 "}, "execution.fee_bps"),
        ({"ENGINE_EXECUTION_FEE_BPS": "+5"}, "execution.fee_bps"),
        ({"ENGINE_EXECUTION_FEE_BPS": "1_0"}, "execution.fee_bps"),
        ({"ENGINE_EXECUTION_FEE_BPS": "\u0661"}, "execution.fee_bps"),  # Arabic-Indic 1
        ({"ENGINE_INGEST_SPEED": "nan"}, "ingest.speed"),
        ({"ENGINE_INGEST_SPEED": "0.00001"}, "ingest.speed"),
        ({"ENGINE_STRATEGY_SLOW": str(10**30)}, "strategy.slow"),
        ({"ENGINE_INGEST_SYNTHETIC_SEED": "-1"}, "ingest.synthetic_seed"),
        ({"ENGINE_RISK_MAX_DRAWDOWN_USD": "0"}, "risk.max_drawdown_usd"),
        ({"ENGINE_INGEST_SYMBOLS": "BTC USDT"}, "ingest.symbols"),
        ({"ENGINE_INGEST_SYMBOLS": "\ufeffBTCUSDT"}, "ingest.symbols"),
        ({"ENGINE_INGEST_SYMBOLS": "BTC\u202eUSDT"}, "ingest.symbols"),
        ({"ENGINE_INGEST_SYMBOLS": "A" * 33}, "ingest.symbols"),
        ({"ENGINE_ENGINE_DB_PATH": ""}, "engine.db_path"),
        ({"ENGINE_ENGINE_DB_PATH": "a\x01b"}, "engine.db_path"),
        ({"ENGINE_INGEST_URL": "x" * 5000}, "ingest.url"),
    ],
)
def test_load_config_value_out_of_bounds_raises_config_error_naming_key(
    env: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ=env)
    assert str(info.value).startswith(key)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


@pytest.mark.parametrize(("section", "key", "bound"), RANGED_KEYS)
def test_load_config_each_range_admits_its_ends_and_refuses_beyond(
    section: str, key: str, bound: Range
) -> None:
    hints = typing.get_type_hints(_section_types()[section])
    kind: type = int if hints[key] is int else float
    env_name = f"ENGINE_{section}_{key}".upper()
    # Cross-field rules (slow > fast, max_backoff >= initial, symbol <= total exposure)
    # are satisfied by moving the partner key to a neutral value.
    partners = {
        "strategy.fast": {"ENGINE_STRATEGY_SLOW": "10000"},
        "strategy.slow": {"ENGINE_STRATEGY_FAST": "1"},
        "ingest.initial_backoff_s": {"ENGINE_INGEST_MAX_BACKOFF_S": "3600"},
        "ingest.max_backoff_s": {"ENGINE_INGEST_INITIAL_BACKOFF_S": "0.001"},
        "risk.max_exposure_usd": {"ENGINE_RISK_MAX_SYMBOL_EXPOSURE_USD": "0.01"},
        "risk.max_symbol_exposure_usd": {"ENGINE_RISK_MAX_EXPOSURE_USD": "1000000000"},
    }.get(f"{section}.{key}", {})
    hi = str(bound.hi)
    assert load_config(environ={env_name: hi, **partners}) is not None
    if not bound.lo_open:
        assert load_config(environ={env_name: str(bound.lo), **partners}) is not None
    above = bound.hi + 1 if kind is int else bound.hi * 2
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: "):
        load_config(environ={env_name: str(above), **partners})
    below = bound.lo - 1 if kind is int or bound.lo <= 0 else bound.lo / 2
    if not (bound.zero and below == 0):
        with pytest.raises(ConfigError, match=rf"^{section}\.{key}: "):
            load_config(environ={env_name: str(below), **partners})


@pytest.mark.parametrize(("section", "key", "bound"), RANGED_KEYS)
def test_readme_states_each_range_in_the_configuration_table(
    section: str, key: str, bound: Range
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{section}.{key}` |"))
    assert f"| {bound.text()} |" in row


@pytest.mark.parametrize(("section", "key", "bound"), RANGED_KEYS)
def test_example_config_states_each_range_as_the_code_does(
    section: str, key: str, bound: Range
) -> None:
    """The commented example (``config --example``) states the same range as the README."""
    example = Path(__file__).resolve().parents[2] / "engine" / "config" / "example.toml"
    lines = example.read_text().splitlines()
    start = lines.index(f"[{section}]")
    at = next(i for i in range(start, len(lines)) if lines[i].lstrip("# ").startswith(f"{key} ="))
    comment = next(lines[i] for i in range(at - 1, start, -1) if "[default:" in lines[i])
    assert f"range: {bound.text()}]" in comment


_numbers = st.one_of(
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
)


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(RANGED_KEYS), raw=_numbers)
def test_load_config_any_number_for_any_key_loads_or_is_refused_naming_the_key(
    key: tuple[str, str, Range], raw: str
) -> None:
    section, name, bound = key
    try:
        config = load_config(environ={f"ENGINE_{section}_{name}".upper(): raw})
    except ConfigError as exc:
        # The key itself, or a cross-field rule naming it (slow > fast, ...).
        assert str(exc).startswith(f"{section}.") and name in str(exc), str(exc)
        return
    value = getattr(getattr(config, section), name)
    assert bound.admits(value)
    if isinstance(value, Decimal):
        assert value.is_finite() and len(value.as_tuple().digits) <= 60


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(RANGED_KEYS), value=st.one_of(st.integers(), st.floats()))
def test_load_config_any_toml_number_loads_or_is_refused_naming_the_key(
    tmp_path_factory: pytest.TempPathFactory, key: tuple[str, str, Range], value: float
) -> None:
    section, name, _ = key
    path = tmp_path_factory.mktemp("toml") / "engine.toml"
    text = "nan" if value != value else ("inf" if value == float("inf") else repr(value))
    text = "-inf" if value == float("-inf") else text
    path.write_text(f"[{section}]\n{name} = {text}\n")
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        assert str(exc).startswith(f"{section}.") and name in str(exc), str(exc)


def test_load_config_file_not_regular_or_too_big_is_refused_naming_config(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, reason in [
        (Path("/dev/zero"), "not a regular file"),
        (tmp_path, "not a regular file"),
        (fifo, "not a regular file"),  # opened non-blocking: no writer needed
        (big, "larger than"),
    ]:
        with pytest.raises(ConfigError, match=rf"^--config {path}: {reason}"):
            load_config(path, environ={})


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 5000 + "]" * 5000,
        "a = " + "{b=" * 5000 + "1" + "}" * 5000,
        "a." * 20_000 + "b = 1",
        "[" + "a." * 20_000 + "b]",
        "\xff\xfe",
        "[execution]\nfee_bps = " + "1" * 5000,
    ],
    ids=["arrays", "inline-tables", "dotted-key", "dotted-table", "not-utf8", "5000-digit-int"],
)
def test_load_config_hostile_toml_is_refused_quickly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "engine.toml"
    path.write_bytes(text.encode("latin-1") if text == "\xff\xfe" else text.encode())
    with pytest.raises(ConfigError, match=rf"^--config {path}: invalid TOML"):
        load_config(path, environ={})


def test_admit_argument_refuses_like_the_twin_key_naming_the_flag() -> None:
    assert admit_argument("--speed", 2.0, "ingest.speed") == 2.0
    assert admit_argument("--speed", 0.0, "ingest.speed") == 0.0
    for bad in (math.nan, math.inf, -1.0, 1e9):
        with pytest.raises(ConfigError, match=r"^--speed: "):
            admit_argument("--speed", bad, "ingest.speed")


def test_admit_db_path_refuses_what_cannot_hold_a_database(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    admit_db_path(str(tmp_path / "new" / "sub" / "engine.db"), "--db")  # created later: fine
    for path, reason in [
        ("/dev/null", "not a regular file"),
        (str(tmp_path), "a directory"),
        (str(afile / "engine.db"), "is not a directory"),
    ]:
        with pytest.raises(ConfigError, match=rf"^--db: {path}.*{reason}"):
            admit_db_path(path, "--db")
    with pytest.raises(ConfigError, match=r"^engine.db_path: "):
        admit_db_path("/dev/null", "engine.db_path")


_SECTION_KEYS = {
    section: list(section_type.__struct_fields__)
    for section, section_type in _section_types().items()
}

_toml_scalars = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats().map(lambda f: "nan" if f != f else ("inf" if f > 0 else "-inf") if math.isinf(f)
                    else repr(f)),
    st.text(max_size=30).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(["true", "false", "1979-05-27", "07:32:00", '"1E-80"', '" 5 "', "0x10"]),
)
_toml_values = st.recursive(
    _toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(st.from_regex(r"[a-z]{1,5}", fullmatch=True), inner), max_size=3).map(
            lambda kvs: "{" + ", ".join(f"{k} = {v}" for k, v in kvs) + "}"
        ),
    ),
    max_leaves=8,
)


@st.composite
def _toml_documents(draw: st.DrawFn) -> bytes:
    lines = []
    for section in draw(st.lists(st.sampled_from([*_SECTION_KEYS, "riks"]), max_size=4)):
        lines.append(f"[{section}]")
        keys = _SECTION_KEYS.get(section, ["x"])
        for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
            lines.append(f"{key} = {draw(_toml_values)}")
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):  # damage it: drop, duplicate or flip a byte
        raw = bytearray(text.encode())
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        raw[at:at] = draw(st.binary(min_size=1, max_size=3))
        return bytes(raw)
    return text.encode()


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(_toml_documents(), st.binary(max_size=300)))
def test_load_config_any_file_loads_or_is_refused_with_config_error(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "engine.toml"
    path.write_bytes(raw)
    try:
        config = load_config(path, environ={})
    except ConfigError as exc:
        event("refused")
        # names the file or the key (`--config F: ...`, `risk.max_open_orders: ...`; an
        # unknown section or key is quoted as written, whatever it holds)
        assert str(exc).startswith("--config ") or ": " in str(exc), str(exc)
        return
    event("loaded")
    for section, section_type in _section_types().items():
        for key, bound in field_ranges(section_type).items():
            value = getattr(getattr(config, section), key)
            assert value is None or bound.admits(value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any directory")
def test_admit_db_path_unwritable_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match=r"^--db: .*directory .* is not writable"):
        admit_db_path(str(locked / "engine.db"), "--db")


def test_every_numeric_key_has_a_range() -> None:
    # A new key must say what it admits: a Range beside it (and its text in the README).
    for section, section_type in _section_types().items():
        hints = typing.get_type_hints(section_type)
        for key in section_type.__struct_fields__:
            leaves = typing.get_args(hints[key]) or (hints[key],)
            if any(t in (int, float, Decimal) for t in leaves):
                assert key in field_ranges(section_type), f"{section}.{key} has no Range"
