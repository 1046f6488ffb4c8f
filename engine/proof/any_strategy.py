"""The properties that prove a strategy, run on real ticks: ``hybrid-engine strategy check``.

Each property runs the strategy over the ticks of real captures (the packaged
``btcusdt_20240808.gz`` by default), decoded by the replay's own adapter, and
is PASS or FAIL with its figures or its reason on one line:

* ``two_fresh_processes`` -- the same signals, byte for byte, in two fresh
  ``python -m engine.proof.any_strategy --worker`` processes with different hash
  seeds (``PYTHONHASHSEED``: set and dict-of-str iteration orders differ), and
  the same as in this process;
* ``any_rebatching`` -- the same signals when the same ticks arrive in other
  batches: one tick per batch, then random cuts drawn by hypothesis (fixed seed,
  derandomized, as the proof's other properties, ``engine.proof.properties``);
* ``pure_source`` -- the strategy's own source files import no I/O, clock or
  randomness module (``FORBIDDEN_MODULES``; of the engine only
  ``PURE_ENGINE_MODULES``)
  and call none of ``FORBIDDEN_CALLS`` (``open``, ``eval``, ``__import__``, ...);
* ``no_clock_reads`` -- while it runs over the capture, no wall-clock,
  monotonic-clock or random-source function is called (a profile hook sees every
  C-level call: ``time.time``, ``datetime.now``, ``random.random``, ``os.urandom``...);
* ``ticks_unchanged`` -- it never mutates a tick (every tick encodes to the same
  bytes after the run), returns every tick it was given, in order, and places
  each signal right after the tick that caused it with that tick's lineage.

``hybrid-engine proof`` runs these for the configured strategy (the ``strategy``
check, ``check_configured``) and records the strategy's kind, parameters and
source hash (``engine.config.strategies.identify_strategy``) for the LIVE gate.

*Error handling:* a property never raises for what it finds; a strategy that
raises is a FAIL naming the exception. A worker that outlives
``WORKER_TIMEOUT_S`` is killed and the property FAILs.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import msgspec
import trio

from engine.adapters.market.capture import sniff_capture
from engine.adapters.market.replay import ReplayStream
from engine.config.load import config_to_builtins
from engine.config.schema import StrategyChoice
from engine.config.strategies import (
    StrategyIdentity,
    admit_strategy,
    identify_strategy,
    resolve_kind,
    user_class_of,
)
from engine.core.choice import build_strategy
from engine.core.events import Signal, Tick
from engine.core.hosted import StrategyFault, admit_batch
from engine.counters import Counters
from engine.exits import ConfigError
from engine.ports import Strategy, TickBatch
from engine.proof.evidence import CheckResult, CheckStatus, PropertyResult, one_line
from engine.proof.replay import packaged_cases_dir

Output = list[Tick | Signal]

MAX_CHECK_TICKS: Final = 2_000_000
"""Ticks a check holds in memory at most (the rest of a longer capture is not read)."""

WORKER_TIMEOUT_S: Final = 600.0
REBATCH_EXAMPLES: Final = 25
REBATCH_SEED: Final = 1201
MAX_CUTS: Final = 40

FORBIDDEN_MODULES: Final = frozenset({
    "aiohttp", "anyio", "asyncio", "calendar", "concurrent", "ctypes", "datetime", "fcntl",
    "glob", "http", "httpx", "importlib", "io", "logging", "mmap", "multiprocessing", "numpy",
    "os", "pathlib", "pickle", "random", "requests", "secrets", "select", "selectors", "shutil",
    "signal", "socket", "sqlite3", "sqlite_utils", "ssl", "subprocess", "sys", "tempfile",
    "threading", "time", "trio", "urllib", "uuid", "websockets", "zoneinfo",
})  # fmt: skip
"""Top-level modules a strategy's source may not import: I/O, clocks, randomness, threads."""

PURE_ENGINE_MODULES: Final = frozenset(
    {"engine.core", "engine.config.bounds", "engine.config.schema"}
)
"""The engine modules a strategy may import (with ``engine.core.*``): pure, no I/O."""

FORBIDDEN_CALLS: Final = frozenset(
    {"open", "input", "eval", "exec", "compile", "__import__", "breakpoint", "globals"}
)
"""Builtins a strategy's source may not call (I/O, or a way round the import rule)."""

CLOCKS: Final[tuple[object, ...]] = (
    time.time, time.time_ns, time.monotonic, time.monotonic_ns, time.perf_counter,
    time.perf_counter_ns, time.process_time, time.process_time_ns, time.thread_time,
    time.thread_time_ns, time.localtime, time.gmtime, time.ctime, time.asctime, time.strftime,
    os.urandom, os.getrandom, os.times,
)  # fmt: skip
"""C functions that read a clock or a random source."""

