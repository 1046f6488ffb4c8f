"""Shutdown control: the first signal starts the drain, a second one or the deadline forces it.

The drain itself needs no code here: cancelling ingest's scope closes its channel
and the close propagates down the pipeline (docs/architecture.md, "Shutdown: the
drain"). What lives here is *when* that starts and what happens when it does not
finish in time.

Three things start a drain: a signal, the source ending (replay finished, or
failed), and a fault the engine must stop on without losing what it accepted
(``stop_on_fault``: a queue full for ``enqueue_timeout_s``, disk full). From then
on the stop is bounded twice: ``drain_timeout_s`` later the drain is forced
(``force_stop``: exit 13), and ``HARD_STOP_GRACE_S`` after that the process ends
with ``os._exit(13)`` whatever it is doing (``HardDeadline``) -- a thread stuck in
SQLite on a frozen disk cannot be cancelled, and must not keep the process alive.
"""

from __future__ import annotations

import contextvars
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Final

import trio

from engine import logs
from engine.exits import EngineError, ExitCode
from engine.runtime.startup import STOP_SIGNALS
from engine.runtime.state import RunState

HARD_STOP_GRACE_S: Final = 2.0
"""How long after ``drain_timeout_s`` a forced stop (cancelling the pipeline, the
final heartbeat and run record, the WAL checkpoint, closing the database) may take
before the process is ended with ``os._exit(13)``. Overload policy: whatever was not
written by then is lost; that was true of a forced stop already."""


class HardDeadline:
    """Ends the process with ``os._exit(13)`` if it still runs at a deadline.

    A daemon timer thread, not a Trio task: it fires even when the Trio thread is
    waiting for a worker thread that cannot be cancelled (the writer stuck in a
    ``busy_timeout`` or a frozen disk), or is itself blocked closing the database.

    *Resource handling:* ``disarm`` once the process is done with the database
    (``engine.app.run_with`` does, after closing it).
    """

    def __init__(self, exit_process: Callable[[int], None] = os._exit) -> None:
        self._exit = exit_process
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._at = math.inf

    def arm(self, seconds: float, why: str) -> None:
        """End the process ``seconds`` from now unless disarmed; the earliest deadline wins."""
        with self._lock:
            at = time.monotonic() + seconds
            if at >= self._at:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._at = at
            # the timer thread logs with the context of the arming task (engine.logs)
            context = contextvars.copy_context()
            self._timer = threading.Timer(seconds, context.run, args=(self._fire, seconds, why))
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    def _fire(self, seconds: float, why: str) -> None:
        logs.error(
            "shutdown_deadline_exit",
            exit_code=int(ExitCode.OVERLOAD),
            after_s=seconds,
            reason=why,
            detail="the stop did not finish in time (a write stuck in SQLite?); exiting now",
        )
        print(
            f"hybrid-engine: stop did not finish within {seconds:g} s ({why}); exit 13",
            file=sys.stderr,
            flush=True,
        )
        self._exit(int(ExitCode.OVERLOAD))


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


async def signal_task(
    state: RunState, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """First SIGINT/SIGTERM: stop ingest and start the drain. Second: stop now.

    Reports started once the receiver is installed. A signal before that was noted by
    the start-up (``engine.runtime.startup``, ``state.startup_signal``): one that came
    after the start-up's last check starts the drain here, before anything runs.
    """
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        early = state.startup_signal()
        if early is not None:
            _request_drain(state, early, "during start-up")
        task_status.started()
        async for signum in signals:
            if not state.draining:
                _request_drain(state, _signal_name(signum))
            else:
                force_stop(state, f"second signal {_signal_name(signum)}")


def _request_drain(state: RunState, name: str, when: str = "") -> None:
    begin_drain(state, f"signal {name}{' ' + when if when else ''}")
    logs.info("shutdown_requested", signal=name,
              drain_timeout_s=state.config.engine.drain_timeout_s)


def begin_drain(state: RunState, why: str) -> None:
    """Stop ingest; everything it accepted flows on to disk (the drain)."""
    state.draining = True
    state.ingest_scope.cancel()
    state.notifier.stopping()
    start_drain_clock(state, why)


def start_drain_clock(state: RunState, why: str) -> None:
    """From now on the stop is bounded: ``drain_timeout_s`` to drain, then forced; the
    process ends ``HARD_STOP_GRACE_S`` after that at the latest. Idempotent."""
    if state.drain_started.is_set():
        return
    state.drain_started.set()
    arm_process_deadline(state, why)
    logs.info("drain_started", reason=why)


def arm_process_deadline(state: RunState, why: str) -> None:
    """Arm the process deadline (``drain_timeout_s + HARD_STOP_GRACE_S`` from now)."""
    if state.process_deadline is not None:
        state.process_deadline.arm(state.config.engine.drain_timeout_s + HARD_STOP_GRACE_S, why)


def stop_on_fault(state: RunState, fault: EngineError) -> None:
    """A fault the engine must stop on: stop the intake, drain what was accepted, then
    exit with the fault's code. The first fault is the one raised; idempotent."""
    if state.stop_failure is None:
        state.stop_failure = fault
        logs.error("stopping_on_fault", error=f"{type(fault).__name__}: {fault}",
                   exit_code=int(fault.exit_code))
    if not state.draining:
        begin_drain(state, f"{type(fault).__name__}: {fault}")


def force_stop(state: RunState, why: str) -> None:
    """Cancel the whole pipeline now; a write stuck on a lock gives up too (exit 13)."""
    logs.warning("shutdown_forced", reason=why)
    state.abandon_writes()
    state.pipeline_scope.cancel()
    if state.process_deadline is not None:
        state.process_deadline.arm(HARD_STOP_GRACE_S, why)


async def drain_deadline_task(state: RunState) -> None:
    """A drain that takes longer than ``drain_timeout_s`` is forced to stop."""
    await state.drain_started.wait()
    await trio.sleep(state.config.engine.drain_timeout_s)
    force_stop(
        state, f"drain took longer than drain_timeout_s={state.config.engine.drain_timeout_s}"
    )
