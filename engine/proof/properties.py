"""The proof's property checks: every packaged hypothesis property, run without pytest.

``PROPERTIES`` is the registry: the I1 property and the I2-I4 state machines of
``engine.proof.invariants``, the strategy properties of ``engine.proof.strategy``.
Each runs with settings fixed here (``proof_settings``), never inherited from a
hypothesis profile, so a proof is reproducible:

* ``max_examples`` per property as listed (``stateful_step_count`` for machines);
* a fixed ``seed`` per property (and ``derandomize=True``): the same code draws
  the same examples in every run, on every machine;
* ``database=None`` and no explain phase: nothing is read from or written to a
  ``.hypothesis`` directory in the operator's working directory;
* ``deadline=None`` and the ``too_slow`` health check suppressed: a busy host
  changes how long a property takes, never its verdict;
* no *local constants* (``without_local_constants``): hypothesis also draws
  literals mined from the source of "local" modules -- those outside
  ``site-packages`` that happen to be imported -- so an editable checkout, an
  installed package and a pytest process would each draw different examples.
  Without them the examples depend on the seed and the code alone (the same
  example counts from a checkout and from a ``pip install``).

``python -m engine.proof.properties [NAME...]`` runs them (all by default) and
prints one JSON ``PropertyResult`` line per property as soon as it finishes;
exit 0 only when every one passed. ``engine.proof.checks.check_invariants`` runs
that in a fresh process under a time bound; the tests run ``run_property`` in
process. Both run the one copy of each property.

*Error handling:* a property that fails, errors, cannot be built or runs no
example is a FAIL with its reason on one line (the failing assertion's place
and message, then hypothesis's falsifying example); nothing propagates.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import msgspec
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from hypothesis.reporting import with_reporter
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from engine.proof import invariants as inv
from engine.proof import strategy as strat
from engine.proof.evidence import CheckStatus, PropertyResult, one_line

Runner = Callable[[], None]
Builder = Callable[[settings, int, Callable[[], None]], Runner]
"""``(settings, seed, seen) -> test``: ``seen()`` is called once per example run."""


@dataclass(frozen=True, slots=True)
class Property:
    """One registered property: its stable name, what it covers, its fixed examples and seed."""

    name: str
    covers: str
    examples: int
    seed: int
    build: Builder
    steps: int = 0
    """``stateful_step_count`` for a state machine; 0 for a ``@given`` property."""


def given_property(body: Callable[..., None], strategies: Mapping[str, Any]) -> Builder:
    """A builder wrapping ``body(**drawn)`` in ``@given(**strategies)``, counting examples."""

    def build(proof: settings, fixed_seed: int, seen: Callable[[], None]) -> Runner:
        def example(**drawn: Any) -> None:
            seen()
            body(**drawn)

        test: Runner = seed(fixed_seed)(proof(given(**strategies)(example)))
        return test

    return build


def machine_property(machine: type[RuleBasedStateMachine]) -> Builder:
    """A builder running ``machine`` with ``run_state_machine_as_test``, counting examples."""

    def build(proof: settings, fixed_seed: int, seen: Callable[[], None]) -> Runner:
        def init(self: RuleBasedStateMachine) -> None:
            machine.__init__(self)
            seen()

        counted = cast(
            type[RuleBasedStateMachine], type(machine.__name__, (machine,), {"__init__": init})
        )
        factory = seed(fixed_seed)(counted)
        return lambda: run_state_machine_as_test(factory, settings=proof)

    return build


_TICKS: Final = {"ticks": strat.tick_streams(), "p": strat.params()}
_MACHINES: Final = (
    ("shadow", inv.ShadowMachine),
    ("paper_market", inv.PaperMarketMachine),
    ("paper_limit", inv.PaperLimitMachine),
    ("paper_drawdown", inv.PaperDrawdownMachine),
)

PROPERTIES: Final[tuple[Property, ...]] = (
    Property(
        name="i1_shadow_paper_no_socket",
        covers="I1",
        examples=20,
        seed=101,
        build=given_property(inv.shadow_and_paper_never_touch_a_socket, inv.I1_STRATEGIES),
    ),
    *(
        Property(f"i2_i4_{kind}", "I2 I3 I4", 100, 200 + n, machine_property(machine), steps=50)
        for n, (kind, machine) in enumerate(_MACHINES)
    ),
    Property(
        name="strategy_agrees_with_reference",
        covers="strategy",
        examples=100,
        seed=301,
        build=given_property(strat.agrees_with_reference, _TICKS),
    ),
    Property(
        name="strategy_fresh_instances_identical_bytes",
        covers="determinism",
        examples=100,
        seed=302,
        build=given_property(strat.fresh_instances_identical_bytes, _TICKS),
    ),
    Property(
        name="strategy_any_chunking_same_output",
        covers="chunking",
        examples=100,
        seed=303,
        build=given_property(strat.any_chunking_same_output, {**_TICKS, "data": st.data()}),
    ),
    Property(
        name="strategy_on_tick_same_as_on_batch",
        covers="chunking",
        examples=100,
        seed=304,
        build=given_property(strat.on_tick_same_as_on_batch, _TICKS),
    ),
)
"""Every property the proof runs, in order. Names are stable: the bundle records them."""


def proof_settings(prop: Property) -> settings:
    """The settings a proof runs ``prop`` with: every relevant one explicit (module docstring)."""
    return settings(
        max_examples=prop.examples,
        stateful_step_count=max(prop.steps, 1),
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=(HealthCheck.too_slow,),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.normal,
    )


@contextmanager
def without_local_constants() -> Iterator[bool]:
    """Make hypothesis draw no constants mined from local modules while inside.

    Yields whether it could (this reaches into hypothesis internals, pinned by
    the lock: ``tests/proof/test_evidence.py`` fails if a hypothesis upgrade moves them;
    the properties then still run, only less reproducibly across installs).

    *Resource handling:* hypothesis's getter and its constants cache are restored
    and cleared on exit.
    """
    providers = importlib.import_module("hypothesis.internal.conjecture.providers")
    getter = getattr(providers, "_get_local_constants", None)
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", None)
    constants = getattr(providers, "Constants", None)
    if getter is None or cache is None or constants is None:
        yield False
        return
    empty = constants()
    cache.clear()  # entries computed with local constants must not be reused
    setattr(providers, "_get_local_constants", lambda: empty)  # noqa: B010
    try:
        yield True
    finally:
        setattr(providers, "_get_local_constants", getter)  # noqa: B010
        cache.clear()


def failure_reason(exc: BaseException, reports: Sequence[str]) -> str:
    """Where the failing assertion is, what it said, and hypothesis's falsifying example."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = ""
    if frames:
        last = frames[-1]
        place = f" at {Path(last.filename).name}:{last.lineno} `{(last.line or '').strip()}`"
    message = str(exc)
    notes = getattr(exc, "__notes__", None) or list(reports)
    parts = [f"{type(exc).__name__}{place}" + (f": {message}" if message else "")]
    parts += [n for n in notes if n.strip()]
    return one_line(" | ".join(parts))