_CLOCK_IDS: Final = frozenset(id(f) for f in CLOCKS)

_CLOCK_CLASSMETHODS: Final = frozenset({"now", "utcnow", "today"})
"""``datetime.datetime.now()`` and its kin (class methods: no fixed function object)."""


def packaged_capture() -> Path:
    """The capture ``strategy check`` uses by default: the proof's first replay case's."""
    return packaged_cases_dir() / "btcusdt_20240808.gz"


# ---------------------------------------------------------------- ticks and runs


def capture_ticks(paths: Sequence[Path], limit: int = MAX_CHECK_TICKS) -> list[Tick]:
    """The ticks the replay delivers from ``paths``, in order (at most ``limit``).

    *Error handling:* ``ConfigError`` naming a file that is not a capture.
    """
    for path in paths:
        sniff_capture(path)
    ticks: list[Tick] = []

    async def collect() -> None:
        send, receive = trio.open_memory_channel[TickBatch](16)
        async with trio.open_nursery() as nursery:

            async def produce() -> None:
                async with send:
                    await ReplayStream(list(paths), Counters()).stream(send)

            nursery.start_soon(produce)
            async with receive:
                async for batch in receive:
                    ticks.extend(batch[: limit - len(ticks)])
                    if len(ticks) >= limit:
                        nursery.cancel_scope.cancel()
                        return

    trio.run(collect)
    return ticks


def run_batches(strategy: Strategy, ticks: Sequence[Tick], cuts: Sequence[int] = ()) -> Output:
    """The strategy's output over ``ticks`` fed in the batches ``cuts`` delimit."""
    bounds = [0, *sorted(cuts), len(ticks)]
    out: Output = []
    for start, stop in itertools.pairwise(bounds):
        if stop > start:
            out.extend(strategy.on_batch(ticks[start:stop]))
    return out


def digest(out: Output) -> str:
    return hashlib.sha256(msgspec.json.encode(out)).hexdigest()


def signal_count(out: Output) -> int:
    return sum(isinstance(item, Signal) for item in out)


def first_difference(got: Output, want: Output) -> str:
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"item {i}: {_short(a)} != {_short(b)}"
    return f"{len(got)} items != {len(want)}"


def _short(item: Tick | Signal) -> str:
    if isinstance(item, Signal):
        return f"{item.side} signal {item.signal_id}"
    return f"tick {item.event_id}"


# ---------------------------------------------------------------- the properties


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """What every property of one check is given."""

    choice: StrategyChoice
    ticks: list[Tick]
    whole: Output
    """One ``on_batch`` over every tick: the output every other run must equal."""


def _result(name: str, started: float, detail: str, ran: int = 1) -> PropertyResult:
    return PropertyResult(
        name=name,
        covers="strategy",
        status=CheckStatus.FAIL if detail else CheckStatus.PASS,
        examples=ran,
        ran=ran,
        steps=0,
        seed=REBATCH_SEED if name == "any_rebatching" else 0,
        seconds=round(time.monotonic() - started, 3),
        detail=one_line(detail),
    )


def _fresh(ctx: Context) -> Strategy:
    return fresh_strategy(ctx.choice)


def fresh_strategy(choice: StrategyChoice) -> Strategy:
    """A new instance of ``choice``'s strategy (a user kind's class from the registry)."""
    return build_strategy(choice, user_class_of(choice))


def strategy_json(choice: StrategyChoice) -> str:
    """The ``[strategy]`` table as JSON, flat (what a worker admits again)."""
    table = config_to_builtins_strategy(choice)
    return msgspec.json.encode(table).decode()


def config_to_builtins_strategy(choice: StrategyChoice) -> dict[str, Any]:
    from engine.config.schema import Config

    table: dict[str, Any] = config_to_builtins(Config(strategy=choice))["strategy"]
    return table


def two_fresh_processes(ctx: Context, captures: Sequence[Path]) -> PropertyResult:
    started = time.monotonic()
    want = digest(ctx.whole)
    cmd = [sys.executable, "-m", "engine.proof.any_strategy", "--worker",
           strategy_json(ctx.choice), *map(str, captures)]  # fmt: skip
    seen: list[str] = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S,
                check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return _result("two_fresh_processes", started,
                           f"worker killed after {WORKER_TIMEOUT_S:g} s")  # fmt: skip
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return _result("two_fresh_processes", started,
                           f"worker (PYTHONHASHSEED={hash_seed}) exited {proc.returncode}: {why}")
        seen.append(lines[-1])
    detail = ""
    if seen[0] != seen[1]:
        detail = f"two fresh processes differ: {seen[0][:80]} != {seen[1][:80]}"
    elif not seen[0].startswith(want):
        detail = f"fresh processes give {seen[0][:16]}..., this process {want[:16]}..."
    return _result("two_fresh_processes", started, detail, ran=2)


