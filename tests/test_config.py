"""Configuration: defaults, file, environment overrides, and errors that name the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from engine.config import Config, Mode, Source, load_config
from engine.exits import ConfigError, ExitCode


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(text)
    return path


def test_load_config_without_file_gives_safe_defaults() -> None:
    config = load_config(environ={})
    assert config == Config()
    assert config.engine.mode is Mode.SHADOW
    assert config.engine.db_path == "./var/engine.db"
    assert config.ingest.source is Source.SYNTHETIC
    assert (config.strategy.fast, config.strategy.slow, config.strategy.bar_seconds) == (5, 20, 1)
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
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=env)
    assert names in str(info.value)
    assert info.value.exit_code is ExitCode.CONFIG


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
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=env)
    assert names in str(info.value)
    assert info.value.exit_code is ExitCode.CONFIG


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
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert names in str(info.value)
    assert info.value.exit_code is ExitCode.CONFIG
