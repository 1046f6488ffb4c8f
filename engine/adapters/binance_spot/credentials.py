"""API credentials for the LIVE adapter: from the environment or an owner-only file.

Where they come from, in order:

1. ``[live] credentials_file`` when it is set: a TOML file with ``api_key`` and
   ``api_secret``. It must belong to the user running the engine and grant no
   permission at all to group or others (``chmod 600``); anything else is refused
   with ``ConfigError`` (exit 12) *before* the file is read.
2. Otherwise the environment: ``BINANCE_API_KEY`` and ``BINANCE_API_SECRET``.

*Secrecy.* The secret is held in a ``Secret`` whose ``repr``/``str`` print
``***``; only the signing code calls ``reveal()``. Error messages name the file
and the key *names*, never a value. Nothing here logs.
"""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from engine.exits import ConfigError

ENV_KEY: Final = "BINANCE_API_KEY"
ENV_SECRET: Final = "BINANCE_API_SECRET"
FORBIDDEN_MODE_BITS: Final = stat.S_IRWXG | stat.S_IRWXO
"""Any group/other permission on the credentials file is refused (read, write or execute)."""


class Secret:
    """A value that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value.encode("utf-8")

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac_equal(self._value, other._value)

    def __hash__(self) -> int:
        return hash(Secret)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def hmac_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str
    secret: Secret
    source: str
    """Where they came from (``env`` or the file path), for the start-up log line."""

    def __repr__(self) -> str:
        return f"Credentials(api_key=***, secret=***, source={self.source!r})"

    def redact(self, text: str) -> str:
        """``text`` with the key and the secret blotted out (defence in depth for messages)."""
        for value in (self.api_key, self.secret.reveal().decode("utf-8")):
            if value:
                text = text.replace(value, "***")
        return text


class _CredentialsFile(msgspec.Struct, forbid_unknown_fields=True):
    api_key: str
    api_secret: str


def check_owner_only(path: Path) -> None:
    """Refuse a credentials file that anyone but its owner (us) could read or change."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"live.credentials_file: cannot stat {path} ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"live.credentials_file: {path} is not a regular file")
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"live.credentials_file: {path} belongs to uid {info.st_uid}, not to this user "
            f"({os.geteuid()}); chown it"
        )
    if info.st_mode & FORBIDDEN_MODE_BITS:
        raise ConfigError(
            f"live.credentials_file: {path} has mode {stat.S_IMODE(info.st_mode):04o}; "
            f"it must be readable by its owner only: chmod 600 {path}"
        )


def load_credentials(credentials_file: str, environ: Mapping[str, str]) -> Credentials:
    """Load key and secret (see module docstring). Raises ``ConfigError`` naming what is wrong."""
    if credentials_file:
        path = Path(credentials_file)
        check_owner_only(path)
        try:
            data = msgspec.toml.decode(path.read_bytes(), type=_CredentialsFile)
        except OSError as exc:
            raise ConfigError(
                f"live.credentials_file: cannot read {path} ({exc.strerror})"
            ) from None
        except msgspec.DecodeError:
            # msgspec's message may quote the offending line: never echo it.
            raise ConfigError(
                f"live.credentials_file: {path} must be TOML with exactly "
                'api_key = "..." and api_secret = "..."'
            ) from None
        key, secret, source = data.api_key, data.api_secret, str(path)
    else:
        key, secret, source = environ.get(ENV_KEY, ""), environ.get(ENV_SECRET, ""), "env"
        if not key or not secret:
            raise ConfigError(
                f"LIVE needs credentials: set {ENV_KEY} and {ENV_SECRET}, "
                "or [live] credentials_file (chmod 600)"
            )
    if not key.strip() or not secret.strip():
        raise ConfigError(f"credentials from {source}: api_key and api_secret must be non-empty")
    return Credentials(api_key=key, secret=Secret(secret), source=source)
