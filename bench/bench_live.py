"""Live-path benchmark: the fake exchange pushes real-shaped trades over loopback at
increasing rates into the engine's real pipeline (WebSocketStream -> strategy ->
execution -> persistence, the runtime's own channels and tasks), and into the *live
floor* (``bench/live_floor.py``: a bare trio-websocket client decoding each frame with
a msgspec Struct) -- same server, same frames, same machine, same invocation.

For each rate the fake exchange runs in its *own process* (so its sending does not
steal the engine's thread), serving ``rate * seconds`` Binance trade frames --
the real capture's frames, trade ids renumbered -- paced to that average rate
(bursty at the server's ~1 ms timer granularity, like a real feed). The engine
reads them until every frame has arrived, then drains as on SIGINT. The floor first
reads ``--floor-frames`` unpaced (its top speed), then each rate as the engine does.

Per step it reports the rate achieved, ``bp_drops_tick`` (the live drop policy:
a full tick queue drops the newest tick), the latency from frame receipt
(``ts_recv``, stamped by the socket reader) to the strategy's decision for that
tick (measured right after ``on_batch`` returns; for the floor: right after the
decode), p50/p99/max, and the step's peak RSS (VmHWM reset before each step). The
``table`` gives the engine's figures as ratios to the floor's at the same rate; the
headline is the highest rate sustained without a drop, as a ratio to the floor's top
speed. Then, at ``--profile-rate`` (the knee), one step with stage timers
(``bench/live_profile.py``), the same with a 0.5 ms GIL switch interval (what the
writer thread's GIL hold costs), and one under cProfile.

Usage: python bench/bench_live.py [--rates 1000,5000,...] [--seconds S]
       [--floor-frames N] [--profile-rate R]
Prints one JSON object on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio

from engine import logs
from engine.adapters.market.ws.endpoints import feed_url
from engine.adapters.market.ws.stream import WebSocketStream
from engine.config.load import load_config
from engine.config.schema import Config, IngestSection, Source
from engine.core.choice import build_strategy
from engine.core.events import Signal, Tick
from engine.core.execution import Execution
from engine.counters import Counters
from engine.ports import Strategy
from engine.runtime.pipeline import TICK_QUEUE_BATCHES, Components, run_pipeline
from engine.runtime.sdnotify import Notifier
from engine.runtime.state import RunState
from engine.store.sqlite_store import SqliteStore

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import live_profile  # noqa: E402 -- bench/ modules, beside this script
from live_floor import floor_step, latency_figures  # noqa: E402

DEFAULT_RATES = (1_000, 5_000, 10_000, 20_000, 22_500, 25_000, 30_000)
"""The issue's four rates, then past 0.5x the floor (~22k/s here) to find the highest sustained."""
DEFAULT_SECONDS = 3.0
FLOOR_FRAMES = 150_000
"""Frames the floor reads unpaced for its top speed (~3 s at ~50k frames/s)."""
PROFILE_RATE = 10_000
"""Where the stage timers and cProfile run by default: the knee (issue 14)."""
MAX_LATENCY_SAMPLES = 1_000_000
KEPT_PACE = 0.95
"""A step is sustained when nothing was dropped and the engine read at least this
fraction of the target rate (below it, frames wait in the kernel's socket buffers:
TCP backpressure on the sender, i.e. the engine is not keeping up)."""
POLL_S = 0.001
"""How often the step checks whether every frame arrived. A poll, not ``Progress``: a
waiter on the feed's ``Progress`` is woken by every frame (a task step per frame that
the engine itself never pays -- nobody waits on it in a run; ~10 % of the Trio thread at
20k/s); the poll costs 1,000 wake-ups a second and shifts the step's ends by <= 1 ms."""
SERVE = (sys.executable, str(Path(__file__).resolve()), "--serve")


class TimedStrategy:
    """The real strategy, with the receipt-to-decision latency of every tick recorded
    (and, when ``timers`` is given, each batch's time, size and oldest tick's age)."""

    def __init__(self, inner: Strategy, timers: dict[str, list[int]] | None = None) -> None:
        self.inner = inner
        self.latencies_ns: list[int] = []
        self.timers = timers

    def on_batch(self, ticks: Sequence[Tick]) -> list[Tick | Signal]:
        timers = self.timers
        if timers is not None:
            arrived = time.time_ns()
            started = time.perf_counter_ns()
        decisions = self.inner.on_batch(ticks)
        now = time.time_ns()
        if timers is not None:
            timers.setdefault("strategy_batch", []).append(time.perf_counter_ns() - started)
            timers.setdefault("tick_batch_size", []).append(len(ticks))
            if ticks:
                timers.setdefault("tick_batch_age", []).append(arrived - ticks[0].ts_recv)
        if len(self.latencies_ns) < MAX_LATENCY_SAMPLES:
            self.latencies_ns.extend(now - t.ts_recv for t in ticks)
        return decisions


