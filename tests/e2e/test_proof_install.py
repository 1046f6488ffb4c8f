"""``hybrid-engine proof`` from an operator install: a fresh venv, a NON-editable install.

The package is built into a wheel from this checkout (``pip wheel``; with this
environment's setuptools when it can build wheels itself, >= 70.1, as the locked
one does -- else in pip's isolated build environment) and installed
with ``pip install --no-deps`` into a fresh venv; the third-party libraries come
from the test's own environment through a ``.pth`` line (the machine is offline,
and the point is the package, not pip's resolver). ``proof`` then runs with its
working directory in an empty folder -- no ``tests/``, no ``replays/``, no
checkout on ``sys.path`` -- and must PASS, name every check and every property,
replay the cases *installed with the package*, leave nothing behind but the
bundle, and satisfy the installed ``gate``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from engine.proof import evidence
from engine.proof.properties import PROPERTIES
from tests.fakes.engine_process import REPO, engine_env

pytestmark = pytest.mark.slow

PROOF_TIMEOUT_S = 1_200
"""Bound on the whole proof in the fresh venv (it takes well under a minute on a quiet host)."""


def clean_env() -> dict[str, str]:
    """No PYTHONPATH: nothing may put the checkout in front of the installed package."""
    return {k: v for k, v in engine_env().items() if k != "PYTHONPATH"}


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def build_isolation_args() -> list[str]:
    """``--no-build-isolation`` when this environment's setuptools builds wheels unaided."""
    try:
        found = re.match(r"(\d+)\.(\d+)", metadata.version("setuptools"))
    except metadata.PackageNotFoundError:
        return []
    return ["--no-build-isolation"] if found and tuple(map(int, found.groups())) >= (70, 1) else []


def operator_install(tmp: Path) -> Path:
    """A fresh venv holding a wheel of this checkout; returns its ``bin/``."""
    src = tmp / "src"
    src.mkdir()
    shutil.copytree(
        REPO / "engine", src / "engine", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *build_isolation_args(),
         "-w", str(tmp / "dist"), str(src)], cwd=tmp)  # fmt: skip
    [wheel] = (tmp / "dist").glob("hybrid_engine-*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=tmp)
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  cwd=tmp).stdout.strip()  # fmt: skip
    # Appended after the venv's own site-packages: the installed engine wins, the
    # libraries come from here; this venv's editable-install hook (.pth) is not run.
    (Path(purelib) / "test_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def test_proof_from_a_fresh_non_editable_install_passes_and_names_every_check(
    tmp_path: Path,
) -> None:
    bin_dir = operator_install(tmp_path)
    where = run(
        [str(bin_dir / "python"), "-c",
         "from engine.proof import evidence as e; "
         "print(e.package_root()); print(e.code_hash()); print(e.lock_hash())"],
        cwd=tmp_path,
    ).stdout.split()  # fmt: skip
    package_root, code_hash, lock_hash = where
    assert Path(package_root).is_relative_to(tmp_path / "venv")  # not the checkout

    operator = tmp_path / "operator"
    operator.mkdir()
    out = operator / "var" / "proof.json"
    done = subprocess.run(
        [str(bin_dir / "hybrid-engine"), "proof", "--out", str(out)],
        cwd=operator, env=clean_env(), capture_output=True, text=True,
        timeout=PROOF_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert lines[-1] == f"hybrid-engine proof: PASS -> {out}"
    for name in (*evidence.REQUIRED_CHECKS, "code_unchanged"):
        assert any(line.startswith(f"PASS {name} (") for line in lines), (name, lines)
    for prop in PROPERTIES:
        assert any(line.startswith(f"  PASS invariants/{prop.name} (") for line in lines)

    bundle = evidence.verify_bundle(out.read_bytes())
    assert bundle.passed
    assert [c.name for c in bundle.checks] == [*evidence.REQUIRED_CHECKS, "code_unchanged"]
    assert (bundle.code_hash, bundle.lock_hash) == (code_hash, lock_hash)
    assert bundle.lock_file_hash is None  # no checkout beside an installed package
    checks = {c.name: c for c in bundle.checks}
    reported = checks["invariants"].figures["properties"]
    assert [p["name"] for p in reported] == [p.name for p in PROPERTIES]
    assert all(p["status"] == "PASS" and p["ran"] >= p["examples"] > 0 for p in reported)
    replay = checks["replay"].figures
    assert Path(replay["cases_dir"]).is_relative_to(Path(package_root))
    assert replay["cases"] == replay["passed"] == 2
    assert checks["risk_caps"].figures["boundary"]["risk_cap_vetoes"] > 0
    # Nothing left in the operator's directory but the bundle (no .hypothesis/, no var/*.db).
    assert sorted(p.relative_to(operator).as_posix() for p in operator.rglob("*")) == [
        "var",
        "var/proof.json",
    ]

    # The installed gate accepts the bundle it built (code, risk config and libraries agree).
    config = operator / "engine.toml"
    config.write_text(f'[engine]\nproof_path = "{out}"\n')
    verdict = subprocess.run(
        [str(bin_dir / "hybrid-engine"), "gate", "--config", str(config), "--arm-live"],
        cwd=operator, env=clean_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert json.loads(verdict.stdout.splitlines()[-1])["allowed"] is True
