"""The deterministic-replay proof: each case in ``cases.toml`` replayed in fresh processes.

The cases ship inside the package, in ``engine/cases/`` (``packaged_cases_dir``):
the real capture(s) with their provenance notes, ``cases.toml`` and the configs
it names. ``replays/`` in a checkout is a symlink to that folder -- one copy of
the data, reachable by humans as ``replays/btcusdt_20240808.gz``.

A case names a capture, an optional config and the committed digest. The check
replays the capture into a fresh database in ``runs`` separate processes, digests
each, and passes only when every digest equals the committed one (S8). Used by
``nox -s replay`` and by the proof bundle.

*Error handling:* a replay or digest process that fails, or outlives
``REPLAY_TIMEOUT_S``, makes its case fail with the reason in ``error`` (one line);
each process runs in the case's temporary directory, so neither the caller's
working directory nor a stray ``engine/`` in it can change what is replayed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Final

import msgspec

from engine.store.connection import open_readonly
from engine.store.rows import table_counts

CASES_FILE: Final = "cases.toml"
DEFAULT_RUNS: Final = 2
REPLAY_TIMEOUT_S: Final = 600.0
"""Upper bound on one replay (or digest) process; beyond it it is killed and its case fails."""


class ReplayCase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    capture: str
    digest: str
    config: str = ""
    ticks: int | None = None


class CaseFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    case: list[ReplayCase]


class ReplayResult(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    expected: str
    digests: list[str]
    ticks: list[int]
    seconds: float
    ok: bool
    error: str = ""


def packaged_cases_dir() -> Path:
    """The replay cases shipped with the installed package (``engine/cases/``)."""
    return Path(__file__).resolve().parents[1] / "cases"


def load_cases(replays_dir: Path) -> list[ReplayCase]:
    return msgspec.toml.decode((replays_dir / CASES_FILE).read_bytes(), type=CaseFile).case


def default_env() -> dict[str, str]:
    """The caller's environment without ``ENGINE_*`` overrides (a case is its own config)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}


def _engine(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> str:
    """Run ``python -m engine ARGS`` in a fresh interpreter; its stdout, or raise with why."""
    cmd = [sys.executable, "-m", "engine", *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=dict(env), cwd=cwd,
            timeout=REPLAY_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{args[0]} did not finish within {REPLAY_TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        tail = proc.stdout.strip().splitlines()[-3:] + proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"{args[0]} exited {proc.returncode}: {' | '.join(tail)}")
    return proc.stdout


def replay_once(
    capture: Path, config: Path | None, db: Path, env: Mapping[str, str] | None = None
) -> tuple[str, int]:
    """Replay in a fresh interpreter; return (digest, persisted tick count)."""
    args = ["replay", str(capture.resolve()), "--db", str(db.resolve())]
    if config is not None:
        args += ["--config", str(config.resolve())]
    env = default_env() if env is None else env
    _engine(args, env, db.resolve().parent)
    digest = _engine(["digest", "--db", str(db.resolve())], env, db.resolve().parent).strip()
    with closing(open_readonly(db)) as conn:
        ticks = table_counts(conn)["ticks"]
    return digest, ticks


def check_case(
    case: ReplayCase,
    replays_dir: Path,
    runs: int = DEFAULT_RUNS,
    env: Mapping[str, str] | None = None,
) -> ReplayResult:
    started = time.monotonic()
    digests: list[str] = []
    ticks: list[int] = []
    error = ""
    config = replays_dir / case.config if case.config else None
    try:
        with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
            for i in range(runs):
                digest, count = replay_once(
                    replays_dir / case.capture, config, Path(tmp) / f"{i}.db", env
                )
                digests.append(digest)
                ticks.append(count)
    except (RuntimeError, OSError) as exc:
        error = str(exc)
    ok = (
        not error
        and len(digests) == runs
        and all(d == case.digest for d in digests)
        and (case.ticks is None or all(t == case.ticks for t in ticks))
    )
    return ReplayResult(
        name=case.name,
        expected=case.digest,
        digests=digests,
        ticks=ticks,
        seconds=round(time.monotonic() - started, 3),
        ok=ok,
        error=error,
    )


def check_replays(
    replays_dir: Path, runs: int = DEFAULT_RUNS, env: Mapping[str, str] | None = None
) -> list[ReplayResult]:
    return [check_case(case, replays_dir, runs, env) for case in load_cases(replays_dir)]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m engine.proof.replay [DIR]``: the cases in DIR (default: the packaged ones)."""
    args = list(sys.argv[1:] if argv is None else argv)
    replays_dir = Path(args[0]) if args else packaged_cases_dir()
    results = check_replays(replays_dir)
    for result in results:
        print(msgspec.json.encode(result).decode())
    failed = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    raise SystemExit(main())