async def serve(rate: float, frames: int) -> None:
    """The fake exchange (subprocess side): print the port, serve until killed.
    ``rate <= 0``: unpaced (as fast as the socket takes them; the floor's top speed)."""
    from tests.fakes.fake_exchange import Session, extended_binance_tape, open_fake_exchange

    tape = extended_binance_tape(frames)
    session = Session(rate_per_s=rate if rate > 0 else None)
    async with open_fake_exchange("binance", [session], tape=tape) as fake:
        print(f"PORT {fake.port}", flush=True)
        await trio.sleep_forever()


def start_server(rate: float, frames: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [*SERVE, "--rate", str(rate), "--frames", str(frames)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"fake exchange did not start: {line!r}")
    return proc, int(line.split()[1])


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; return that RSS (kB)."""
    with contextlib.suppress(OSError):  # not Linux: the peak is then the process's so far
        Path("/proc/self/clear_refs").write_text("5")
    return _rss_kb("VmRSS")


def peak_rss(before_kb: int) -> dict[str, float]:
    """The step's peak RSS (MiB) and how far it rose above the RSS it started with."""
    hwm = _rss_kb("VmHWM")
    return {
        "peak_rss_mib": round(hwm / 1024, 1),
        "rss_rise_mib": round((hwm - before_kb) / 1024, 1),
    }


async def run_step(
    config: Config,
    frames: int,
    db: Path,
    timers: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    counters = Counters()
    source = WebSocketStream(config.ingest, counters)
    strategy = TimedStrategy(build_strategy(config.strategy), timers)
    store = SqliteStore.open(str(db), busy_timeout_ms=config.engine.busy_timeout_ms)
    state = RunState(config=config, counters=counters, notifier=Notifier(None), run_id="bench")
    execution = Execution(config)
    components = Components(
        source=source,
        strategy=strategy,  # type: ignore[arg-type]
        execution=execution,
        store=store,
    )
    first_frame: list[float] = []
    drain: list[float] = []  # when the drain started, when the pipeline had ended

    async def poll_until(predicate: Callable[[], bool]) -> None:
        while not predicate():  # noqa: ASYNC110 -- a poll on purpose (POLL_S)
            await trio.sleep(POLL_S)

    async def stop_when_all_received() -> None:
        await poll_until(lambda: counters.ingest_received >= 1)
        first_frame.append(time.perf_counter())
        await poll_until(lambda: counters.ingest_received >= frames)
        first_frame.append(time.perf_counter())
        forwarder = source.forwarder
        assert forwarder is not None
        # let the last ticks into the queue before the drain starts
        await poll_until(lambda: forwarder.held == 0)
        drain.append(time.perf_counter())
        state.ingest_scope.cancel()  # the drain a SIGINT starts

    cpu_main, cpu_all = time.thread_time(), time.process_time()
    with contextlib.ExitStack() as stack:
        if timers is not None:
            stack.enter_context(live_profile.instrument(timers, store, execution))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_when_all_received)
                if timers is not None:
                    nursery.start_soon(live_profile.loop_lag_probe, timers)
                with trio.fail_after(60 + frames / 1000):
                    await run_pipeline(components, state)
                drain.append(time.perf_counter())
                nursery.cancel_scope.cancel()
        finally:
            store.close()
    cpu_main, cpu_all = time.thread_time() - cpu_main, time.process_time() - cpu_all
    received_s = first_frame[1] - first_frame[0] if len(first_frame) == 2 else float("nan")
    return {
        "frames": frames,
        "achieved_rate": round((frames - 1) / received_s) if received_s > 0 else None,
        "processed": counters.ingest_processed,
        "bp_drops_tick": counters.bp_drops_tick,
        "persisted": counters.persist_count,
        "persist_batches": counters.persist_batches,
        # the drain a SIGINT starts, to the pipeline's end (final flush and checkpoint)
        "drain_s": round(drain[1] - drain[0], 3) if len(drain) == 2 else None,
        **latency_figures(strategy.latencies_ns),
        # CPU per frame: the Trio thread's, and every other thread's (the writer's)
        "trio_thread_cpu_us_per_frame": round(cpu_main * 1e6 / frames, 1),
        "other_threads_cpu_us_per_frame": round((cpu_all - cpu_main) * 1e6 / frames, 1),
    }


class Bench:
    """One invocation's steps: the fake exchange per step, the engine or the floor reading."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.base = load_config(None, environ={})

    def config(self, port: int) -> Config:
        ingest = msgspec.structs.replace(
            self.base.ingest,
            source=Source.WEBSOCKET,
            url=f"ws://127.0.0.1:{port}",
            symbols=("BTCUSDT",),
        )
        assert isinstance(ingest, IngestSection)
        engine = msgspec.structs.replace(self.base.engine, heartbeat_interval_s=3600.0)
        return msgspec.structs.replace(self.base, ingest=ingest, engine=engine)

    def step(
        self,
        kind: str,
        rate: float,
        frames: int,
        profiler: cProfile.Profile | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """``kind``: "floor" or "engine"; ``rate <= 0``: the server sends unpaced;
        ``profiler``: enabled around the step's own run (not the server's start)."""
        server, port = start_server(rate, frames)
        before = reset_peak_rss()
        try:
            config = self.config(port)
            if kind == "floor":
                url = feed_url(config.ingest)
                step = trio.run(floor_step, url, frames, config.ingest.max_message_size)
            else:
                db = self.tmp / f"live_{int(rate)}_{len(list(self.tmp.iterdir()))}.db"
                if profiler is not None:
                    profiler.enable()
                try:
                    step = trio.run(partial(run_step, config, frames, db, **options))
                finally:
                    if profiler is not None:
                        profiler.disable()
        finally:
            server.kill()
            server.wait()
        achieved = step["achieved_rate"] or 0
        sustained = step.get("bp_drops_tick", 0) == 0 and (
            rate <= 0 or achieved >= KEPT_PACE * rate
        )
        step = {
            "kind": kind,
            "target_rate": rate or "unpaced",
            "sustained": sustained,
            **step,
            **peak_rss(before),
        }
        print(json.dumps(step), file=sys.stderr)
        return step


def ratio(engine: float | None, floor: float | None) -> float | None:
    return round(engine / floor, 2) if engine is not None and floor else None


def profile_step(
    bench: Bench, rate: float, seconds: float, switch_ms: float | None
) -> dict[str, Any]:
    """One instrumented engine step at ``rate`` (stage timers, ``live_profile``), and one
    under cProfile (the Trio thread's functions by own time)."""
    frames = max(100, int(rate * seconds))
    timers: dict[str, list[int]] = {}
    old_switch = sys.getswitchinterval()
    if switch_ms is not None:
        sys.setswitchinterval(switch_ms / 1000)
    try:
        step = bench.step("engine", rate, frames, timers=timers)
    finally:
        sys.setswitchinterval(old_switch)
    out: dict[str, Any] = {
        "rate": rate,
        "switch_interval_ms": (switch_ms if switch_ms is not None else old_switch * 1000),
        "step": step,
        "stages": live_profile.report(timers),
    }
    return out


CPROFILE_STAGES = {
    ("~", "<method 'poll' of 'select.epoll' objects>"): "idle (epoll wait)",
    ("_impl.py", "_reader_task"): "trio-websocket reader task (wsproto, socket recv)",
    ("stream.py", "_read"): "engine reader loop (stamp, intake, offer)",
    ("intake.py", "accept"): "  of which intake.accept (decode + admission)",
    ("forwarder.py", "run"): "forwarder",
    ("pipeline.py", "strategy_task"): "strategy task",
    ("pipeline.py", "execution_task"): "execution task",
    ("task.py", "run_persistence"): "persistence task (Trio side)",
    ("_run.py", "unrolled_run"): "trio run loop (all of the above + scheduling)",
}
"""Functions whose cumulative time cProfile reports per stage (a coroutine's is the sum
over its resumptions; the writer thread is not profiled -- see the stage timers)."""


def cprofile_step(bench: Bench, rate: float, seconds: float, top: int = 25) -> dict[str, Any]:
    frames = max(100, int(rate * seconds))
    profiler = cProfile.Profile()
    step = bench.step("engine", rate, frames, profiler=profiler)
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (path, line, name), (_cc, calls, tt, ct, _callers) in sorted(
        stats.stats.items(),
        key=lambda kv: -kv[1][2],  # type: ignore[attr-defined]
    )[:top]:
        where = f"{Path(path).name}:{line}:{name}" if line else name
        rows.append(
            {
                "function": where,
                "calls": calls,
                "own_ms": round(tt * 1e3, 1),
                "own_pct": round(100 * tt / total, 1),
                "cum_ms": round(ct * 1e3, 1),
            }
        )
    by_stage = {}
    entries = stats.stats.items()  # type: ignore[attr-defined]
    for (path, _line, name), (_cc, calls, _tt, ct, _callers) in entries:
        key = (Path(path).name, name)
        if key in CPROFILE_STAGES:
            by_stage[CPROFILE_STAGES[key]] = {
                "calls": calls,
                "cum_ms": round(ct * 1e3, 1),
                "cum_pct": round(100 * ct / total, 1),
            }
    return {
        "rate": rate,
        "step": step,
        "main_thread_total_ms": round(total * 1e3, 1),
        "stages_cum": by_stage,
        "top": rows,
    }


def bench(
    rates: Sequence[float],
    seconds: float,
    *,
    floor_frames: int = FLOOR_FRAMES,
    profile_rate: float | None = None,
    stop_after_failures: int = 2,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_live_") as tmp:
        b = Bench(Path(tmp))
        floor_top = b.step("floor", 0, floor_frames)
        floor_steps: dict[float, dict[str, Any]] = {}
        steps = []
        failures = 0
        for rate in rates:
            frames = max(100, int(rate * seconds))
            floor_steps[rate] = b.step("floor", rate, frames)
            if failures < stop_after_failures:
                step = b.step("engine", rate, frames)
                steps.append(step)
                failures += not step["sustained"]
        profiles = []
        cprofile = None
        if profile_rate:
            profiles.append(profile_step(b, profile_rate, seconds, None))
            profiles.append(profile_step(b, profile_rate, seconds, 0.5))
            cprofile = cprofile_step(b, profile_rate, seconds)
    clean = [s for s in steps if s["sustained"]]
    best = max(clean, key=lambda s: s["achieved_rate"] or 0, default=None)
    floor_rate = floor_top["achieved_rate"]
    table = []
    for s in steps:
        f = floor_steps[s["target_rate"]]
        row: dict[str, Any] = {
            "rate": s["target_rate"],
            "sustained": s["sustained"],
            "bp_drops_tick": s["bp_drops_tick"],
        }
        for key in ("latency_ms_p50", "latency_ms_p99", "latency_ms_max", "peak_rss_mib"):
            row[f"engine_{key}"] = s[key]
            row[f"floor_{key}"] = f[key]
            row[f"ratio_{key}"] = ratio(s[key], f[key])
        table.append(row)
    return {
        "benchmark": "live_ingest",
        "seconds_per_step": seconds,
        "tick_queue_batches": TICK_QUEUE_BATCHES,
        "cpu_count": os.cpu_count(),
        "sustained_means": f"no bp_drops_tick and read >= {KEPT_PACE:.0%} of the target rate",
        "floor_rate": floor_rate,
        "max_rate_without_drops": best["achieved_rate"] if best else None,
        "max_rate_ratio_to_floor": ratio(best["achieved_rate"] if best else None, floor_rate),
        "target_rate_at_max": best["target_rate"] if best else None,
        "latency_ms_p50_at_max": best["latency_ms_p50"] if best else None,
        "latency_ms_p99_at_max": best["latency_ms_p99"] if best else None,
        "table": table,
        "floor_top": floor_top,
        "floor_steps": list(floor_steps.values()),
        "steps": steps,
        "profiles": profiles,
        "cprofile": cprofile,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=",".join(str(r) for r in DEFAULT_RATES))
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--floor-frames", type=int, default=FLOOR_FRAMES)
    parser.add_argument(
        "--profile-rate", type=float, default=PROFILE_RATE, help="0: no profile steps"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        trio.run(serve, args.rate, args.frames)
        return
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    with logs.capture(keep=False):  # the engine's logs are not the output
        figures = bench(
            rates,
            args.seconds,
            floor_frames=args.floor_frames,
            profile_rate=args.profile_rate,
        )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
