"""The proof bundle: a checksummed record that this code, risk config and set of libraries passed.

Gate G1 (``engine.proof.gate``) lets LIVE start only against a bundle that verifies,
whose checks all say PASS, that is recent, and whose three hashes (code, risk
config, libraries) equal the running process's. This module owns the bundle's
shape and its hashes; the checks themselves run in ``engine.proof.checks``.

Bundle (JSON, ``format`` 3)::

    {"format": 2, "created_at_ns": ..., "created_at": "2024-...Z",
     "engine_version": "0.1.0", "code_hash": "<sha256>",
     "risk_config_hash": "<sha256>", "risk_config": {"risk": {...}, "execution": {...}},
     "lock_hash": "<sha256>", "libraries": ["anyio==4.16.0", ...],
     "lock_file_hash": "<sha256>" | null,
     "strategy": {"kind": "sma_cross", "params": {"fast": 5, ...},
                  "source_sha256": "<sha256>", "sources": ["strategy.py", ...]},
     "checks": [{"name": "invariants", "status": "PASS", "duration_s": 12.3,
                 "summary": "9/9 properties, 846 examples", "figures": {...},
                 "detail": ""}, ...],
     "checksum": "<sha256>"}

A check's ``summary`` is its one-line figures for a person (what ``proof`` prints
after PASS); ``detail`` is the one-line reason of a FAIL (never empty for one).

*Hashes.*

* ``checksum`` -- sha256 of the canonical JSON (sorted keys, no whitespace,
  UTF-8) of every other field. Verification recomputes it from the parsed JSON,
  so re-indenting the file does not break it but changing any value does.
* ``code_hash`` -- sha256 over the ``engine/`` package's files, sorted by
  relative path, each contributing ``path NUL length contents``; ``__pycache__``,
  compiled files and hidden files are left out (they are not source). The
  package data -- the replay cases in ``engine/cases/`` the proof replays --
  counts like code. Any other edit to the package, even a comment, needs a new
  proof: fail closed.
* ``risk_config_hash`` -- sha256 of the canonical JSON of the *effective*
  ``[risk]`` and ``[execution]`` sections (after file and ``ENGINE_*`` overrides).
  ``[execution]`` is included because order size, type and slippage decide how
  much exposure one signal creates -- a cap is only as meaningful as the size of
  what it caps. Decimals are compared by value (``100`` == ``100.00``).
  ``[strategy]``, ``[ingest]``, ``[live]`` and ``[engine]`` are *not* included:
  they change what is traded or where, not how much may be at risk.
* ``lock_hash`` -- sha256 over the installed distributions as
  ``importlib.metadata`` sees them: each ``name==version`` (name normalised as
  pip does), sorted, one per line. Every distribution counts, not only the
  engine's dependencies: anything installed can be imported or load itself as a
  plugin (hypothesis does), so a library added, removed or upgraded needs a new
  proof. It works in any install, with or without a lock file; ``libraries``
  keeps the list itself so that the gate can say what changed.
* ``lock_file_hash`` -- sha256 of ``requirements/lock.txt`` when the package runs
  from a checkout that has one (editable install), else ``null``: which lock the
  environment was meant to be built from. The gate compares ``lock_hash``, what
  is actually installed.

* ``strategy`` -- the configured strategy as ``engine.config.strategies.identify_strategy``
  sees it: its kind, its parameters (decimals normalised) and ``source_sha256``
  over the source file(s) that define it -- a trader's own file lies outside
  ``engine/`` and so outside ``code_hash``. The ``strategy`` check proved exactly
  that strategy; the gate refuses LIVE when any of the three differs.

The bundle never holds credentials: nothing from ``[live]`` or the environment
is written into it.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import importlib.metadata
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec

import engine
from engine.config.schema import Config
from engine.config.strategies import identify_strategy

BUNDLE_FORMAT: Final = 3
"""Bumped when the bundle's shape changes; a gate refuses any other format.
2: ``lock_hash``, ``libraries``, ``lock_file_hash``; a ``summary`` per check.
3: ``strategy`` (kind, parameters, source hash) and the ``strategy`` check."""

REQUIRED_CHECKS: Final[tuple[str, ...]] = ("invariants", "replay", "risk_caps", "strategy")
"""Gate G1 (docs/contract.md) needs PASS for invariant property tests, deterministic replay
and risk-cap validation, and (docs/strategies.md) for the configured strategy's own
properties. A bundle missing one of these is refused even if what it has all passed."""

LOCK_FILE: Final = Path("requirements") / "lock.txt"
"""The lead's pip-compile lock, relative to the checkout holding ``engine/``."""

