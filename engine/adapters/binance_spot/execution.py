"""The LIVE order adapter for Binance spot: real orders, reachable only behind gate G1.

Nothing constructs this outside ``mode = "live"``, and the runtime calls
``engine.proof.gate.enforce`` before it builds one (L1). SHADOW and PAPER never import
it (I1).

*Using it.* The adapter holds no order book: it is given the core's one book
(``engine.core.live_orders.VenueBook``), reports every answer of the venue into
it as a ``VenueReport`` and reads it (which orders are open, in what state);
it never changes an order itself. What it keeps is the venue's: the client id
<-> order id map and the calls. The core records an order (``Order`` +
SUBMITTED) and opens it in the book; ``track(order)`` then maps it here, and
``await submit(order_id)`` sends it once those records are committed
(``engine.runtime.live`` waits for that). Every method returns the records to
persist -- the order transitions and fills the book produced, and a
``VenueFailure`` for every failed call or refused report (each is also logged:
L4). Fills normally arrive through ``run_user_stream`` (the WebSocket-API
user-data stream); the order response (``FULL``) and ``myTrades`` deliver the
same trades, which the book books once by trade id.

*Placing an order without ever doubling it.* The client order id is derived
from our order id (``client_order_id``), so the venue itself refuses a second
*open* order with the same id -- but not one whose first copy already filled.
So nothing is re-sent while the first attempt's outcome is unknown:

1. send; an answer (accepted, filled, rejected) settles it;
2. no answer (timeout, dropped connection, 5xx): ask the venue for that client
   id, up to ``resolve_queries`` times with backoff -- found: book what it says;
   definitely not there: go to 3; the queries themselves failed: stop and leave
   the order SUBMITTED for ``reconcile`` (re-sending blind could double it);
3. wait (backoff, or the venue's ``Retry-After`` for 429/418) and send again,
   at most ``max_submit_attempts`` times; then give up (DENIED, "not placed").

*Reconnects.* After every (re)subscription to the user stream, ``reconcile``
queries each open order and books anything the stream missed while down.
"""

from __future__ import annotations

import enum
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import httpx
import trio

from engine import logs
from engine.adapters.backoff import DEFAULT_POLICY, Backoff, BackoffPolicy
from engine.adapters.binance_spot.credentials import Credentials, load_credentials
from engine.adapters.binance_spot.failures import failure_id_for
from engine.adapters.binance_spot.reports import report_from_execution, report_from_order
from engine.adapters.binance_spot.rest import BinanceRest, VenueCallError
from engine.adapters.binance_spot.signing import client_order_id
from engine.adapters.binance_spot.wire import ExecutionReport, VenueOrder
from engine.config.schema import Config
from engine.core.events import FailureKind, Order, OrderState, Record, VenueFailure
from engine.core.live_orders import VenueBook, VenueReport, VenueState
from engine.core.sizing import ZERO
from engine.exits import ConfigError

MODE: Final = "live"


@dataclass(frozen=True, slots=True)
class LivePolicy:
    """Retry bounds of the LIVE adapter; each with what happens when it is reached."""

    max_submit_attempts: int = 3
    """Sends of one order (only after the venue confirmed the previous one is not there);
    then the order is given up (DENIED) and a GAVE_UP failure recorded."""
    resolve_queries: int = 3
    """Queries to settle an unknown outcome; if none answers, the order is left SUBMITTED
    for ``reconcile`` -- never re-sent blind."""
    backoff: BackoffPolicy = DEFAULT_POLICY
    """Pacing of re-sends and resolving queries (``engine.adapters.backoff``)."""
    max_retry_after_s: float = 120.0
    """A 429/418 asking to wait longer than this ends the attempt at once (an IP ban can last
    hours: better to give up the order than to act on a stale signal)."""


