"""Reading the configuration: the TOML file (bounded in size), the ENGINE_* environment and
command-line twins, all admitted through ``engine.config.schema``'s sections. See
docs/configuration.md.
"""

from __future__ import annotations

import os
import re
import stat
import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec

from engine.config.bounds import (
    PATTERN_MEANINGS,
    decimal_syntax_problem,
    problem,
)
from engine.config.schema import (
    Config,
    Section,
    field_ranges,
)
from engine.config.strategies import admit_strategy
from engine.exits import ConfigError

ENV_PREFIX: Final = "ENGINE_"


MAX_CONFIG_BYTES: Final = 1 << 20
"""Largest configuration file read (1 MiB); a bigger one, or one that is not a
regular file (``/dev/zero``, a FIFO, a directory), is refused before it is read."""


MAX_CONFIG_DOTS: Final = 10_000
"""Most ``.`` characters in a configuration file. Python's TOML parser spends
time quadratic in the length of a dotted key (50,000 dots: 5 s and out of
memory); this bounds that cost to well under a second."""


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
        strategy_key = rest.removeprefix("strategy_")
        if strategy_key != rest and STRATEGY_KEY.fullmatch(strategy_key):
            # Any key: which ones exist depends on the kind (admitted with the section).
            out.setdefault("strategy", {})[strategy_key] = raw
            continue
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


STRATEGY_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""An ``ENGINE_STRATEGY_<KEY>`` variable's key: the kind's parameters are not known yet."""


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
    overrides = env_overrides(environ)
    data = _merge(data, overrides)
    _check_decimal_syntax(data)
    strategy = data.pop("strategy", {})
    # A strategy file named in the file is found beside it; from the environment,
    # from the working directory.
    kind_from_file = path is not None and "kind" not in overrides.get("strategy", {})
    base = Path(path).parent if kind_from_file and path is not None else None
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except RecursionError:
        raise ConfigError("--config: a value is nested too deeply") from None
    # The strategy's own Params struct validates its keys.
    return msgspec.structs.replace(config, strategy=admit_strategy(strategy, base=base))


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
    """The configuration as plain JSON-able data (Decimals as strings).

    ``[strategy]`` comes out flat, as it is written: ``kind`` beside the parameters.
    """
    result: dict[str, Any] = msgspec.to_builtins(config)
    result["strategy"] = {
        "kind": config.strategy.kind, **msgspec.to_builtins(config.strategy.params)
    }
    return result
