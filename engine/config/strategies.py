"""Strategies by ``[strategy] kind``: the built-ins, and a trader's own class.

``kind`` is one of

* a built-in: ``sma_cross`` (the default, ``engine.core.strategy``) or
  ``donchian_breakout`` (``engine.core.donchian``);
* ``package.module:ClassName`` -- an importable module;
* ``path/to/file.py:ClassName`` -- a file, relative to the working directory.

The other keys of ``[strategy]`` are the strategy's parameters, decoded into its
own ``Params`` (a ``msgspec.Struct``; a user class without one takes no keys).
Admission (``admit_strategy``) is the one path a ``[strategy]`` table passes:

* ``kind`` is a string of bounded length and shape; a module or file that
  cannot be imported, or a class without ``on_tick``, is refused naming
  ``strategy.kind``;
* a key the ``Params`` struct does not have is refused naming it; so is a value
  of the wrong type, a float field (parameters are exact: ``int`` or
  ``Decimal``), a decimal string that is not plain ASCII, a decimal of too many
  digits, and a value outside a field's ``Range`` annotation (as for every other
  numeric key, ``engine.config.bounds``);

each as ``ConfigError`` (exit 12) with one line naming the key.

``identify_strategy`` is what a run and a proof record of the strategy: its
kind, its parameters as plain data, and ``source_sha256`` over the source
file(s) that define it (for a built-in, the core modules it runs), which the
LIVE gate compares with the running process's (``engine.proof.gate``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec

from engine.config.bounds import (
    MAX_PATH_CHARS,
    Range,
    decimal_syntax_problem,
    problem,
)
from engine.config.schema import DEFAULT_STRATEGY, DonchianParams, StrategyChoice, StrategySection
from engine.exits import ConfigError

MODULE_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
CLASS_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KIND_HINT: Final = (
    "a built-in (sma_cross, donchian_breakout), package.module:ClassName "
    "or path/to/file.py:ClassName"
)


@dataclass(frozen=True)
class StrategyKind:
    """What a kind resolves to: its parameters' type, its class if a user's, its source files.

    Built-ins are built by the core (``engine.core.choice.build_strategy``); a user
    kind's class is loaded here, once per process, and handed to the same builder.
    """

    kind: str
    params_type: type[msgspec.Struct] | None
    """``None``: a user class without ``Params`` (no keys allowed)."""
    sources: tuple[Path, ...]
    user_class: type | None = None


def _core_file(name: str) -> Path:
    return Path(__file__).resolve().parents[1] / "core" / name


BUILTINS: Final[Mapping[str, StrategyKind]] = {
    "sma_cross": StrategyKind(
        "sma_cross",
        StrategySection,
        (_core_file("strategy.py"), _core_file("sma.py"), _core_file("events.py")),
    ),
    "donchian_breakout": StrategyKind(
        "donchian_breakout",
        DonchianParams,
        (_core_file("donchian.py"), _core_file("strategy.py"), _core_file("events.py")),
    ),
}


# ---------------------------------------------------------------- resolving a kind


def is_file_kind(where: str) -> bool:
    return where.endswith(".py") or "/" in where


def absolute_kind(kind: object, base: Path | None = None) -> object:
    """``path/to/file.py:Class`` with the path made absolute (under ``base`` if relative)."""
    if not isinstance(kind, str) or kind in BUILTINS:
        return kind
    where, colon, name = kind.rpartition(":")
    if not colon or not is_file_kind(where) or "\x00" in where or len(where) > MAX_PATH_CHARS:
        return kind
    path = Path(where)
    if not path.is_absolute():
        path = (Path.cwd() if base is None else base).absolute() / path
    return f"{os.path.normpath(path)}:{name}"


def resolve_kind(kind: object) -> StrategyKind:
    """The strategy ``kind`` names; ``ConfigError`` naming ``strategy.kind`` if none."""
    if not isinstance(kind, str):
        raise ConfigError(f"strategy.kind: Expected `str`, got `{type(kind).__name__}`")
    if kind in BUILTINS:
        return BUILTINS[kind]
    if len(kind) > MAX_PATH_CHARS or any(ord(c) < 0x20 or c == "\x7f" for c in kind):
        raise ConfigError("strategy.kind: too long or holds a control character")
    where, colon, name = kind.rpartition(":")
    if not colon or not where:
        raise ConfigError(f"strategy.kind: unknown strategy {kind[:80]!r}; expected {KIND_HINT}")
    if not CLASS_PATTERN.fullmatch(name):
        raise ConfigError(f"strategy.kind: {name[:80]!r} is not a class name")
    return _load_user_kind(kind, where, name)


@functools.cache
def _load_user_kind(kind: str, where: str, name: str) -> StrategyKind:
    """Import the module or file once per process (a second import would be a second class)."""
    if is_file_kind(where):
        module = _import_file(Path(where))
    elif MODULE_PATTERN.fullmatch(where):
        try:
            module = importlib.import_module(where)
        except Exception as exc:  # any failure of the trader's import is a config refusal
            raise ConfigError(
                f"strategy.kind: cannot import {where}: {type(exc).__name__}: {exc}"
            ) from None
    else:
        raise ConfigError(f"strategy.kind: {where[:80]!r} is neither a module nor a .py file")
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"strategy.kind: {where} has no class {name}")
    if not callable(getattr(cls, "on_tick", None)):
        raise ConfigError(f"strategy.kind: {name} has no on_tick(tick) method")
    params_type = getattr(cls, "Params", None)
    if params_type is not None and not (
        isinstance(params_type, type) and issubclass(params_type, msgspec.Struct)
    ):
        raise ConfigError(f"strategy.kind: {name}.Params must be a msgspec.Struct")
    source = inspect.getsourcefile(cls)
    sources = (Path(source).resolve(),) if source else ()
    return StrategyKind(kind, params_type, sources, user_class=cls)


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"strategy.kind: {path}: no such file")
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    module_name = f"hybrid_engine_strategy_{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError(f"strategy.kind: {path}: cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # msgspec resolves the Params annotations through it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # any failure of the trader's file is a config refusal
        del sys.modules[module_name]
        raise ConfigError(
            f"strategy.kind: cannot import {path}: {type(exc).__name__}: {exc}"
        ) from None
    return module


# ---------------------------------------------------------------- admitting parameters


def admit_strategy(raw: object, base: Path | None = None) -> StrategyChoice:
    """The ``[strategy]`` table admitted: its kind resolved, its other keys as the kind's Params.

    A relative ``file.py:Class`` is found under ``base`` (the directory of the
    configuration file that names it) when given, else under the working
    directory; the admitted kind names the file by its absolute path, so a
    run, its proof and the gate all mean the same file.
    """
    if not isinstance(raw, dict):
        raise ConfigError("strategy: must be a table")
    values = dict(raw)
    kind = absolute_kind(values.pop("kind", DEFAULT_STRATEGY), base)
    spec = resolve_kind(kind)
    params = admit_params(spec, values)
    _check_constructor(spec, params)
    return StrategyChoice(kind=spec.kind, params=params)


def admit_params(spec: StrategyKind, values: Mapping[str, Any]) -> msgspec.Struct:
    """``values`` decoded into the kind's ``Params``; ``ConfigError`` naming the bad key."""
    params_type = spec.params_type
    if params_type is None:
        if values:
            key = sorted(values)[0]
            raise ConfigError(f"strategy.{key}: unknown key ({spec.kind} takes no parameters)")
        return _NoParams()
    fields = params_type.__struct_fields__
    hints = typing.get_type_hints(params_type, include_extras=True)
    for key in sorted(values):
        if key not in fields:
            takes = ", ".join(fields) or "no parameters"
            raise ConfigError(f"strategy.{key}: unknown key ({spec.kind} takes: {takes})")
    for name in fields:
        leaves = _leaf_types(hints[name])
        if float in leaves:
            raise ConfigError(
                f"strategy.{name}: {spec.kind}'s parameter is a float; parameters are exact"
                " (int or Decimal)"
            )
        raw = values.get(name)
        if isinstance(raw, str) and Decimal in leaves:
            reason = decimal_syntax_problem(raw)
            if reason is not None:
                raise ConfigError(f"strategy.{name}: {reason}")
    try:
        params = msgspec.convert(dict(values), params_type, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_refusal(exc)) from None
    except (TypeError, ValueError, ArithmeticError) as exc:  # a user __post_init__
        raise ConfigError(f"strategy: {spec.kind}'s parameters refused: {exc}") from None
    for name in fields:
        for meta in getattr(hints[name], "__metadata__", ()):
            if isinstance(meta, Range):
                reason = problem(getattr(params, name), meta)
                if reason is not None:
                    raise ConfigError(f"strategy.{name}: {reason}")
    for name in fields:  # every value bounded, Range or not
        reason = _unbounded(getattr(params, name))
        if reason is not None:
            raise ConfigError(f"strategy.{name}: {reason}")
    return params


