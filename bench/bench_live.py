"""Live-path benchmark: the fake exchange pushes real-shaped trades over loopback at
increasing rates into the engine's real pipeline (WebSocketStream -> strategy ->
execution -> persistence, the runtime's own channels and tasks).

For each rate the fake exchange runs in its *own process* (so its sending does not
steal the engine's thread), serving ``rate * seconds`` Binance trade frames --
the real capture's frames, trade ids renumbered -- paced to that average rate
(bursty at the server's ~1 ms timer granularity, like a real feed). The engine
reads them until every frame has arrived, then drains as on SIGINT.

Per step it reports the rate achieved, ``bp_drops_tick`` (the live drop policy:
a full tick queue drops the newest tick), and the latency from frame receipt
(``ts_recv``, stamped by the socket reader) to the strategy's decision for that
tick (measured right after ``on_batch`` returns), median and p99. The headline is
the highest rate sustained without a drop and the latency at that rate.

Usage: python bench/bench_live.py [--rates 1000,2000,...] [--seconds S]
Prints one JSON object on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import trio

from engine import logs
from engine.adapters.market.ws.stream import WebSocketStream
from engine.config.load import load_config
from engine.config.schema import Config, IngestSection, Source
from engine.core.events import Signal, Tick
from engine.core.execution import Execution
from engine.core.strategy import SmaCross, from_config
from engine.counters import Counters
from engine.runtime.pipeline import TICK_QUEUE_BATCHES, Components, run_pipeline
from engine.runtime.sdnotify import Notifier
from engine.runtime.state import RunState
from engine.store.sqlite_store import SqliteStore

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_RATES = (1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 40_000, 80_000)
DEFAULT_SECONDS = 2.0
MAX_LATENCY_SAMPLES = 1_000_000
KEPT_PACE = 0.95
"""A step is sustained when nothing was dropped and the engine read at least this
fraction of the target rate (below it, frames wait in the kernel's socket buffers:
TCP backpressure on the sender, i.e. the engine is not keeping up)."""
SERVE = (sys.executable, str(Path(__file__).resolve()), "--serve")


class TimedStrategy:
    """The real strategy, with the receipt-to-decision latency of every tick recorded."""

    def __init__(self, inner: SmaCross) -> None:
        self.inner = inner
        self.latencies_ns: list[int] = []

    def on_batch(self, ticks: Sequence[Tick]) -> list[Tick | Signal]:
        decisions = self.inner.on_batch(ticks)
        now = time.time_ns()
        if len(self.latencies_ns) < MAX_LATENCY_SAMPLES:
            self.latencies_ns.extend(now - t.ts_recv for t in ticks)
        return decisions


async def serve(rate: float, frames: int) -> None:
    """The fake exchange (subprocess side): print the port, serve until killed."""
    from tests.fake_exchange import Session, extended_binance_tape, open_fake_exchange

    tape = extended_binance_tape(frames)
    async with open_fake_exchange("binance", [Session(rate_per_s=rate)], tape=tape) as fake:
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


async def run_step(config: Config, frames: int, db: Path) -> dict[str, Any]:
    counters = Counters()
    source = WebSocketStream(config.ingest, counters)
    strategy = TimedStrategy(from_config(config.strategy))
    store = SqliteStore.open(str(db), busy_timeout_ms=config.engine.busy_timeout_ms)
    state = RunState(config=config, counters=counters, notifier=Notifier(None), run_id="bench")
    components = Components(
        source=source,
        strategy=strategy,  # type: ignore[arg-type]
        execution=Execution(config),
        store=store,
    )
    first_frame: list[float] = []

    async def stop_when_all_received() -> None:
        await source.progress.wait_until(lambda: counters.ingest_received >= 1)
        first_frame.append(time.perf_counter())
        await source.progress.wait_until(lambda: counters.ingest_received >= frames)
        first_frame.append(time.perf_counter())
        forwarder = source.forwarder
        assert forwarder is not None
        # let the last ticks into the queue before the drain starts
        await source.progress.wait_until(lambda: forwarder.held == 0)
        state.ingest_scope.cancel()  # the drain a SIGINT starts

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_when_all_received)
            with trio.fail_after(60 + frames / 1000):
                await run_pipeline(components, state)
            nursery.cancel_scope.cancel()
    finally:
        store.close()
    received_s = first_frame[1] - first_frame[0] if len(first_frame) == 2 else float("nan")
    lat = sorted(strategy.latencies_ns)
    return {
        "frames": frames,
        "achieved_rate": round((frames - 1) / received_s) if received_s > 0 else None,
        "processed": counters.ingest_processed,
        "bp_drops_tick": counters.bp_drops_tick,
        "persisted": counters.persist_count,
        "latency_ms_p50": round(statistics.median(lat) / 1e6, 3) if lat else None,
        "latency_ms_p99": round(lat[int(0.99 * (len(lat) - 1))] / 1e6, 3) if lat else None,
        "latency_ms_max": round(lat[-1] / 1e6, 3) if lat else None,
    }


def bench(rates: Sequence[float], seconds: float, stop_after_failures: int = 2) -> dict[str, Any]:
    base = load_config(None, environ={})
    steps = []
    with tempfile.TemporaryDirectory(prefix="bench_live_") as tmp:
        for rate in rates:
            frames = max(100, int(rate * seconds))
            server, port = start_server(rate, frames)
            try:
                ingest = msgspec.structs.replace(
                    base.ingest,
                    source=Source.WEBSOCKET,
                    url=f"ws://127.0.0.1:{port}",
                    symbols=("BTCUSDT",),
                )
                assert isinstance(ingest, IngestSection)
                engine = msgspec.structs.replace(base.engine, heartbeat_interval_s=3600.0)
                config = msgspec.structs.replace(base, ingest=ingest, engine=engine)
                step = trio.run(run_step, config, frames, Path(tmp) / f"live_{int(rate)}.db")
            finally:
                server.kill()
                server.wait()
            achieved = step["achieved_rate"] or 0
            sustained = step["bp_drops_tick"] == 0 and achieved >= KEPT_PACE * rate
            step = {"target_rate": rate, "sustained": sustained, **step}
            steps.append(step)
            print(json.dumps(step), file=sys.stderr)
            if sum(1 for s in steps if not s["sustained"]) >= stop_after_failures:
                break
    clean = [s for s in steps if s["sustained"]]
    best = max(clean, key=lambda s: s["achieved_rate"] or 0, default=None)
    return {
        "benchmark": "live_ingest",
        "seconds_per_step": seconds,
        "tick_queue_batches": TICK_QUEUE_BATCHES,
        "cpu_count": os.cpu_count(),
        "steps": steps,
        "sustained_means": f"no bp_drops_tick and read >= {KEPT_PACE:.0%} of the target rate",
        "max_rate_without_drops": best["achieved_rate"] if best else None,
        "target_rate_at_max": best["target_rate"] if best else None,
        "latency_ms_p50_at_max": best["latency_ms_p50"] if best else None,
        "latency_ms_p99_at_max": best["latency_ms_p99"] if best else None,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=",".join(str(r) for r in DEFAULT_RATES))
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        trio.run(serve, args.rate, args.frames)
        return
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    with logs.capture(keep=False):  # the engine's logs are not the output
        figures = bench(rates, args.seconds)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