def run_property(prop: Property) -> PropertyResult:
    """Run one property with the proof's settings; never raises for what it finds."""
    started = time.monotonic()
    ran = 0

    def seen() -> None:
        nonlocal ran
        ran += 1

    reports: list[str] = []
    detail = ""
    try:
        if sys.flags.optimize:
            raise RuntimeError("assertions are disabled (python -O / PYTHONOPTIMIZE)")
        test = prop.build(proof_settings(prop), prop.seed, seen)
        with with_reporter(lambda text: reports.append(str(text))), without_local_constants():
            test()
        if ran == 0:
            detail = "no example ran"
    except Exception as exc:  # a finding or a broken property: a FAIL with its reason
        detail = failure_reason(exc, reports)
    return PropertyResult(
        name=prop.name,
        covers=prop.covers,
        status=CheckStatus.FAIL if detail else CheckStatus.PASS,
        examples=prop.examples,
        ran=ran,
        steps=prop.steps,
        seed=prop.seed,
        seconds=round(time.monotonic() - started, 3),
        detail=detail,
    )


def select(names: Sequence[str]) -> list[Property]:
    """The registered properties named (all when none); an unknown name raises ``KeyError``."""
    by_name = {p.name: p for p in PROPERTIES}
    return [by_name[n] for n in names] if names else list(PROPERTIES)


def main(argv: Sequence[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    try:
        chosen = select(names)
    except KeyError as exc:
        print(f"unknown property {exc}; known: {', '.join(p.name for p in PROPERTIES)}",
              file=sys.stderr)  # fmt: skip
        return 2
    failed = 0
    for prop in chosen:
        result = run_property(prop)
        failed += result.status is not CheckStatus.PASS
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