def any_rebatching(ctx: Context) -> PropertyResult:
    started = time.monotonic()
    ticks, whole = ctx.ticks, ctx.whole
    one_each = run_batches(_fresh(ctx), ticks, range(1, len(ticks)))
    if one_each != whole:
        return _result("any_rebatching", started,
                       f"one tick per batch vs one batch: {first_difference(one_each, whole)}")
    # Imported here: hypothesis loads for a check only, not in every CLI command.
    from hypothesis import given, seed, settings
    from hypothesis import strategies as st

    from engine.proof.properties import Property, proof_settings, without_local_constants

    ran = 0
    cut_lists = st.lists(st.integers(0, len(ticks)), max_size=MAX_CUTS)

    @seed(REBATCH_SEED)
    @given(cuts=cut_lists)
    def rebatched(cuts: list[int]) -> None:
        nonlocal ran
        ran += 1
        got = run_batches(_fresh(ctx), ticks, cuts)
        assert got == whole, f"batches cut at {sorted(cuts)}: {first_difference(got, whole)}"

    prop = Property("any_rebatching", "strategy", REBATCH_EXAMPLES, REBATCH_SEED,
                    lambda *_: rebatched)  # fmt: skip
    test: Callable[[], None] = settings(proof_settings(prop))(rebatched)
    detail = ""
    try:
        with without_local_constants():
            test()
    except Exception as exc:  # a finding: the failing assertion's message
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _result("any_rebatching", started, detail, ran=ran + 1)