class Resolution(enum.Enum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    UNKNOWN = "unknown"


Sleep = Callable[[float], Awaitable[None]]


class BinanceExecution:
    """LIVE orders on Binance spot (see module docstring)."""

    def __init__(
        self,
        *,
        rest: BinanceRest,
        credentials: Credentials,
        book: VenueBook,
        wall_ns: Callable[[], int] = time.time_ns,
        policy: LivePolicy = LivePolicy(),
        sleep: Sleep = trio.sleep,
    ) -> None:
        self.rest = rest
        self.book = book
        """The core's one order book (reported into and read; never changed here)."""
        self._orders: dict[str, Order] = {}
        """The orders sent or being sent, by our order id (what a call needs to name them)."""
        self._by_client: dict[str, str] = {}
        """Client order id -> our order id."""
        self._credentials = credentials
        self._wall_ns = wall_ns
        self._policy = policy
        self._sleep = sleep
        self.failures = 0

    def _backoff(self) -> Backoff:
        return Backoff(self._policy.backoff)

    # -- failures (L4) --------------------------------------------------------------

    def failure(
        self,
        operation: str,
        order_id: str,
        kind: FailureKind,
        message: str,
        *,
        attempt: int = 1,
        http_status: int = 0,
        code: int = 0,
    ) -> VenueFailure:
        """Build, count and log one failure; the caller returns it for persistence."""
        ts = self._wall_ns()
        record = VenueFailure(
            failure_id=failure_id_for(operation, order_id, ts, attempt),
            order_id=order_id,
            operation=operation,
            kind=kind,
            http_status=http_status,
            code=code,
            message=self._credentials.redact(message),
            attempt=attempt,
            ts_event=ts,
        )
        self.failures += 1
        logs.error(
            "venue_failure",
            operation=operation,
            order_id=order_id,
            kind=str(kind),
            http_status=http_status,
            code=code,
            message=record.message,
            attempt=attempt,
        )
        return record

    def _call_failure(
        self, operation: str, order_id: str, exc: VenueCallError, attempt: int = 1
    ) -> VenueFailure:
        return self.failure(
            operation, order_id, exc.kind, exc.message,
            attempt=attempt, http_status=exc.http_status, code=exc.code,
        )  # fmt: skip

    # -- orders ---------------------------------------------------------------------

    def track(self, order: Order) -> None:
        """Map ``order`` (recorded and opened in the book by the core) before ``submit``."""
        if order.mode.lower() != MODE:
            raise ValueError(f"{order.order_id}: a {order.mode!r} order cannot go to a live venue")
        self._orders[order.order_id] = order
        self._by_client[client_order_id(order.order_id)] = order.order_id

    def is_open(self, order_id: str) -> bool:
        """Whether the book holds ``order_id`` as open."""
        return self.book.state_of(order_id) is not None

    def open_order_ids(self) -> list[str]:
        """The open orders of the book that were sent (or are being sent) from here."""
        return [oid for oid in self.book.open_order_ids() if oid in self._orders]

    def _end(self, order_id: str, state: VenueState, reason: str) -> list[Record]:
        """Our own end of an order still SUBMITTED (refused outright, or given up)."""
        report = VenueReport(order_id, state, self._wall_ns(), cum_qty=ZERO, reason=reason)
        out: list[Record] = []
        self._apply(order_id, report, out)
        return out

    def give_up(self, order_id: str, reason: str) -> list[Record]:
        """We stop trying to place an order the venue does not have (DENIED: our side's no)."""
        return self._end(order_id, VenueState.NOT_PLACED, reason)

    async def submit(self, order_id: str) -> list[Record]:
        """Place a tracked order (see module docstring for the retry rules)."""
        order = self._orders[order_id]
        cid = client_order_id(order_id)
        backoff = self._backoff()
        out: list[Record] = []
        last = ""
        for attempt in range(1, self._policy.max_submit_attempts + 1):
            if self.book.state_of(order_id) is not OrderState.SUBMITTED:
                return out  # the stream settled it meanwhile
            try:
                response = await self.rest.new_order(order, cid)
            except VenueCallError as exc:
                out.append(self._call_failure("new_order", order_id, exc, attempt))
                last = f"{exc.kind}: {exc.message}"
                if exc.kind is FailureKind.VENUE_ERROR:
                    if attempt > 1:  # a refused *retry* may mean "already there": look first
                        resolution = await self._resolve(order, cid, out, queries=1)
                        if resolution is Resolution.FOUND:
                            return out
                    reason = f"venue {exc.code}: {exc.message}"
                    out += self._end(order_id, VenueState.REJECTED, reason)
                    return out
                if exc.outcome_unknown:
                    resolution = await self._resolve(order, cid, out)
                    if resolution is Resolution.FOUND:
                        return out
                    if resolution is Resolution.UNKNOWN:
                        out.append(
                            self.failure(
                                "new_order", order_id, FailureKind.TIMEOUT,
                                "outcome unknown and the venue could not be asked: "
                                "left SUBMITTED for reconciliation, not re-sent",
                                attempt=attempt,
                            )
                        )  # fmt: skip
                        return out
                delay = self._delay(exc, backoff)
                if delay is None or attempt == self._policy.max_submit_attempts:
                    break
                await self._sleep(delay)
                continue
            out += await self._book_order(order_id, response)
            return out
        out.append(
            self.failure(
                "new_order", order_id, FailureKind.GAVE_UP,
                f"not placed after {attempt} attempt(s); last: {last}", attempt=attempt,
            )
        )  # fmt: skip
        out += self.give_up(order_id, f"live: not placed ({last})")
        return out

    def _delay(self, exc: VenueCallError, backoff: Backoff) -> float | None:
        """Seconds to wait before the next send, ``None`` to stop trying."""
        if exc.kind in (FailureKind.RATE_LIMITED, FailureKind.BANNED):
            wait = exc.retry_after_s if exc.retry_after_s is not None else backoff.next_delay()
            if wait > self._policy.max_retry_after_s:
                return None
            return wait
        return backoff.next_delay()

    async def _resolve(
        self, order: Order, cid: str, out: list[Record], queries: int | None = None
    ) -> Resolution:
        """Ask the venue whether it has ``cid``; book what it says when it does."""
        backoff = self._backoff()
        answered = False
        total = self._policy.resolve_queries if queries is None else queries
        for attempt in range(1, total + 1):
            try:
                found = await self.rest.query_order(order.symbol, cid)
            except VenueCallError as exc:
                out.append(self._call_failure("query_order", order.order_id, exc, attempt))
            else:
                answered = True
                if found is not None:
                    out += await self._book_order(order.order_id, found)
                    return Resolution.FOUND
            if attempt < total:
                await self._sleep(backoff.next_delay())
        return Resolution.NOT_FOUND if answered else Resolution.UNKNOWN

    async def _book_order(self, order_id: str, order: VenueOrder) -> list[Record]:
        """Book an order response/query, fetching the trades when the venue counted more."""
        out: list[Record] = []
        if self._apply(order_id, report_from_order(order_id, order), out):
            try:
                trades = await self.rest.my_trades(order.symbol, order.orderId)
            except VenueCallError as exc:
                out.append(self._call_failure("my_trades", order_id, exc))
            else:
                self._apply(order_id, report_from_order(order_id, order, trades), out)
        return out

    def _apply(self, order_id: str, report: VenueReport, out: list[Record]) -> bool:
        """Report into the book, into ``out``; return whether the order's trades must be
        fetched."""
        applied = self.book.apply_venue([report])
        out += applied.records
        for message in applied.inconsistent:
            out.append(self.failure("apply_report", order_id, FailureKind.INCONSISTENT, message))
        if applied.unknown:
            out.append(
                self.failure(
                    "apply_report", order_id, FailureKind.INCONSISTENT,
                    f"report for unknown client order id {client_order_id(order_id)}",
                )
            )  # fmt: skip
        for fill_id in applied.unpriced:
            out.append(
                self.failure(
                    "apply_report", order_id, FailureKind.FEE_UNPRICED,
                    f"{fill_id}: commission in an asset without a price; recorded as fee 0",
                )
            )  # fmt: skip
        return applied.needs_trades

    async def cancel(self, order_id: str) -> list[Record]:
        """Cancel the unfilled remainder; a venue that no longer has it open is asked why."""
        order = self._orders[order_id]
        out: list[Record] = []
        try:
            response = await self.rest.cancel_order(order.symbol, client_order_id(order_id))
        except VenueCallError as exc:
            failure = self._call_failure("cancel_order", order_id, exc)
            self.book.apply_venue([failure])  # not confirmed: the core may ask again
            out.append(failure)
            out += await self.refresh(order_id)
            return out
        out += await self._book_order(order_id, response)
        return out

    async def refresh(self, order_id: str) -> list[Record]:
        """Query one order and book whatever the venue knows that we do not."""
        order = self._orders[order_id]
        out: list[Record] = []
        try:
            found = await self.rest.query_order(order.symbol, client_order_id(order_id))
        except VenueCallError as exc:
            out.append(self._call_failure("query_order", order_id, exc))
            return out
        if found is None:
            state = self.book.state_of(order_id)
            if state is OrderState.SUBMITTED:
                out.append(
                    self.failure(
                        "query_order", order_id, FailureKind.GAVE_UP,
                        "the venue has no such order: it was never placed",
                    )
                )  # fmt: skip
                out += self.give_up(order_id, "live: never reached venue")
            else:
                held = "closed" if state is None else str(state)
                out.append(
                    self.failure(
                        "query_order", order_id, FailureKind.INCONSISTENT,
                        f"venue does not know an order we hold as {held}",
                    )
                )  # fmt: skip
            return out
        out += await self._book_order(order_id, found)
        return out

    async def reconcile(self) -> list[Record]:
        """Refresh every open order (after a reconnect or a restart)."""
        out: list[Record] = []
        for order_id in self.open_order_ids():
            out += await self.refresh(order_id)
        return out

    async def on_execution_report(self, report: ExecutionReport) -> list[Record]:
        """Book one user-stream ``executionReport`` (fetching trades if it reveals a gap)."""
        order_id = self._by_client.get(report.our_client_id)
        if order_id is None:
            logs.warning(
                "live_report_ignored",
                client_order_id=report.our_client_id,
                reason="not an order of this engine",
            )
            return []
        out: list[Record] = []
        if self._apply(order_id, report_from_execution(order_id, report), out):
            out += await self.refresh(order_id)
        return out


def check_url(key: str, url: str, schemes: tuple[str, ...]) -> None:
    """Refuse an endpoint no attempt could reach (a wrong scheme, no host, a bad port):
    ``ConfigError`` (exit 12) now, instead of a crash or endless retries later."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError when out of range
    except ValueError as exc:
        raise ConfigError(f"{key}: {url!r} is not a usable URL ({exc})") from None
    if parts.scheme not in schemes or not parts.hostname:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{key}: {url!r} must be a {wanted} URL with a host")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def build_live_execution(
    config: Config,
    client: httpx.AsyncClient,
    environ: Mapping[str, str] = os.environ,
    *,
    book: VenueBook,
    credentials: Credentials | None = None,
) -> BinanceExecution:
    """The LIVE adapter for ``config``, reporting into ``book`` (credentials loaded and
    checked here: ConfigError/12, unless already loaded ones are passed).

    Call only after ``engine.proof.gate.enforce`` passed.
    """
    check_url("live.rest_url", config.live.rest_url, ("http", "https"))
    check_url("live.ws_url", config.live.ws_url, ("ws", "wss"))
    if credentials is None:
        credentials = load_credentials(config.live.credentials_file, environ)
        logs.info("live_credentials_loaded", source=credentials.source)
    rest = BinanceRest(
        base_url=config.live.rest_url, credentials=credentials, client=client, wall_ms=wall_ms
    )
    return BinanceExecution(rest=rest, credentials=credentials, book=book)
