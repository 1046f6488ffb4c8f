"""A bundle built by ``nox -s proof`` has the ``lock_hash`` the service's gate checks.

Real environments, built as documented: a copy of the checkout installed with
``bash scripts/install`` (the service, docs/operations.md "Install"), and the
``nox -s proof`` session's own venv in the same copy (run to the end, with
``-- --help`` so that ``hybrid-engine proof`` itself only prints its usage). The
gate (``engine.proof.gate``) compares the bundle's ``lock_hash`` -- taken by
``evidence.lock_hash()`` in the proof's process -- with the libraries installed
beside the running engine, so both interpreters must report the same hash.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from noxfile import RUNTIME_LOCK, locked_libraries
from tests.fakes.engine_process import REPO, engine_env

pytestmark = pytest.mark.slow

NOT_COPIED = (".venv", ".nox", ".git", "var", "__pycache__", ".pytest_cache", ".mypy_cache",
              ".ruff_cache", ".hypothesis", "*.egg-info", "build")
INSTALL_TIMEOUT_S = 600

LIBRARIES = ("from engine.proof.evidence import installed_libraries, lock_hash;"
             " print(lock_hash()); print(*installed_libraries())")


def environment(python: Path | str) -> tuple[str, set[str]]:
    """(lock_hash, installed libraries) as ``engine.proof.evidence`` sees them in ``python``."""
    done = subprocess.run([str(python), "-c", LIBRARIES], capture_output=True, text=True,
                          check=True, cwd="/", env=engine_env())
    digest, libraries = done.stdout.splitlines()
    return digest, set(libraries.split())


def test_nox_proof_venv_has_the_lock_hash_of_a_service_installed_by_scripts_install(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "checkout"
    shutil.copytree(REPO, repo, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
    subprocess.run(["bash", "scripts/install"], cwd=repo, check=True, env=engine_env(),
                   capture_output=True, timeout=INSTALL_TIMEOUT_S)
    service_hash, service_libraries = environment(repo / ".venv" / "bin" / "python")
    # the documented install holds exactly the runtime lock and the engine
    engine = {lib for lib in service_libraries if lib.startswith("hybrid-engine==")}
    assert len(engine) == 1
    assert service_libraries == locked_libraries(str(REPO / RUNTIME_LOCK)) | engine

    nox = subprocess.run([sys.executable, "-m", "nox", "-s", "proof", "--", "--help"], cwd=repo,
                         env=engine_env(), capture_output=True, text=True,
                         timeout=INSTALL_TIMEOUT_S, check=False)
    assert nox.returncode == 0, nox.stderr[-3000:]
    proof_hash, proof_libraries = environment(repo / ".nox" / "proof" / "bin" / "python")
    assert proof_libraries == service_libraries, (
        sorted(proof_libraries ^ service_libraries))
    assert proof_hash == service_hash

    # the development environment (what the session installed before) is not the service's:
    # a bundle built there is refused on lock_hash, so this comparison can fail
    dev_hash, dev_libraries = environment(sys.executable)
    assert dev_hash != service_hash and "pytest" in " ".join(dev_libraries)
