"""Hypothesis settings and input counting shared by the admission property suites.

The suites run a few hundred examples per property in the ordinary test run. With
``HYPOTHESIS_PROFILE=fuzz`` (``nox -s fuzz``) every property runs
``ADMISSION_FUZZ_EXAMPLES`` examples per round, and ``test_fuzz_for_minutes`` repeats
the rounds for ``ADMISSION_FUZZ_MINUTES`` minutes, then prints the figures (inputs
tried per property, minutes, findings: a finding fails the test with its example).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Final

from hypothesis import HealthCheck, settings

FUZZING: Final = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
FUZZ_MINUTES: Final = float(os.environ.get("ADMISSION_FUZZ_MINUTES", "5"))
FUZZ_EXAMPLES: Final = int(os.environ.get("ADMISSION_FUZZ_EXAMPLES", "20000"))

SUITES: Final = ("test_admission_properties", "test_admission_downstream")
"""The modules whose properties the fuzz repeats (``nox -s fuzz`` collects both)."""

FUZZED: dict[str, list[Callable[[], None]]] = {}
"""The properties each suite registered (``fuzzed``), by module name."""


def fuzzed(module: str, properties: list[Callable[[], None]]) -> None:
    """Register a suite's properties for ``test_fuzz_for_minutes`` (no test imports another)."""
    FUZZED[module.rpartition(".")[2]] = properties


inputs: Counter[str] = Counter()
"""Examples run per property (what the fuzz report counts)."""


def profile(examples: int, *, fuzz_share: float = 1.0) -> settings:
    """``examples`` per property normally; ``FUZZ_EXAMPLES * fuzz_share`` when fuzzing
    (slow properties -- a database and a dashboard per example -- take a share)."""
    return settings(
        max_examples=max(examples, round(FUZZ_EXAMPLES * fuzz_share)) if FUZZING else examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=False,
    )