def source_problems(path: Path) -> list[str]:
    """Each forbidden import or call in one source file, as ``file:line what``."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        return [f"{path.name}: cannot read the source ({exc})"]
    problems = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN_MODULES or (top == "engine" and not _pure_engine(name)):
                problems.append(f"{path.name}:{getattr(node, 'lineno', 0)} imports {name}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in FORBIDDEN_CALLS):  # fmt: skip
            problems.append(f"{path.name}:{node.lineno} calls {node.func.id}()")
    return problems


def _pure_engine(module: str) -> bool:
    return module in PURE_ENGINE_MODULES or module.startswith("engine.core.")


def pure_source(ctx: Context) -> PropertyResult:
    started = time.monotonic()
    sources = resolve_kind(ctx.choice.kind).sources
    problems = [p for path in sources for p in source_problems(path)]
    if not sources:
        problems = ["no source file found for the strategy's class"]
    return _result("pure_source", started, "; ".join(problems[:8]), ran=len(sources))


@contextmanager
def clock_reads() -> Iterator[list[str]]:
    """Names of the clock and random-source C functions called while inside."""
    calls: list[str] = []

    def hook(frame: object, event: str, arg: object) -> None:
        if event != "c_call":
            return
        owner = getattr(arg, "__self__", None)
        name = getattr(arg, "__name__", "?")
        if (
            id(arg) in _CLOCK_IDS
            or ((owner is dt.datetime or owner is dt.date) and name in _CLOCK_CLASSMETHODS)
            or isinstance(owner, random.Random)
        ):
            calls.append(f"{getattr(owner, '__name__', type(owner).__name__)}.{name}")

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield calls
    finally:
        sys.setprofile(previous)


def no_clock_reads(ctx: Context) -> PropertyResult:
    started = time.monotonic()
    strategy = _fresh(ctx)
    with clock_reads() as calls:
        run_batches(strategy, ctx.ticks)
    detail = ""
    if calls:
        names = sorted(set(calls))
        detail = f"{len(calls)} clock/random reads while it ran: {', '.join(names[:6])}"
    return _result("no_clock_reads", started, detail)


def ticks_unchanged(ctx: Context) -> PropertyResult:
    started = time.monotonic()
    before = msgspec.json.encode(ctx.ticks)
    out = run_batches(_fresh(ctx), ctx.ticks)
    detail = ""
    if msgspec.json.encode(ctx.ticks) != before:
        changed = next(
            (t.event_id for t, raw in zip(ctx.ticks, msgspec.json.decode(before), strict=False)
             if msgspec.to_builtins(t) != raw), "?"
        )  # fmt: skip
        detail = f"a tick was mutated while it ran (first: {changed})"
    else:
        detail = output_shape_problem(ctx.ticks, out, ctx.choice.kind)
    return _result("ticks_unchanged", started, detail)


def output_shape_problem(ticks: Sequence[Tick], out: Output, kind: str) -> str:
    """Why ``out`` is not ``ticks`` in order with caused signals interleaved ("" if it is)."""
    try:
        admit_batch(out, ticks, kind)
    except StrategyFault as exc:
        return str(exc)
    return ""


# ---------------------------------------------------------------- the check


class CheckReport(msgspec.Struct, frozen=True, kw_only=True):
    identity: StrategyIdentity
    captures: tuple[str, ...]
    ticks: int
    signals: int
    properties: tuple[PropertyResult, ...]

    @property
    def passed(self) -> bool:
        return all(p.status is CheckStatus.PASS for p in self.properties)


def check_strategy(choice: StrategyChoice, captures: Sequence[Path] = ()) -> CheckReport:
    """Every property for ``choice`` on ``captures`` (default: the packaged capture).

    *Error handling:* ``ConfigError`` for a capture that is not one, or a strategy
    that cannot be built; a strategy that raises while it runs FAILs every property.
    """
    paths = list(captures) or [packaged_capture()]
    ticks = capture_ticks(paths)
    identity = identify_strategy(choice)
    started = time.monotonic()
    try:
        whole = run_batches(fresh_strategy(choice), ticks)
    except ConfigError:
        raise
    except Exception as exc:  # the strategy's bug: every property fails on it
        reason = f"the strategy raised {type(exc).__name__}: {exc}"
        failed = tuple(_result(name, started, reason) for name in PROPERTY_NAMES)
        return CheckReport(identity=identity, captures=tuple(map(str, paths)), ticks=len(ticks),
                           signals=0, properties=failed)  # fmt: skip
    ctx = Context(choice=choice, ticks=ticks, whole=whole)
    runs: list[Callable[[], PropertyResult]] = [
        lambda: two_fresh_processes(ctx, paths),
        lambda: any_rebatching(ctx),
        lambda: pure_source(ctx),
        lambda: no_clock_reads(ctx),
        lambda: ticks_unchanged(ctx),
    ]
    results = []
    for name, run in zip(PROPERTY_NAMES, runs, strict=True):
        property_started = time.monotonic()
        try:
            results.append(run())
        except Exception as exc:  # the strategy raised inside a property
            results.append(
                _result(name, property_started, f"raised {type(exc).__name__}: {exc}")
            )
    return CheckReport(
        identity=identity,
        captures=tuple(map(str, paths)),
        ticks=len(ticks),
        signals=signal_count(whole),
        properties=tuple(results),
    )


PROPERTY_NAMES: Final = (
    "two_fresh_processes",
    "any_rebatching",
    "pure_source",
    "no_clock_reads",
    "ticks_unchanged",
)


def property_line(result: PropertyResult) -> str:
    """``PASS name (figures)`` or ``FAIL name: reason``."""
    if result.status is CheckStatus.PASS:
        return f"PASS {result.name} ({result.ran} runs, {result.seconds:.1f} s)"
    return f"FAIL {result.name}: {result.detail}"


def check_configured(choice: StrategyChoice) -> CheckResult:
    """The proof bundle's ``strategy`` check: every property for the configured strategy."""
    from engine.proof.checks import timed  # the proof's own wrapper (duration, one-line FAIL)

    def body() -> tuple[bool, dict[str, Any], str, str]:
        report = check_strategy(choice)
        failed = [f"{p.name}: {p.detail}" for p in report.properties if p.detail]
        figures: dict[str, Any] = {
            "identity": msgspec.to_builtins(report.identity),
            "captures": [Path(c).name for c in report.captures],
            "ticks": report.ticks,
            "signals": report.signals,
            "properties": [msgspec.to_builtins(p) for p in report.properties],
        }
        passed = len(report.properties) - len(failed)
        summary = (
            f"{report.identity.kind}: {passed}/{len(report.properties)} properties on "
            f"{report.ticks:,} ticks, {report.signals:,} signals"
        )
        return report.passed, figures, summary, "; ".join(failed)

    return timed("strategy", body)


# ---------------------------------------------------------------- the worker


def worker(table_json: str, captures: Sequence[str]) -> int:
    """One fresh process's run: print ``<sha256> <ticks> <signals>`` of the output."""
    choice = admit_strategy(msgspec.json.decode(table_json))
    ticks = capture_ticks([Path(p) for p in captures])
    out = run_batches(fresh_strategy(choice), ticks)
    print(f"{digest(out)} {len(ticks)} {signal_count(out)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        raise SystemExit(worker(sys.argv[2], sys.argv[3:]))
    print(
        "usage: python -m engine.proof.any_strategy --worker TABLE_JSON CAPTURE...",
        file=sys.stderr,
    )
    raise SystemExit(2)
