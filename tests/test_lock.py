"""The environment is exactly the lock: what CI tests is what a fresh machine installs.

``scripts/install`` installs ``requirements/lock.txt`` (runtime) or
``requirements/dev-lock.txt`` (runtime + test tools) with ``--require-hashes``.
These tests fail when the running environment drifted from the lock, when the
two locks disagree on a version, or when ``pyproject.toml`` names a dependency
the lock does not pin (a dependency added without the deliberate ``nox -s lock``
refresh).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = ROOT / "requirements" / "lock.txt"
DEV_LOCK = ROOT / "requirements" / "dev-lock.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.MULTILINE)
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def pins(lock: Path) -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in PIN.findall(lock.read_text(encoding="utf-8"))}


def test_lock_every_installed_version_equals_the_dev_lock() -> None:
    locked = pins(DEV_LOCK)
    assert len(locked) > 20
    drift = {}
    for name, version in locked.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "(not installed)"
        if installed != version:
            drift[name] = (version, installed)
    assert drift == {}, f"environment differs from {DEV_LOCK.name} (locked, installed): {drift}"


def test_lock_runtime_and_dev_locks_agree_on_every_shared_version() -> None:
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    assert runtime, "empty runtime lock"
    assert {n: dev.get(n) for n in runtime} == runtime


def test_lock_every_pin_carries_a_hash() -> None:
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text(encoding="utf-8"))
        pinned = [b for b in blocks if PIN.match(b)]
        assert pinned
        assert [b.split()[0] for b in pinned if not HASH.search(b)] == [], lock.name


def test_lock_pins_every_dependency_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in runtime, f"{req.name} is in pyproject.toml but not in {RUNTIME_LOCK.name}"
        assert req.specifier.contains(runtime[name]), f"{req.name}=={runtime[name]} vs {spec}"
    for spec in project["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in dev, f"{req.name} is in pyproject.toml but not in {DEV_LOCK.name}"
        assert req.specifier.contains(dev[name]), f"{req.name}=={dev[name]} vs {spec}"
