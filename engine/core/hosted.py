"""A trader's own strategy, hosted behind the engine's ``Strategy`` port, pure.

A user strategy implements one method, ``on_tick(tick) -> Signal | None``
(``docs/strategies.md``). ``Hosted`` turns it into the port's ``on_batch``:
every tick in order, each signal right after the tick that caused it -- so the
output cannot depend on batching unless the strategy itself keeps state that
does -- and admits every signal it returns before anything downstream sees it.

Admission (``admit_signal``): a signal must be a ``Signal`` caused by *this*
tick -- ``cause_id`` the tick's id, ``signal_id`` ``"sig:" + cause_id`` (ids
derive from content, so they are unique per tick and the same in every run),
the tick's symbol and ``ts_recv`` (what the staleness check measures) -- with
a finite positive price of bounded precision, an event time inside int64
nanoseconds and not after the tick's own, and an optional desired notional
(above 0, at most ``MAX_NOTIONAL``, 18 digits, 12 places) and reason (printable,
at most ``MAX_REASON_CHARS``): nothing admitted can make execution raise.
Anything else is a bug of the
strategy: ``StrategyFault`` is raised, and the runtime stops the engine
cleanly (exit 1, ``engine.runtime.pipeline.strategy_task``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Final

from engine.core.events import Side, Signal, Tick
from engine.core.strategy import caused_signal

MAX_PRICE_DIGITS: Final = 28
"""Significant digits a signal's price may carry (a venue's prices carry under 20)."""

MAX_NOTIONAL: Final = Decimal(10**9)
"""Largest desired notional a signal may carry (USD; ``order_notional_usd``'s own bound)."""

MAX_NOTIONAL_DIGITS: Final = 18
MAX_REASON_CHARS: Final = 200

INT64_MAX: Final = 2**63 - 1


class StrategyFault(Exception):
    """A strategy returned something the engine refuses (a bug in the strategy: exit 1)."""


def signal_for(
    tick: Tick,
    side: Side,
    *,
    ts_event: int | None = None,
    price: Decimal | None = None,
    notional: Decimal | None = None,
    reason: str = "",
) -> Signal:
    """The signal ``tick`` causes: its lineage filled in, time and price the tick's by default.

    ``notional``: the USD a BUY would like to spend (default ``[execution]
    order_notional_usd``; the risk caps still decide); ``reason``: a few words
    on why, quoted in a veto.
    """
    signal = caused_signal(
        tick, side, tick.ts_event if ts_event is None else ts_event,
        tick.price if price is None else price,
    )
    if notional is None and not reason:
        return signal
    return Signal(
        signal_id=signal.signal_id, symbol=signal.symbol, side=side, ts_event=signal.ts_event,
        ts_recv=signal.ts_recv, price=signal.price, cause_id=signal.cause_id,
        notional=notional, reason=reason,
    )  # fmt: skip


def admit_signal(result: object, tick: Tick, kind: str) -> Signal:
    """``result`` if it is a signal ``tick`` may have caused; else ``StrategyFault``."""
    if not isinstance(result, Signal):
        raise StrategyFault(f"{kind}: on_tick returned {type(result).__name__}, not Signal | None")
    problem = _lineage_problem(result, tick)
    if problem is not None:
        raise StrategyFault(f"{kind}: signal {result.signal_id[:80]!r} refused: {problem}")
    return result


def _lineage_problem(signal: Signal, tick: Tick) -> str | None:
    if signal.cause_id != tick.event_id:
        return f"cause_id must be the tick's id {tick.event_id!r} (use signal_for)"
    if signal.signal_id != "sig:" + tick.event_id:
        return "signal_id must be 'sig:' + the tick's id (use signal_for)"
    if signal.symbol != tick.symbol:
        return f"symbol must be the tick's {tick.symbol!r}"
    if signal.ts_recv != tick.ts_recv:
        return "ts_recv must be the tick's (the staleness check measures it)"
    if not isinstance(signal.side, Side):
        return "side must be Side.BUY or Side.SELL"
    ts = signal.ts_event
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts <= tick.ts_event:
        return "ts_event must be int nanoseconds between 0 and the tick's ts_event"
    price = signal.price
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        return "price must be a finite positive Decimal"
    if len(price.as_tuple().digits) > MAX_PRICE_DIGITS or price.adjusted() > 18:
        return f"price has more than {MAX_PRICE_DIGITS} digits or is implausibly large"
    return _extras_problem(signal)


def _extras_problem(signal: Signal) -> str | None:
    """The optional notional and reason: bounded so execution can never raise on them."""
    notional = signal.notional
    if notional is not None:
        exact = isinstance(notional, Decimal) and notional.is_finite()
        digits = notional.as_tuple() if exact else None
        if not (
            exact and digits is not None and 0 < notional <= MAX_NOTIONAL
            and len(digits.digits) <= MAX_NOTIONAL_DIGITS
            and isinstance(digits.exponent, int) and digits.exponent >= -12
        ):  # fmt: skip
            return f"notional must be a Decimal above 0, at most {MAX_NOTIONAL}, 12 places at most"
    reason = signal.reason
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS or not reason.isprintable():
        return f"reason must be printable text of at most {MAX_REASON_CHARS} characters"
    return None


class Hosted:
    """A user strategy (``on_tick``) as the engine's ``Strategy`` port (``on_batch``)."""

    __slots__ = ("_describe", "_on_batch", "_on_tick", "kind", "strategy")

    def __init__(self, strategy: object, kind: str) -> None:
        on_tick = getattr(strategy, "on_tick", None)
        if not callable(on_tick):
            raise TypeError(f"{kind}: a strategy needs an on_tick(tick) method")
        self.strategy = strategy
        self.kind = kind
        self._on_tick: Callable[[Tick], object] = on_tick
        on_batch = getattr(strategy, "on_batch", None)
        self._on_batch: Callable[[Sequence[Tick]], object] | None = (
            on_batch if callable(on_batch) else None
        )
        describe = getattr(strategy, "describe", None)
        self._describe: Callable[[], object] | None = describe if callable(describe) else None

    def describe(self) -> str:
        """The strategy's own ``describe()`` if it has one, else its kind; one printable line.

        Never raises: a ``describe()`` that does is named instead (the start line
        is no reason to stop; ``on_tick`` raising is).
        """
        if self._describe is None:
            return f"{self.kind} (a user strategy)"
        try:
            text = str(self._describe())
        except Exception as exc:  # the trader's code: the start line still prints
            text = f"{self.kind} (its describe() raised {type(exc).__name__})"
        flat = "".join(c if c.isprintable() else " " for c in text)
        return flat[:MAX_REASON_CHARS]

    def on_tick(self, tick: Tick) -> Signal | None:
        result = self._on_tick(tick)
        return None if result is None else admit_signal(result, tick, self.kind)

    def on_batch(self, ticks: Sequence[Tick]) -> list[Tick | Signal]:
        """Every tick in order, each admitted signal right after the tick that caused it.

        A strategy with its own ``on_batch`` (faster: one call per batch) has its
        output admitted whole: the very ticks given, in order, each signal after
        the tick that caused it (``admit_batch``).
        """
        if self._on_batch is not None:
            return admit_batch(self._on_batch(ticks), ticks, self.kind)
        on_tick = self._on_tick
        kind = self.kind
        out: list[Tick | Signal] = []
        append = out.append
        for tick in ticks:
            append(tick)
            result = on_tick(tick)
            if result is not None:
                append(admit_signal(result, tick, kind))
        return out


def admit_batch(result: object, ticks: Sequence[Tick], kind: str) -> list[Tick | Signal]:
    """A user ``on_batch``'s output if it is ``ticks`` with caused signals interleaved."""
    if not isinstance(result, list):
        raise StrategyFault(f"{kind}: on_batch returned {type(result).__name__}, not a list")
    given = 0
    for item in result:
        if given < len(ticks) and item is ticks[given]:
            given += 1
        elif given and isinstance(item, Signal):
            admit_signal(item, ticks[given - 1], kind)
        else:
            raise StrategyFault(
                f"{kind}: on_batch output must be the ticks given, in order, each signal "
                f"right after its cause (item after tick {given} is {type(item).__name__})"
            )
    if given != len(ticks):
        raise StrategyFault(f"{kind}: on_batch dropped {len(ticks) - given} of the ticks given")
    return result
