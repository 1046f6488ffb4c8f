"""Shutdown control: the first signal starts the drain, a second one or the deadline forces it.

The drain itself needs no code here: cancelling ingest's scope closes its channel
and the close propagates down the pipeline (see ``engine.runtime``). What lives
here is *when* that starts and what happens when it does not finish in time.
"""

from __future__ import annotations

import signal

import trio

from engine import logs
from engine.run_state import RunState


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


async def signal_task(
    state: RunState, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """First SIGINT/SIGTERM: stop ingest and start the drain. Second: stop now.

    Reports started once the receiver is installed: a signal before that would be
    Trio's KeyboardInterrupt (SIGINT) or the default action (SIGTERM), not a drain.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            if not state.draining:
                begin_drain(state, f"signal {_signal_name(signum)}")
                logs.info(
                    "shutdown_requested",
                    signal=_signal_name(signum),
                    drain_timeout_s=state.config.engine.drain_timeout_s,
                )
            else:
                force_stop(state, f"second signal {_signal_name(signum)}")


def begin_drain(state: RunState, why: str) -> None:
    """Stop ingest; everything it accepted flows on to disk (the drain)."""
    state.draining = True
    state.ingest_scope.cancel()
    state.notifier.stopping()
    state.drain_started.set()
    logs.info("drain_started", reason=why)


def force_stop(state: RunState, why: str) -> None:
    """Cancel the whole pipeline now; a write stuck on a lock gives up too (exit 13)."""
    logs.warning("shutdown_forced", reason=why)
    state.abandon_writes()
    state.pipeline_scope.cancel()


async def drain_deadline_task(state: RunState) -> None:
    """A drain that takes longer than ``drain_timeout_s`` is forced to stop."""
    await state.drain_started.wait()
    await trio.sleep(state.config.engine.drain_timeout_s)
    force_stop(
        state, f"drain took longer than drain_timeout_s={state.config.engine.drain_timeout_s}"
    )