_ANY_DECIMAL: Final = Range(-Decimal(10) ** 18, Decimal(10) ** 18)
_ANY_INT: Final = Range(-(2**63) + 1, 2**63 - 1)


def _unbounded(value: object) -> str | None:
    """Why a parameter value is refused even without a ``Range`` (``None``: fine).

    Decimals: 18 significant digits, 12 places, below 10**18; ints: int64; text:
    at most ``MAX_PATH_CHARS`` characters, no control character; tuples: each item.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return problem(value, _ANY_DECIMAL)
    if isinstance(value, int):
        return problem(value, _ANY_INT)
    if isinstance(value, str):
        if len(value) > MAX_PATH_CHARS or not value.isprintable():
            return f"must be printable text of at most {MAX_PATH_CHARS} characters"
        return None
    if isinstance(value, tuple | list | frozenset):
        if len(value) > MAX_PATH_CHARS:
            return f"at most {MAX_PATH_CHARS} items"
        return next((r for r in map(_unbounded, value) if r is not None), None)
    return None


def _refusal(err: msgspec.ValidationError) -> str:
    """msgspec's ``Expected `int`, got `str` - at `$.lookback``` as ``strategy.lookback: ...``."""
    message, _, where = str(err).partition(" - at ")
    key = where.strip("`").removeprefix("$").lstrip(".")
    return f"strategy.{key}: {message}" if key else f"strategy: {message}"


