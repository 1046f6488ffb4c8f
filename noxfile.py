"""Developer sessions: tests, lint, the deterministic replay proof, benchmarks, the proof bundle."""

from __future__ import annotations

import re
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

RUNTIME_LOCK = "requirements/lock.txt"
DEV_LOCK = "requirements/dev-lock.txt"
LOCK_INPUTS = ("pyproject.toml", "requirements/build.in")
PIP_COMPILE = (
    "pip-compile", "-q", "--generate-hashes", "--allow-unsafe", "--strip-extras",
    "--no-emit-index-url", "--no-emit-find-links",
)  # fmt: skip


def install_locked(session: nox.Session, *, dev: bool) -> None:
    """Exactly the lock's versions (hashes checked), then the project without its deps."""
    session.install("--require-hashes", "-r", DEV_LOCK if dev else RUNTIME_LOCK)
    session.install("--no-deps", "--no-build-isolation", "-e", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (what CI runs)."""
    install_locked(session, dev=True)
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (incl. the ASYNC rules) and mypy --strict."""
    install_locked(session, dev=True)
    session.run("ruff", "check", "engine", "tests", "noxfile.py", "bench", "examples")
    session.run("mypy", "engine")


@nox.session
def replay(session: nox.Session) -> None:
    """Replay every case in replays/cases.toml in two fresh processes; digests must match."""
    install_locked(session, dev=False)
    session.run("python", "-m", "engine.proof.replay", "replays")
    # The example user strategy (docs/strategies.md): its properties, then its committed case.
    session.run("hybrid-engine", "strategy", "check", "examples/strategies/momentum.py:Momentum",
                "--config", "examples/strategies/momentum.toml")
    session.run("python", "-m", "engine.proof.replay", "examples/strategies")


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput of the replay path against a plain decode+executemany floor."""
    install_locked(session, dev=False)
    session.run("python", "bench/bench_replay.py", *session.posargs)


@nox.session
def contention(session: nox.Session) -> None:
    """I7/S15: engine + dashboard healthy while busy loops saturate every core."""
    install_locked(session, dev=False)
    session.run("python", "bench/contention.py", *session.posargs)


@nox.session
def live_bench(session: nox.Session) -> None:
    """Live path: the fake exchange pushes trades over loopback at rising rates."""
    install_locked(session, dev=True)
    session.run("python", "bench/bench_live.py", *session.posargs)


@nox.session(venv_backend="venv", reuse_venv=False)
def proof(session: nox.Session) -> None:
    """Build the proof bundle that gate G1 requires for LIVE, in the service's environment.

    The bundle's ``lock_hash`` covers every installed distribution, and the gate
    compares it with the service's. So this venv is made as ``bash scripts/install``
    makes the service's (docs/operations.md "Install"): ``python -m venv`` (not
    virtualenv, which seeds ``wheel``), always fresh, exactly the runtime lock and the
    engine -- no test or lint tools -- and checked to hold nothing else before the
    proof runs. Its bundle is accepted by a service installed from the same lock and
    revision (``tests/e2e/test_proof_env.py``).
    """
    install_locked(session, dev=False)
    listed = session.run(
        "python", "-c",
        "from engine.proof.evidence import installed_libraries as i; print(*i(), sep='\\n')",
        silent=True,
    )
    installed = set(str(listed).split())
    wanted = locked_libraries(RUNTIME_LOCK) | {
        line for line in installed if line.startswith("hybrid-engine==")
    }
    if installed != wanted:
        session.error(
            f"the proof venv is not exactly {RUNTIME_LOCK}: extra {sorted(installed - wanted)},"
            f" missing {sorted(wanted - installed)} (run nox without --reuse-venv=always)"
        )
    session.run("hybrid-engine", "proof", *session.posargs)


def locked_libraries(lock: str) -> set[str]:
    """The ``name==version`` pins of a pip-compile lock file, names normalised as pip
    (and ``engine.proof.evidence.installed_libraries``) does."""
    pins = set()
    for line in Path(lock).read_text().splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            pins.add(f"{re.sub(r'[-_.]+', '-', match[1]).lower()}=={match[2]}")
    return pins


@nox.session
def lock(session: nox.Session) -> None:
    """Refresh requirements/lock.txt and dev-lock.txt (pip-compile, with hashes).

    A refresh is a deliberate commit of its own, made with the test suite green on
    the result (docs/operations.md "Dependencies"). Without arguments it keeps every
    pin that still satisfies pyproject.toml (adding what a new dependency needs);
    ``nox -s lock -- --upgrade`` moves everything to the newest release,
    ``nox -s lock -- --upgrade-package NAME`` one package.
    """
    install_locked(session, dev=True)
    session.run(*PIP_COMPILE, *session.posargs, *LOCK_INPUTS, "-o", RUNTIME_LOCK)
    session.run(
        *PIP_COMPILE, *session.posargs, "--extra", "dev", "-c", RUNTIME_LOCK, *LOCK_INPUTS,
        "-o", DEV_LOCK,
    )  # fmt: skip


@nox.session
def fuzz(session: nox.Session) -> None:
    """The admission properties (and downstream of admission) far longer than the suite.

    ``nox -s fuzz -- 30`` fuzzes for 30 minutes (default 5); ``ADMISSION_FUZZ_EXAMPLES``
    sets the examples per property and round (default 20,000). Prints the figures.
    """
    install_locked(session, dev=True)
    minutes = session.posargs[0] if session.posargs else "5"
    session.run(
        "pytest", "-q", "-s", "-k", "fuzz_for_minutes",
        "tests/adapters/market/test_admission_properties.py",
        "tests/adapters/market/test_admission_downstream.py",
        env={"HYPOTHESIS_PROFILE": "fuzz", "ADMISSION_FUZZ_MINUTES": minutes},
    )  # fmt: skip
