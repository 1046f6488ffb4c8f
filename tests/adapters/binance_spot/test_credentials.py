"""LIVE credentials: environment or an owner-only file; the secret never shows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.adapters.binance_spot.credentials import ENV_KEY, ENV_SECRET, Secret, load_credentials
from engine.exits import ConfigError

KEY = "key-0123456789abcdef"
SECRET = "secret-DO-NOT-LEAK-fedcba9876543210"


def write_file(tmp_path: Path, mode: int, text: str | None = None) -> Path:
    path = tmp_path / "binance.toml"
    path.write_text(text if text is not None else f'api_key = "{KEY}"\napi_secret = "{SECRET}"\n')
    path.chmod(mode)
    return path


def test_credentials_from_env() -> None:
    creds = load_credentials("", {ENV_KEY: KEY, ENV_SECRET: SECRET})
    assert creds.api_key == KEY
    assert creds.secret.reveal() == SECRET.encode()
    assert creds.source == "env"


@pytest.mark.parametrize(
    "environ", [{}, {ENV_KEY: KEY}, {ENV_SECRET: SECRET}, {ENV_KEY: " ", ENV_SECRET: SECRET}]
)
def test_credentials_env_missing_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_credentials("", environ)
    assert SECRET not in str(err.value)


def test_credentials_owner_only_file_accepted(tmp_path: Path) -> None:
    path = write_file(tmp_path, 0o600)
    creds = load_credentials(str(path), {ENV_KEY: "other", ENV_SECRET: "other"})
    assert creds.api_key == KEY
    assert creds.source == str(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602, 0o610])
def test_credentials_group_or_world_permission_refused(tmp_path: Path, mode: int) -> None:
    path = write_file(tmp_path, mode)
    with pytest.raises(ConfigError, match="chmod 600") as err:
        load_credentials(str(path), {})
    assert SECRET not in str(err.value)
    assert oct(mode)[2:] in str(err.value)


def test_credentials_missing_file_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot stat"):
        load_credentials(str(tmp_path / "nope.toml"), {ENV_KEY: KEY, ENV_SECRET: SECRET})


def test_credentials_directory_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_credentials(str(tmp_path / "d"), {})


@pytest.mark.parametrize(
    "text",
    [
        f'api_key = "{KEY}"\napi_secret = {SECRET}\n',  # invalid TOML quoting the secret
        f'api_key = "{KEY}"\n',
        f'api_key = "{KEY}"\napi_secret = "{SECRET}"\nextra = 1\n',
        f'api_key = "{KEY}"\napi_secret = ""\n',
    ],
)
def test_credentials_bad_file_refused_without_echoing_it(tmp_path: Path, text: str) -> None:
    path = write_file(tmp_path, 0o600, text)
    with pytest.raises(ConfigError) as err:
        load_credentials(str(path), {})
    assert SECRET not in str(err.value)
    assert KEY not in str(err.value)


def test_credentials_never_print_the_secret() -> None:
    creds = load_credentials("", {ENV_KEY: KEY, ENV_SECRET: SECRET})
    for text in (repr(creds), str(creds), repr(creds.secret), str(creds.secret), f"{creds}"):
        assert SECRET not in text
        assert KEY not in text


def test_credentials_redact_blots_key_and_secret() -> None:
    creds = load_credentials("", {ENV_KEY: KEY, ENV_SECRET: SECRET})
    assert creds.redact(f"a {KEY} b {SECRET} c") == "a *** b *** c"


def test_secret_cannot_be_pickled() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret(SECRET))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file another owner")
def test_credentials_file_of_another_user_refused(tmp_path: Path) -> None:
    path = write_file(tmp_path, 0o600)
    os.chown(path, 12345, 12345)
    with pytest.raises(ConfigError, match="belongs to uid 12345"):
        load_credentials(str(path), {})
