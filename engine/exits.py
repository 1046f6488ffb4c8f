"""Stable exit codes and the one function that picks a code for a failure.

systemd acts on these (``Restart=on-failure``, ``RestartPreventExitStatus=12``),
so they never change meaning. See docs/architecture.md, "Exit codes".
"""

from __future__ import annotations

import enum
from typing import Final


class ExitCode(enum.IntEnum):
    COMPLETE = 0
    CRASH = 1
    NETWORK = 10
    PARSE = 11
    CONFIG = 12
    OVERLOAD = 13


class EngineError(Exception):
    """Base of the failures that carry their own exit code."""

    exit_code: ExitCode = ExitCode.CRASH


class ConfigError(EngineError):
    """Raised at start-up when configuration is invalid or unusable (incl. the LIVE gate)."""

    exit_code = ExitCode.CONFIG


class NetworkBudgetExhausted(EngineError):
    """Raised by ingest when the reconnect budget is spent."""

    exit_code = ExitCode.NETWORK


class ParseRateExceeded(EngineError):
    """Raised by ingest when malformed input exceeds its tolerated rate."""

    exit_code = ExitCode.PARSE


class StrategyFailed(EngineError):
    """The strategy raised (a bug in it): the engine drains what it accepted, then exits 1."""

    exit_code = ExitCode.CRASH


class Overload(EngineError):
    """Raised when a record that must not be dropped cannot be queued, or a drain overruns."""

    exit_code = ExitCode.OVERLOAD


class StoppedDuringStartup(Exception):
    """Raised by the start-up (``engine.runtime.startup``) when SIGINT/SIGTERM arrived before
    the pipeline ran: the command exits 0 (COMPLETE) with nothing started."""

    def __init__(self, signal_name: str, step: str) -> None:
        super().__init__(f"{signal_name} during start-up ({step})")
        self.signal_name = signal_name
        self.step = step


# Highest first. CONFIG wins because no restart can fix it; CRASH (an unknown
# exception, i.e. a bug) comes next so it is never masked by the symptoms it
# causes elsewhere; then the restartable, explained failures from most to least
# specific to this process.
PRECEDENCE: Final[tuple[ExitCode, ...]] = (
    ExitCode.CONFIG,
    ExitCode.CRASH,
    ExitCode.OVERLOAD,
    ExitCode.PARSE,
    ExitCode.NETWORK,
)


def _leaf_codes(exc: BaseException) -> set[ExitCode]:
    if isinstance(exc, BaseExceptionGroup):
        codes: set[ExitCode] = set()
        for inner in exc.exceptions:
            codes |= _leaf_codes(inner)
        return codes
    if isinstance(exc, EngineError):
        return {exc.exit_code}
    return {ExitCode.CRASH}


def exit_code_for(exc: BaseException | None) -> ExitCode:
    """Map what escaped the nursery (``None``, one exception or nested groups) to one code.

    Pure and total: every leaf exception is classified (an ``EngineError`` by
    its ``exit_code``, anything else as CRASH) and the highest code in
    ``PRECEDENCE`` wins, so the same set of failures always gives the same code
    whatever order or nesting the group has.
    """
    if exc is None:
        return ExitCode.COMPLETE
    codes = _leaf_codes(exc)
    for code in PRECEDENCE:
        if code in codes:
            return code
    return ExitCode.CRASH
