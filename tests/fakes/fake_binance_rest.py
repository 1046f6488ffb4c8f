"""A fake Binance spot venue on 127.0.0.1: signed REST orders and the WebSocket-API user stream.

Nothing here talks to a real exchange. The fake is deliberately independent of
the engine's own signing code (it recomputes HMACs with ``hmac`` directly), so a
signing bug in the engine fails the tests instead of agreeing with itself.

REST (a minimal HTTP/1.1 server on ``h11`` + Trio, so a test can make it hang
or drop a connection at will):

* ``POST /api/v3/order`` -- what happens next is the next entry of
  ``new_order_plan`` (default ACCEPT): ACCEPT (rests as NEW), FILL (one trade),
  PARTIAL (one trade of half, then rests), REJECT (400 ``-2010``),
  TIMEOUT_THEN_FILLED (the order is placed and filled, the response never
  comes), DROP (the connection closes before the order is placed),
  SERVER_ERROR (503 and *not* placed). A client id already open is refused
  with ``-2010 Duplicate order sent.``, as Binance does.
* ``GET /api/v3/order`` (``-2013`` when unknown), ``DELETE /api/v3/order``
  (``-2011`` when not open), ``GET /api/v3/myTrades``.
* ``rate_limit_next`` / ``ban_next``: the next N signed requests get 429 / 418
  with ``Retry-After``. Bad signature: ``-1022``; bad key: ``-2015``;
  timestamp outside ``recvWindow``: ``-1021``.

WebSocket API (``trio-websocket``): ``userDataStream.subscribe.signature`` is
verified and answered with a ``subscriptionId``; afterwards every order change
is pushed as an ``executionReport`` event to each subscribed connection --
events while nobody is subscribed are lost, as on the real venue.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import json
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import h11
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

API_KEY = "fake-api-key-0123456789"
API_SECRET = "fake-secret-DO-NOT-LEAK-abcdef987654"
FILL_PRICE = Decimal("50000.00")
COMMISSION_RATE = Decimal("0.001")
OUTBOX_SIZE = 10_000
"""Stream events queued for the pump; a test pushing more than this is broken (raises)."""


class Behaviour(enum.Enum):
    ACCEPT = "accept"
    FILL = "fill"
    PARTIAL = "partial"
    REJECT = "reject"
    TIMEOUT_THEN_FILLED = "timeout_then_filled"
    DROP = "drop"
    SERVER_ERROR = "server_error"


_HANG = object()
_DROP = object()


@dataclass
class FakeTrade:
    trade_id: int
    qty: Decimal
    price: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int


@dataclass
class FakeOrder:
    order_id: int
    client_id: str
    symbol: str
    side: str
    type: str
    qty: Decimal
    price: Decimal
    status: str = "NEW"
    trades: list[FakeTrade] = field(default_factory=list)
    time_ms: int = 0

    @property
    def executed(self) -> Decimal:
        return sum((t.qty for t in self.trades), Decimal(0))

    @property
    def quote(self) -> Decimal:
        return sum((t.qty * t.price for t in self.trades), Decimal(0))

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass
class SeenRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    raw_target: str


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _dec(value: Decimal) -> str:
    return format(value, "f")


class FakeBinance:
    """The fake venue's state and behaviour (see module docstring)."""

    def __init__(self, *, api_key: str = API_KEY, secret: str = API_SECRET) -> None:
        self.api_key = api_key
        self.secret = secret.encode()
        self.new_order_plan: deque[Behaviour] = deque()
        self.rate_limit_next = 0
        self.ban_next = 0
        self.retry_after_s = "0"
        self.commission_asset = "USDT"
        self.orders: dict[str, FakeOrder] = {}
        self.requests: list[SeenRequest] = []
        self.raw_responses: deque[tuple[int, bytes]] = deque()
        """Answer the next signed requests with these (status, body bytes), verbatim."""
        self.stream_messages: list[dict[str, Any]] = []
        self._next_order_id = 1000
        self._next_trade_id = 5000
        self._subscribers: list[WebSocketConnection] = []
        self._subscription_id = 0
        self.rest_port = 0
        self.ws_port = 0
        self.subscribed = trio.Event()
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[
            tuple[list[WebSocketConnection], str]
        ](OUTBOX_SIZE)

    # ------------------------------------------------------------------ serving

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws-api/v3"

    async def serve(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(
            partial(trio.serve_tcp, host="127.0.0.1"), self._serve_http, 0
        )
        self.rest_port = listeners[0].socket.getsockname()[1]
        server = await nursery.start(serve_websocket, self._serve_ws, "127.0.0.1", 0, None)
        self.ws_port = server.port
        nursery.start_soon(self._pump)

    def new_order_posts(self) -> list[SeenRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/api/v3/order"]

    # ------------------------------------------------------------------ HTTP

    async def _serve_http(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                        return
                assert request is not None
                result = self._handle(request)
                if result is _HANG:  # hold the request until the client gives up
                    while await stream.receive_some(65536):
                        pass
                    return
                if result is _DROP:
                    return
                status, payload, extra = result  # type: ignore[misc]
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
                headers += extra
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
                await stream.send_all(conn.send(h11.Data(data=body)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await stream.aclose()

    def _handle(self, request: h11.Request) -> object:
        target = request.target.decode()
        path, _, query = target.partition("?")
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        signed, sep, signature = query.rpartition("&signature=")
        params = dict(urllib.parse.parse_qsl(signed if sep else query))
        method = request.method.decode()
        self.requests.append(SeenRequest(method, path, params, headers, target))
        if headers.get("x-mbx-apikey") != self.api_key:
            return (
                401,
                {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
                [],
            )
        expected = hmac.new(self.secret, signed.encode(), hashlib.sha256).hexdigest()
        if not sep or not hmac.compare_digest(expected, signature):
            return 400, {"code": -1022, "msg": "Signature for this request is not valid."}, []
        window = int(params.get("recvWindow", "5000"))
        if abs(_now_ms() - int(params.get("timestamp", "0"))) > window:
            return (
                400,
                {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
                [],
            )
        if self.raw_responses:
            return (*self.raw_responses.popleft(), [])
        if self.ban_next:
            self.ban_next -= 1
            return (
                418,
                {"code": -1003, "msg": "Way too many requests; IP banned."},
                [("Retry-After", self.retry_after_s)],
            )
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            return (
                429,
                {"code": -1003, "msg": "Too many requests."},
                [("Retry-After", self.retry_after_s)],
            )
        if path == "/api/v3/order" and method == "POST":
            return self._new_order(params)
        if path == "/api/v3/order" and method == "GET":
            order = self.orders.get(params.get("origClientOrderId", ""))
            if order is None:
                return 400, {"code": -2013, "msg": "Order does not exist."}, []
            return 200, self._order_json(order), []
        if path == "/api/v3/order" and method == "DELETE":
            return self._cancel(params)
        if path == "/api/v3/myTrades" and method == "GET":
            wanted = int(params["orderId"])
            trades = [
                self._trade_json(o, t)
                for o in self.orders.values()
                if o.order_id == wanted
                for t in o.trades
            ]
            return 200, trades, []
        return 404, {"code": -1100, "msg": f"no such endpoint {method} {path}"}, []

    def _new_order(self, params: dict[str, str]) -> object:
        behaviour = self.new_order_plan.popleft() if self.new_order_plan else Behaviour.ACCEPT
        if behaviour is Behaviour.DROP:
            return _DROP
        if behaviour is Behaviour.SERVER_ERROR:
            return 503, {"code": -1000, "msg": "An unknown error occurred."}, []
        if behaviour is Behaviour.REJECT:
            return (
                400,
                {"code": -2010, "msg": "Account has insufficient balance for requested action."},
                [],
            )
        client_id = params["newClientOrderId"]
        existing = self.orders.get(client_id)
        if existing is not None and existing.is_open:
            return 400, {"code": -2010, "msg": "Duplicate order sent."}, []
        self._next_order_id += 1
        order = FakeOrder(
            order_id=self._next_order_id,
            client_id=client_id,
            symbol=params["symbol"],
            side=params["side"],
            type=params["type"],
            qty=Decimal(params["quantity"]),
            price=Decimal(params.get("price", "0")),
            time_ms=_now_ms(),
        )
        self.orders[client_id] = order
        self._push(order, "NEW")
        if behaviour in (Behaviour.FILL, Behaviour.TIMEOUT_THEN_FILLED):
            self.trade(client_id, order.qty)
        elif behaviour is Behaviour.PARTIAL:
            self.trade(client_id, order.qty / 2)
        if behaviour is Behaviour.TIMEOUT_THEN_FILLED:
            return _HANG
        return 200, self._order_json(order, full=True), []

    def _cancel(self, params: dict[str, str]) -> object:
        order = self.orders.get(params.get("origClientOrderId", ""))
        if order is None or not order.is_open:
            return 400, {"code": -2011, "msg": "Unknown order sent."}, []
        order.status = "CANCELED"
        self._push(order, "CANCELED", cancel_id="cancel-" + order.client_id[:20])
        body = self._order_json(order)
        body["origClientOrderId"] = order.client_id
        body["clientOrderId"] = "cancel-" + order.client_id[:20]
        return 200, body, []

    # ------------------------------------------------------------------ venue actions

    def trade(self, client_id: str, qty: Decimal, price: Decimal = FILL_PRICE) -> FakeTrade:
        """Execute ``qty`` of an open order (a test may call this to fill a resting order)."""
        order = self.orders[client_id]
        assert order.is_open and qty <= order.qty - order.executed
        self._next_trade_id += 1
        commission = qty * price * COMMISSION_RATE
        if self.commission_asset == "BTC":
            commission = qty * COMMISSION_RATE
        elif self.commission_asset == "BNB":
            commission = Decimal("0.0001")
        trade = FakeTrade(
            self._next_trade_id, qty, price, commission, self.commission_asset, _now_ms()
        )
        order.trades.append(trade)
        order.status = "FILLED" if order.executed == order.qty else "PARTIALLY_FILLED"
        self._push(order, "TRADE", trade=trade)
        return trade

    def _push(
        self,
        order: FakeOrder,
        exec_type: str,
        *,
        trade: FakeTrade | None = None,
        cancel_id: str = "",
    ) -> None:
        event = {
            "e": "executionReport",
            "E": _now_ms(),
            "s": order.symbol,
            "c": cancel_id or order.client_id,
            "S": order.side,
            "o": order.type,
            "f": "GTC",
            "q": _dec(order.qty),
            "p": _dec(order.price),
            "x": exec_type,
            "X": order.status,
            "r": "NONE",
            "i": order.order_id,
            "l": _dec(trade.qty) if trade else "0.00000000",
            "z": _dec(order.executed),
            "L": _dec(trade.price) if trade else "0.00000000",
            "n": _dec(trade.commission) if trade else "0",
            "N": trade.commission_asset if trade else None,
            "T": trade.time_ms if trade else _now_ms(),
            "t": trade.trade_id if trade else -1,
            "C": order.client_id if cancel_id else "",
        }
        message = {"subscriptionId": self._subscription_id, "event": event}
        self.stream_messages.append(message)
        # Sending is async: the pump task delivers to whoever is subscribed *now*.
        self._outbox_send.send_nowait((list(self._subscribers), json.dumps(message)))

    def push_raw(self, text: str | bytes) -> None:
        """Send one frame, verbatim, to every current subscriber (malformed-input tests)."""
        self._outbox_send.send_nowait((list(self._subscribers), text))  # type: ignore[arg-type]

    async def _pump(self) -> None:
        async for targets, text in self._outbox_receive:
            for ws in targets:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send_message(text)

    # ------------------------------------------------------------------ JSON shapes

    def _order_json(self, order: FakeOrder, *, full: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "symbol": order.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_id,
            "price": _dec(order.price),
            "origQty": _dec(order.qty),
            "executedQty": _dec(order.executed),
            "cummulativeQuoteQty": _dec(order.quote),
            "status": order.status,
            "timeInForce": "GTC",
            "type": order.type,
            "side": order.side,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if full:
            body["transactTime"] = order.time_ms
            body["workingTime"] = order.time_ms
            body["fills"] = [
                {
                    "price": _dec(t.price),
                    "qty": _dec(t.qty),
                    "commission": _dec(t.commission),
                    "commissionAsset": t.commission_asset,
                    "tradeId": t.trade_id,
                }
                for t in order.trades
            ]
        else:
            body["time"] = order.time_ms
            body["updateTime"] = _now_ms()
        return body

    def _trade_json(self, order: FakeOrder, t: FakeTrade) -> dict[str, Any]:
        return {
            "symbol": order.symbol,
            "id": t.trade_id,
            "orderId": order.order_id,
            "orderListId": -1,
            "price": _dec(t.price),
            "qty": _dec(t.qty),
            "quoteQty": _dec(t.qty * t.price),
            "commission": _dec(t.commission),
            "commissionAsset": t.commission_asset,
            "time": t.time_ms,
            "isBuyer": order.side == "BUY",
            "isMaker": False,
            "isBestMatch": True,
        }

    # ------------------------------------------------------------------ WebSocket API

    async def _serve_ws(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                raw = await ws.get_message()
                message = json.loads(raw)
                reply = self._ws_request(ws, message)
                await ws.send_message(json.dumps(reply))
                if reply.get("status") == 200 and ws not in self._subscribers:
                    self._subscribers.append(ws)
                    self.subscribed.set()
        except ConnectionClosed:
            pass
        finally:
            if ws in self._subscribers:
                self._subscribers.remove(ws)

    def _ws_request(self, ws: WebSocketConnection, message: dict[str, Any]) -> dict[str, Any]:
        rid = message.get("id")
        if message.get("method") != "userDataStream.subscribe.signature":
            return {"id": rid, "status": 400, "error": {"code": -1100, "msg": "unknown method"}}
        params = dict(message.get("params", {}))
        signature = str(params.pop("signature", ""))
        if params.get("apiKey") != self.api_key:
            return {"id": rid, "status": 401, "error": {"code": -2015, "msg": "Invalid API-key"}}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        expected = hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return {"id": rid, "status": 400, "error": {"code": -1022, "msg": "Signature invalid"}}
        self._subscription_id += 1
        return {"id": rid, "status": 200, "result": {"subscriptionId": self._subscription_id}}

    async def drop_stream(self) -> None:
        """Close every user-stream connection from the server side (the client must reconnect)."""
        self.subscribed = trio.Event()
        for ws in list(self._subscribers):
            self._subscribers.remove(ws)
            await ws.aclose()
