"""Run the real engine CLI in a subprocess and wait on what it logs (no sleeps)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
REPLAYS = REPO / "replays"
REAL_CAPTURE = REPLAYS / "btcusdt_20240808.gz"
REAL_TRADES = 9_757

LogLine = dict[str, Any]


def engine_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without ENGINE_* overrides, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env.pop("LIVE_ARMED", None)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env.update(extra or {})
    return env


def run_engine(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        env=engine_env(env),
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def parse_logs(stdout: str) -> list[LogLine]:
    lines = []
    for raw in stdout.splitlines():
        text = raw.strip()
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


class EngineProcess:
    """A running engine whose JSON log lines are collected by a reader thread."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=engine_env(env),
            cwd=REPO,
        )
        self.lines: list[LogLine] = []
        self._queue: queue.Queue[LogLine | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            text = raw.strip()
            if text.startswith("{"):
                self._queue.put(json.loads(text))
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[LogLine], bool], timeout: float = 60) -> LogLine:
        """Block until a log line satisfies ``predicate`` (fails on EOF or timeout)."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no matching log line within {timeout}s") from None
            if line is None:
                raise AssertionError(f"engine exited ({self.proc.wait()}) before a matching line")
            self.lines.append(line)
            if predicate(line):
                return line

    def send_signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        while True:
            line = self._queue.get_nowait() if not self._queue.empty() else None
            if line is None:
                break
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def events(self, name: str) -> list[LogLine]:
        return [line for line in self.lines if line.get("event") == name]


def paper_replay(db: Path) -> Path:
    """A PAPER replay of the bundled capture into ``db``, in a fresh process."""
    done = run_engine(
        ["replay", str(REAL_CAPTURE), "--config", str(REPLAYS / "paper.toml"), "--db", str(db)]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return db
