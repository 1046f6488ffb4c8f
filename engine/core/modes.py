"""What the mode decides, as one object chosen at construction (SHADOW, PAPER or LIVE).

The decision logic -- staleness, the risk chain, sizing, supersession, the
drawdown guard, ids -- is the same in every mode (``engine.core.execution``).
What differs is the venue: what an approved order becomes, how open orders
are worked on each trade, what a cancellation is, which resumed orders a run
can work, and whether a venue answers. ``ModePolicy`` names exactly those
differences; each mode implements it once:

==========  ===========================================  ==========================
mode        policy                                       venue
==========  ===========================================  ==========================
SHADOW      ``ShadowMode`` (here)                        none: filled at once
PAPER       ``engine.core.paper.PaperMode``              simulated, against the tape
LIVE        ``engine.core.live_orders.LiveMode``         the shell's (intents out,
                                                         venue records back)
==========  ===========================================  ==========================

SHADOW and PAPER share ``SimulatedMode``. ``engine.core.execution.policy_for``
picks one from ``config.engine.mode``; ``Execution`` never tests the mode again.
See ``docs/execution.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol

from engine.config.schema import ExecutionSection, Mode
from engine.core.booking import OrderBook
from engine.core.events import Fill, Order, Record, Tick, VenueFailure
from engine.core.live_orders import Applied, Intent, VenueReport
from engine.core.orders import OrderAction, WorkingOrder


class ModePolicy(Protocol):
    """The venue side of one mode: everything ``Execution`` does differently per mode."""

    @property
    def mode(self) -> Mode: ...

    @property
    def order_mode(self) -> str:
        """The ``mode`` column of the orders this run creates: the ``Mode`` member's name."""
        ...

    @property
    def rests_limit_orders(self) -> bool:
        """A limit order rests at the passive offset price (a venue works it over time);
        otherwise it is priced like a market order (SHADOW assumes an immediate fill)."""
        ...

    @property
    def fills_at_once(self) -> bool:
        """``place`` books the fill itself, so the drawdown guard judges it right away."""
        ...

    @property
    def supersede_frees_slot(self) -> bool:
        """A superseded order's cancellation frees its ``max_open_orders`` slot at once
        (LIVE: not until the venue confirms it, I2)."""
        ...

    def resume(self, order: WorkingOrder) -> bool:
        """Prepare an open order an earlier run of this mode left; ``False``: not resumable."""
        ...

    def restore_fill(self, fill: Fill) -> None:
        """A persisted fill (already in the ledger): remember what the mode must."""
        ...

    def place(self, order: WorkingOrder, record: Order, out: list[Record]) -> None:
        """What an approved order becomes (its ``Order`` record is already in ``out``)."""
        ...

    def work(self, tick: Tick, out: list[Record]) -> None:
        """A trade arrived while orders are open: expire, accept, fill them (per mode)."""
        ...

    def cancel(self, order: WorkingOrder, ts_event: int, reason: str, out: list[Record]) -> None:
        """Cancel the unfilled remainder of ``order`` (LIVE: request it of the venue)."""
        ...

    def take_intents(self) -> list[Intent]:
        """What to do at the venue since the last call (empties the outbox)."""
        ...

    def apply_venue(self, items: Iterable[VenueReport | VenueFailure]) -> Applied:
        """Book what the venue said; return what it produced (LIVE only)."""
        ...


class SimulatedMode:
    """What SHADOW and PAPER share: the venue is simulated here, so a cancellation is
    booked at once, nothing is asked of a venue and no venue answers."""

    supersede_frees_slot: Final = True

    def __init__(self, book: OrderBook, settings: ExecutionSection) -> None:
        self._book = book
        self._settings = settings

    def restore_fill(self, fill: Fill) -> None:
        pass  # the ledger holds it; a simulator books its own fills, never the venue's

    def cancel(self, order: WorkingOrder, ts_event: int, reason: str, out: list[Record]) -> None:
        self._book.cancel_remainder(order, ts_event, reason, out)

    def take_intents(self) -> list[Intent]:
        return []

    def apply_venue(self, items: Iterable[VenueReport | VenueFailure]) -> Applied:
        raise TypeError("a simulated venue (SHADOW, PAPER) has no venue to answer")


class ShadowMode(SimulatedMode):
    """SHADOW: an approved order is filled at once at its assumed price; nothing rests."""

    mode: Final = Mode.SHADOW
    order_mode: Final = Mode.SHADOW.name
    rests_limit_orders: Final = False
    fills_at_once: Final = True

    def resume(self, order: WorkingOrder) -> bool:
        return False  # nothing rests in SHADOW: no venue here could work it

    def place(self, order: WorkingOrder, record: Order, out: list[Record]) -> None:
        ts = order.ts_submitted
        out.append(order.submitted_event("shadow: recorded, not sent (SHADOW mode)"))
        out.append(order.transition(OrderAction.ACCEPT, ts, "shadow: simulated acknowledgement"))
        self._book.fill(
            order,
            qty=order.qty,
            price=order.price,
            ts_event=ts,
            reason="shadow: simulated immediate fill at the assumed price",
            fee_bps=self._settings.fee_bps,
            out=out,
        )

    def work(self, tick: Tick, out: list[Record]) -> None:
        pass  # never called with open orders: every SHADOW order is filled in place()