def _leaf_types(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    args = typing.get_args(annotation)
    return args if args and typing.get_origin(annotation) is not tuple else (annotation,)


class _NoParams(msgspec.Struct, frozen=True):
    """The parameters of a user strategy that declares no ``Params``."""


# ---------------------------------------------------------------- building and identity


def user_class_of(choice: StrategyChoice) -> type | None:
    """The class of a user kind (``None`` for a built-in): what the core's builder needs."""
    return resolve_kind(choice.kind).user_class


def _check_constructor(spec: StrategyKind, params: msgspec.Struct) -> None:
    """Build the user class once with its parameters: a constructor that refuses is exit 12."""
    cls = spec.user_class
    if cls is None:
        return
    try:
        cls() if spec.params_type is None else cls(params)
    except Exception as exc:  # the trader's constructor
        raise ConfigError(
            f"strategy.kind: {spec.kind} could not be built: {type(exc).__name__}: {exc}"
        ) from None


class StrategyIdentity(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a run and a proof bundle record of a strategy (the gate compares all three)."""

    kind: str
    params: dict[str, Any]
    source_sha256: str
    sources: tuple[str, ...]
    """The source files' names, for a person (the hash covers their contents)."""


def params_of(choice: StrategyChoice) -> dict[str, Any]:
    """The parameters as plain data, decimals normalised (``100`` == ``100.00``)."""
    out: dict[str, Any] = {}
    for name in choice.params.__struct_fields__:
        value = getattr(choice.params, name)
        out[name] = format(value.normalize(), "f") if isinstance(value, Decimal) else (
            msgspec.to_builtins(value)
        )
    return out


def identify_strategy(choice: StrategyChoice) -> StrategyIdentity:
    spec = resolve_kind(choice.kind)
    digest = hashlib.sha256()
    for path in spec.sources:
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return StrategyIdentity(
        kind=choice.kind,
        params=params_of(choice),
        source_sha256=digest.hexdigest(),
        sources=tuple(p.name for p in spec.sources),
    )
