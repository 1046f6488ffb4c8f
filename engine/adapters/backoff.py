"""Reconnect pacing: an exponential backoff schedule with seeded jitter, and its budget.

The market feed and the LIVE user stream reconnect through one loop
(``engine.adapters.link.reconnect``) that paces with ``Backoff`` and gives up on
``ReconnectBudget``; the LIVE REST retries pace with ``Backoff`` too. Loose in
``adapters/`` because all three use it (docs/architecture.md "Reconnecting").

Pure (no I/O, no clock of its own): the caller passes ``now`` from
``trio.current_time()``, so a test drives it with the mock clock and asserts
the exact schedule, and the same seed always gives the same delays.

Why jitter: after an exchange outage every client reconnects at once; spreading
the retries keeps a fleet from hammering the venue in lock-step. Why a seeded
``random.Random``: a run must be reproducible from its configuration.

Why a *healthy* connection resets the delay, not merely an established one: a
server that accepts and immediately drops us would otherwise reset the delay on
every attempt and we would reconnect in a tight loop (a "reconnect storm").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from engine.config.schema import IngestSection

JITTER_FRACTION: Final = 0.2
"""Each delay is drawn uniformly from ``[base * (1 - JITTER_FRACTION), base]``.
Jitter only ever shortens the delay, so ``max_backoff_s`` stays a hard cap; with
``backoff_factor >= 2`` and this fraction every uncapped delay still grows."""

HEALTHY_AFTER_S: Final = 10.0
"""A connection that stayed up this long after it proved to work (its first
admitted tick) resets the delay to ``initial_backoff_s``. Shorter-lived
connections keep growing it."""


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """The knobs of the schedule (``[ingest]`` keys ``initial_backoff_s``,
    ``max_backoff_s``, ``backoff_factor``, ``backoff_seed``).

    The one copy of the backoff settings: the market feed builds its policy from
    its section (``of``), the LIVE REST retries and user stream use ``DEFAULT_POLICY``
    (the ``[ingest]`` defaults), so the numbers are written only in
    ``engine.config.schema``.
    """

    initial_s: float
    max_s: float
    factor: float
    seed: int
    jitter: float = JITTER_FRACTION
    healthy_after_s: float = HEALTHY_AFTER_S

    @classmethod
    def of(
        cls, section: IngestSection, *, healthy_after_s: float = HEALTHY_AFTER_S
    ) -> BackoffPolicy:
        """The policy a section configures."""
        return cls(
            initial_s=section.initial_backoff_s,
            max_s=section.max_backoff_s,
            factor=section.backoff_factor,
            seed=section.backoff_seed,
            healthy_after_s=healthy_after_s,
        )


DEFAULT_POLICY: Final = BackoffPolicy.of(IngestSection())
"""The schedule of the ``[ingest]`` defaults: what the LIVE adapters pace by."""


class Backoff:
    """The delay before each reconnect attempt.

    ``next_delay()`` returns the delay for the attempt about to be made and
    advances the schedule: ``min(max_s, initial_s * factor**n)`` shrunk by a
    jitter drawn from the seeded generator. ``connection_ended(up_since, now)``
    resets the schedule when the connection that just ended had been healthy
    for ``healthy_after_s``.
    """

    def __init__(self, policy: BackoffPolicy) -> None:
        self._policy = policy
        self._rng = random.Random(policy.seed)
        self._step = 0

    @property
    def step(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._step

    def base_delay(self, step: int) -> float:
        """The un-jittered delay of the ``step``-th attempt (0-based), capped."""
        p = self._policy
        # Grow until the cap without computing huge powers for long outages.
        delay = p.initial_s
        for _ in range(step):
            delay *= p.factor
            if delay >= p.max_s:
                return p.max_s
        return min(delay, p.max_s)

    def next_delay(self) -> float:
        base = self.base_delay(self._step)
        self._step += 1
        return base * (1.0 - self._policy.jitter * self._rng.random())

    def reset(self) -> None:
        self._step = 0

    def connection_ended(self, healthy_since: float | None, now: float) -> bool:
        """Reset the schedule if the connection was healthy long enough; say whether it did.

        ``healthy_since`` is when the connection first proved to work (its
        first admitted tick), ``None`` if it never did.
        """
        if healthy_since is not None and now - healthy_since >= self._policy.healthy_after_s:
            self.reset()
            return True
        return False


@dataclass(slots=True)
class ReconnectBudget:
    """How much failure a link tolerates before it gives up with exit 10.

    Judged on *deliveries*, not on connections: for the market feed a connection
    works only once it delivered an admitted tick (an acknowledgement, a
    heartbeat, a pong or a rejected frame proves nothing -- a venue that acks and
    drops forever must spend the budget); for the user stream, once the venue
    confirmed the subscription. Two limits, either one ends it: ``max_failures``
    consecutive attempts that delivered nothing, and ``max_downtime_s`` since the
    last delivery (or since the link started). ``delivery`` and ``failures_key``
    only word the reason (docs/architecture.md "Reconnecting").
    """

    max_failures: int
    max_downtime_s: float
    delivery: str = "market data"
    failures_key: str = "max_reconnect_failures"
    failures: int = 0
    last_data: float | None = None
    """``trio.current_time()`` of the last delivery or of the start (``None`` before it)."""

    def start(self, now: float) -> None:
        """The link starts: the downtime clock runs from ``now`` until the first delivery."""
        if self.last_data is None:
            self.last_data = now

    def delivered(self, now: float) -> None:
        """A connection delivered at ``now``: both limits start over."""
        self.failures = 0
        self.last_data = now if self.last_data is None else max(self.last_data, now)

    def failed(self) -> None:
        """An attempt failed (refused, timed out, or ended before it delivered)."""
        self.failures += 1

    def downtime(self, now: float) -> float:
        """Seconds without a delivery (0 before ``start``)."""
        return 0.0 if self.last_data is None else now - self.last_data

    def exhausted(self, now: float) -> str | None:
        """Why the budget is spent, or ``None`` while it is not."""
        if self.failures >= self.max_failures:
            return (
                f"{self.failures} consecutive attempts without {self.delivery}"
                f" ({self.failures_key})"
            )
        if self.downtime(now) >= self.max_downtime_s:
            return (
                f"no {self.delivery} for {self.downtime(now):.1f}s "
                f"(max_downtime_s={self.max_downtime_s:g})"
            )
        return None
