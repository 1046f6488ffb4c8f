"""Developer sessions: tests, lint, the deterministic replay proof, benchmarks, the proof bundle."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (what CI runs)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (incl. the ASYNC rules) and mypy --strict."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "engine", "tests", "noxfile.py", "bench")
    session.run("mypy", "engine")


@nox.session
def replay(session: nox.Session) -> None:
    """Replay every case in replays/cases.toml in two fresh processes; digests must match."""
    session.install("-e", ".")
    session.run("python", "-m", "engine.replay_check", "replays")


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput of the replay path against a plain decode+executemany floor."""
    session.install("-e", ".")
    session.run("python", "bench/bench_replay.py", *session.posargs)


@nox.session
def contention(session: nox.Session) -> None:
    """I7/S15: engine + dashboard healthy while busy loops saturate every core."""
    session.install("-e", ".")
    session.run("python", "bench/contention.py", *session.posargs)


@nox.session
def live_bench(session: nox.Session) -> None:
    """Live path: the fake exchange pushes trades over loopback at rising rates."""
    session.install("-e", ".[dev]")
    session.run("python", "bench/bench_live.py", *session.posargs)


@nox.session
def proof(session: nox.Session) -> None:
    """Build the proof bundle that gate G1 requires for LIVE."""
    session.install("-e", ".[dev]")
    session.run("hybrid-engine", "proof", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The admission properties (and downstream of admission) far longer than the suite.

    ``nox -s fuzz -- 30`` fuzzes for 30 minutes (default 5); ``ADMISSION_FUZZ_EXAMPLES``
    sets the examples per property and round (default 20,000). Prints the figures.
    """
    session.install("-e", ".[dev]")
    minutes = session.posargs[0] if session.posargs else "5"
    session.run(
        "pytest", "-q", "-s", "-k", "fuzz_for_minutes",
        "tests/test_admission_properties.py",
        env={"HYPOTHESIS_PROFILE": "fuzz", "ADMISSION_FUZZ_MINUTES": minutes},
    )  # fmt: skip
