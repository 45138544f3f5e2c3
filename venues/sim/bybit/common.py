"""Helpers of the Bybit dialect's handlers: the retCode envelope, JSON bodies, parameters,
categories, symbols, cursors and the rendering of core records in Bybit's shapes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import Any

from aiohttp import web

from ..records import Order, SymbolSpec, fmt
from ..venue import Sim
from .errors import envelope, not_supported_symbols, params_error, symbol_invalid

D = Decimal
AUTO_LINK = "~"  # internal client ids of orders sent without orderLinkId start with it (rendered "")

#: core order status → Bybit orderStatus (EXPIRED: what an IOC / market remainder becomes)
STATUS = {"NEW": "New", "PARTIALLY_FILLED": "PartiallyFilled", "FILLED": "Filled", "CANCELED": "Cancelled"}
SIDE = {"BUY": "Buy", "SELL": "Sell"}
TIF = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "GTX": "PostOnly", "ALO": "PostOnly"}
#: Binance contract status (the symbol_status fault) → Bybit instrument status
INSTRUMENT_STATUS = {"TRADING": "Trading", "PENDING_TRADING": "PreLaunch", "PRE_DELIVERING": "Delivering",
                     "DELIVERING": "Delivering", "PRE_SETTLE": "Delivering", "SETTLING": "Delivering",
                     "DELIVERED": "Closed", "CLOSE": "Closed", "BREAK": "Closed"}


def ok(fn: Callable[[Sim, web.Request, dict], Awaitable[Any]]):
    """Wrap a handler's result in Bybit's success envelope."""

    @wraps(fn)
    async def handler(sim: Sim, request: web.Request, p: dict):
        result = await fn(sim, request, p)
        return envelope(0, "OK", sim.now_ms(), result)

    return handler


def body_params(fn):
    """Merge the JSON body of a POST into the parameters (values as strings, booleans kept)."""

    @wraps(fn)
    async def handler(sim: Sim, request: web.Request, p: dict):
        text = (await request.read()).decode("utf-8", "replace")
        if text.strip():
            try:
                data = json.loads(text)
            except ValueError:
                raise params_error("request body is not valid JSON") from None
            if not isinstance(data, dict):
                raise params_error("request body must be a JSON object")
            for k, v in data.items():
                p[k] = v if isinstance(v, bool) or v is None else str(v)
        return await fn(sim, request, p)

    return handler


def text(p: dict, name: str) -> str:
    v = p.get(name)
    return "" if v is None else str(v)


def flag(p: dict, name: str) -> bool:
    v = p.get(name)
    return v is True or str(v).lower() == "true" or str(v) == "1"


def dec(p: dict, name: str, required: bool = True) -> Decimal | None:
    v = text(p, name)
    if not v:
        if required:
            raise params_error(f"{name} is required")
        return None
    try:
        d = D(v)
    except InvalidOperation:
        raise params_error(f"{name} invalid") from None
    if not d.is_finite():
        raise params_error(f"{name} invalid")
    return d


def integer(p: dict, name: str, default: int | None = None) -> int | None:
    v = text(p, name)
    if not v:
        return default
    try:
        return int(v)
    except ValueError:
        raise params_error(f"{name} invalid") from None


def category(p: dict, allowed: tuple[str, ...] = ("linear",)) -> str:
    c = text(p, "category")
    if not c:
        raise params_error("category is null")
    if c not in ("linear", "inverse", "spot", "option"):
        raise params_error("category invalid")
    if c not in allowed:
        raise params_error(f"category only support {', '.join(allowed)}")
    return c


def spec(sim: Sim, p: dict, *, market_data: bool = False) -> SymbolSpec:
    """The symbol of the request (Bybit: BTCUSDT); market-data endpoints answer an unknown one
    with "Not supported symbols", trading endpoints with "params error: symbol invalid"."""
    sym = text(p, "symbol")
    if not sym:
        raise params_error("symbol is required")
    s = sim.market.specs.get(sym)
    if s is None:
        raise not_supported_symbols() if market_data else symbol_invalid()
    return s


def page(rows: list, p: dict, default: int, maximum: int) -> tuple[list, str]:
    """One page of ``rows`` per ``limit`` and ``cursor`` (an offset); (page, nextPageCursor)."""
    limit = integer(p, "limit", default) or default
    if not 1 <= limit <= maximum:
        raise params_error(f"limit must be in [1, {maximum}]")
    start = integer(p, "cursor", 0) if text(p, "cursor").isdigit() else 0
    chunk = rows[start:start + limit]
    nxt = str(start + limit) if start + limit < len(rows) else ""
    return chunk, nxt


def link_id(o: Order) -> str:
    return "" if o.client_order_id.startswith(AUTO_LINK) else o.client_order_id


def order_status(o: Order) -> str:
    if o.status == "EXPIRED":
        return "PartiallyFilledCanceled" if o.executed_qty else "Cancelled"
    return STATUS.get(o.status, o.status)


def _killed(o: Order) -> bool:
    """A post-only order cancelled on arrival because it would have taken liquidity."""
    return o.status == "EXPIRED" and o.post_only and not o.executed_qty


def _cancel_type(o: Order) -> str:
    if o.status == "CANCELED":
        return "CancelByUser"
    if o.status == "EXPIRED" and o.reduce_only and o.type == "LIMIT" and o.time_in_force not in ("IOC", "FOK"):
        return "CancelByReduceOnly"  # its position is gone
    return "UNKNOWN"


def _reject_reason(o: Order) -> str:
    if _killed(o):
        return "EC_PostOnlyWillTakeLiquidity"
    return "EC_NoError"


def order_json(sim: Sim, o: Order) -> dict:
    """An order as ``/v5/order/realtime`` and ``/v5/order/history`` list it."""
    fee = sum((t.commission for t in sim.engine.trades if t.order_id == o.order_id), D(0))
    leaves = o.orig_qty - o.executed_qty if o.is_open else D(0)
    avg = o.avg_price
    return {
        "orderId": str(o.order_id), "orderLinkId": link_id(o), "blockTradeId": "", "symbol": o.symbol,
        "price": fmt(o.price) if o.type == "LIMIT" else "0", "qty": fmt(o.orig_qty), "side": SIDE.get(o.side, o.side),
        "isLeverage": "", "positionIdx": 0, "orderStatus": order_status(o),
        "createType": "CreateByUser" if not o.client_order_id.startswith("autoclose-") else "CreateByLiq",
        "cancelType": _cancel_type(o), "rejectReason": _reject_reason(o),
        "avgPrice": fmt(avg.quantize(D("1e-8"))) if avg else "", "leavesQty": fmt(leaves),
        "leavesValue": fmt(leaves * o.price) if o.type == "LIMIT" else "0",
        "cumExecQty": fmt(o.executed_qty), "cumExecValue": fmt(o.cum_quote), "cumExecFee": fmt(fee),
        "timeInForce": TIF.get(o.time_in_force, o.time_in_force) if o.type == "LIMIT" else "IOC",
        "orderType": "Market" if o.type == "MARKET" else "Limit", "stopOrderType": "", "orderIv": "",
        "marketUnit": "", "triggerPrice": "", "takeProfit": "", "stopLoss": "", "tpslMode": "",
        "ocoTriggerBy": "", "tpLimitPrice": "", "slLimitPrice": "", "tpTriggerBy": "", "slTriggerBy": "",
        "triggerDirection": 0, "triggerBy": "", "lastPriceOnCreated": "", "basePrice": "",
        "reduceOnly": o.reduce_only, "closeOnTrigger": False, "placeType": "", "smpType": "None", "smpGroup": 0,
        "smpOrderId": "", "createdTime": str(o.time), "updatedTime": str(o.update_time),
        "cumFeeDetail": {"USDT": fmt(fee)} if o.executed_qty else {},
    }
