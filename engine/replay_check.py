"""The deterministic-replay proof: each case in ``replays/cases.toml`` replayed in fresh processes.

A case names a capture, an optional config and the committed digest. The check
replays the capture into a fresh database in ``runs`` separate processes, digests
each, and passes only when every digest equals the committed one (S8). Used by
``nox -s replay`` and by the proof bundle.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Final

import msgspec

from engine.store.connection import open_readonly
from engine.store.digest import table_counts

CASES_FILE: Final = "cases.toml"
DEFAULT_RUNS: Final = 2


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


def load_cases(replays_dir: Path) -> list[ReplayCase]:
    return msgspec.toml.decode((replays_dir / CASES_FILE).read_bytes(), type=CaseFile).case


def replay_once(capture: Path, config: Path | None, db: Path) -> tuple[str, int]:
    """Replay in a fresh interpreter; return (digest, persisted tick count)."""
    cmd = [sys.executable, "-m", "engine", "replay", str(capture), "--db", str(db)]
    if config is not None:
        cmd += ["--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tail = proc.stdout.strip().splitlines()[-3:] + proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"replay exited {proc.returncode}: {' | '.join(tail)}")
    out = subprocess.run(
        [sys.executable, "-m", "engine", "digest", "--db", str(db)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    with closing(open_readonly(db)) as conn:
        ticks = table_counts(conn)["ticks"]
    return out.stdout.strip(), ticks


def check_case(case: ReplayCase, replays_dir: Path, runs: int = DEFAULT_RUNS) -> ReplayResult:
    started = time.monotonic()
    digests: list[str] = []
    ticks: list[int] = []
    error = ""
    config = replays_dir / case.config if case.config else None
    try:
        with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
            for i in range(runs):
                digest, count = replay_once(
                    replays_dir / case.capture, config, Path(tmp) / f"{i}.db"
                )
                digests.append(digest)
                ticks.append(count)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
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


def check_replays(replays_dir: Path, runs: int = DEFAULT_RUNS) -> list[ReplayResult]:
    return [check_case(case, replays_dir, runs) for case in load_cases(replays_dir)]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    replays_dir = Path(args[0]) if args else Path("replays")
    results = check_replays(replays_dir)
    for result in results:
        print(msgspec.json.encode(result).decode())
    failed = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    raise SystemExit(main())