class CheckStatus(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"


class CheckResult(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One check's outcome. ``figures`` holds JSON scalars/lists only (counts, digests)."""

    name: str
    status: CheckStatus
    duration_s: float
    summary: str = ""
    figures: dict[str, Any] = {}
    detail: str = ""


class PropertyResult(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One property's outcome, as the bundle records it."""

    name: str
    covers: str
    status: CheckStatus
    examples: int
    """The fixed ``max_examples`` it ran with."""
    ran: int
    """Examples actually run (counted), including any shrinking of a failure."""
    steps: int
    seed: int
    seconds: float
    detail: str = ""


class Bundle(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: int
    created_at_ns: int
    created_at: str
    engine_version: str
    code_hash: str
    risk_config_hash: str
    risk_config: dict[str, Any]
    lock_hash: str
    libraries: tuple[str, ...]
    lock_file_hash: str | None
    strategy: dict[str, Any]
    checks: tuple[CheckResult, ...]
    checksum: str

    @property
    def passed(self) -> bool:
        return all(c.status is CheckStatus.PASS for c in self.checks)


class BundleError(Exception):
    """Raised by ``verify_bundle`` when the bytes are not a bundle of our format."""


class ChecksumMismatch(BundleError):
    """Raised by ``verify_bundle`` when the content does not match its checksum."""


# ---------------------------------------------------------------- pure helpers


DETAIL_CHARS: Final = 600
"""A reason or summary is cut to this many characters (one line, enough to see why)."""


def one_line(text: str, limit: int = DETAIL_CHARS) -> str:
    """``text`` on one line (newlines become `` | ``), cut to ``limit`` characters."""
    flat = " | ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def canonical_json(data: Any) -> bytes:
    """The one byte encoding that hashes are taken over: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _plain(value: Any) -> Any:
    """Config values as JSON data, Decimals normalised so equal values hash equally."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, msgspec.Struct):
        return {name: _plain(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def risk_config_of(config: Config) -> dict[str, Any]:
    """The part of the configuration a proof is bound to (see module docstring)."""
    return {"risk": _plain(config.risk), "execution": _plain(config.execution)}


def risk_config_hash(config: Config) -> str:
    return hashlib.sha256(canonical_json(risk_config_of(config))).hexdigest()


def strategy_identity(config: Config) -> dict[str, Any]:
    """The configured strategy as a bundle records it (see module docstring)."""
    # Through JSON: the same plain data the bundle file holds (lists, not tuples).
    identity: dict[str, Any] = msgspec.json.decode(
        msgspec.json.encode(identify_strategy(config.strategy))
    )
    return identity


def strategy_changes(proven: Mapping[str, Any], running: Mapping[str, Any]) -> str:
    """Which of kind, parameters and source differ, e.g. ``params {'lookback': 20} -> {...}``."""
    changes = []
    for key in ("kind", "params", "source_sha256"):
        before, after = proven.get(key), running.get(key)
        if before != after:
            if key == "source_sha256":
                changes.append(f"source {str(before)[:12]}... -> {str(after)[:12]}...")
            else:
                changes.append(f"{key} {before!r} -> {after!r}")
    return one_line("; ".join(changes), limit=300)


def hash_files(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over ``(relative path, contents)`` pairs, in sorted path order."""
    digest = hashlib.sha256()
    for rel, data in sorted(files):
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def hash_libraries(libraries: Iterable[str]) -> str:
    """``lock_hash``: sha256 over sorted ``name==version`` lines (see module docstring)."""
    return hashlib.sha256("\n".join(sorted(set(libraries))).encode("utf-8")).hexdigest()


def library_changes(proven: Sequence[str], running: Sequence[str], limit: int = 6) -> str:
    """What differs between two ``name==version`` lists, e.g. ``msgspec 0.22.0 -> 0.23.0``."""

    def versions(libraries: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for item in libraries:
            name, _, version = item.partition("==")
            out.setdefault(name, set()).add(version)
        return out

    old, new = versions(proven), versions(running)
    changes = []
    for name in sorted(old.keys() | new.keys()):
        before, after = ",".join(sorted(old.get(name, ()))), ",".join(sorted(new.get(name, ())))
        if before == after:
            continue
        if not before:
            changes.append(f"+{name} {after}")
        elif not after:
            changes.append(f"-{name} {before}")
        else:
            changes.append(f"{name} {before} -> {after}")
    shown = changes[:limit]
    if len(changes) > limit:
        shown.append(f"{len(changes) - limit} more")
    return "; ".join(shown) if shown else "same names and versions"


def _bundle_checksum(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(dict(content))).hexdigest()


def iso_utc(wall_ns: int) -> str:
    return (
        dt.datetime.fromtimestamp(wall_ns / 1e9, tz=dt.UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def build_bundle(
    *,
    checks: Iterable[CheckResult],
    created_at_ns: int,
    engine_version: str,
    code_hash: str,
    config: Config,
    libraries: Sequence[str] | None = None,
    lock_file_hash: str | None = None,
    strategy: Mapping[str, Any] | None = None,
) -> Bundle:
    """Assemble and checksum a bundle.

    Pure but for two defaults: ``libraries`` left out means the running
    environment's (``installed_libraries()``) and ``strategy`` left out the
    configured strategy's identity (``strategy_identity``, which reads its
    source files) -- what a bundle built by this process must record anyway.
    """
    libs = sorted(set(installed_libraries() if libraries is None else libraries))
    fields: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "created_at_ns": created_at_ns,
        "created_at": iso_utc(created_at_ns),
        "engine_version": engine_version,
        "code_hash": code_hash,
        "risk_config_hash": risk_config_hash(config),
        "risk_config": risk_config_of(config),
        "lock_hash": hash_libraries(libs),
        "libraries": libs,
        "lock_file_hash": lock_file_hash,
        "strategy": dict(strategy_identity(config) if strategy is None else strategy),
        "checks": [msgspec.to_builtins(c) for c in checks],
    }
    fields["checksum"] = _bundle_checksum(fields)
    return msgspec.convert(fields, Bundle)


def encode_bundle(bundle: Bundle) -> bytes:
    """Human-readable JSON (indented); the checksum does not depend on the layout."""
    raw = json.dumps(msgspec.to_builtins(bundle), indent=2, sort_keys=True, ensure_ascii=False)
    return (raw + "\n").encode("utf-8")


def verify_bundle(data: bytes) -> Bundle:
    """Parse ``data`` and check its checksum; return the bundle or raise.

    *Error handling:* ``BundleError`` when it is not JSON of our format,
    ``ChecksumMismatch`` (a subclass) when any field differs from what was checksummed.
    """
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BundleError("not a JSON object")
    if raw.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"format {raw.get('format')!r}, expected {BUNDLE_FORMAT}")
    claimed = raw.pop("checksum", None)
    if not isinstance(claimed, str):
        raise BundleError("no checksum field")
    try:
        actual = _bundle_checksum(raw)
    except ValueError as exc:  # NaN/Infinity smuggled in
        raise BundleError(str(exc)) from None
    try:
        bundle = msgspec.convert({**raw, "checksum": claimed}, Bundle)
    except msgspec.ValidationError as exc:
        raise BundleError(f"unexpected shape: {exc}") from None
    if actual != claimed:
        raise ChecksumMismatch(
            f"checksum {claimed[:12]}... does not match content {actual[:12]}..."
        )
    return bundle


# ---------------------------------------------------------------- shell (reads files)


def package_root() -> Path:
    return Path(engine.__file__).resolve().parent


def source_files(root: Path) -> list[tuple[str, bytes]]:
    """The package files that make up the code hash (see module docstring)."""
    out: list[tuple[str, bytes]] = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if not path.is_file() or "__pycache__" in rel.parts:
            continue
        if path.suffix in (".pyc", ".pyo") or any(p.startswith(".") for p in rel.parts):
            continue
        out.append((rel.as_posix(), path.read_bytes()))
    return out


def code_hash(root: Path | None = None) -> str:
    """The running code's hash: ``hash_files`` over the ``engine/`` package source."""
    return hash_files(source_files(package_root() if root is None else root))


def engine_version() -> str:
    return engine.__version__


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_libraries() -> tuple[str, ...]:
    """Every installed distribution as ``name==version``, sorted (see ``lock_hash``)."""
    found = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.add(f"{_normalise(name)}=={dist.version}")
    return tuple(sorted(found))


def lock_hash() -> str:
    """The running environment's ``lock_hash``."""
    return hash_libraries(installed_libraries())


def lock_file_hash(root: Path | None = None) -> str | None:
    """sha256 of ``requirements/lock.txt`` beside the package's checkout, or ``None``."""
    path = (package_root() if root is None else root).parent / LOCK_FILE
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def write_bundle(bundle: Bundle, path: str | Path) -> Path:
    """Write atomically (temp file + rename) so a gate never reads half a bundle."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".proof-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(encode_bundle(bundle))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_bundle_bytes(path: str | Path) -> bytes | None:
    """The bundle file's bytes, or ``None`` when there is no file to read."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
