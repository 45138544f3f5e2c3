"""Signed trade handlers of the OKX dialect: place one order (``/trade/order``) or a batch
(``/trade/batch-orders``, what ccxt uses by default), order details by ``ordId`` or
``clOrdId``, cancel (one or a batch), pending orders, order history, fills
(``/trade/fills`` and ``/trade/fills-history``).

Sizes are contracts (``sz`` × ctVal = the core's base quantity). A refused order is answered
as OKX does: HTTP 200, top-level ``code`` "1" and the reason in ``data[i].sCode`` / ``sMsg``.
New orders honour the core's order faults exactly as the Binance dialect does
(``reject_orders``, ``drop_responses``: executed, answered 503 / 50004; ``execute_late_ms``;
``symbol_status``); look-ups honour ``lookup_errors``. ``ordType`` limit rests and fills later as a
maker; post_only that would take liquidity is placed (sCode 0) and canceled at once (state
canceled, cancelSource 31), as OKX does; ioc fills what the book has within its price. Fills carry
``execType`` T (taker) / M (maker)."""

from __future__ import annotations

import secrets
from decimal import Decimal

from aiohttp import web

from ..api_orders import _accept_late, _execute, check_symbol_status
from ..errors import SimError, err_dropped
from ..records import Order, OrderRequest
from ..venue import Sim
from ..wire import ARRIVED_NS
from .auth import okx_code, timestamp_ms
from .wire import (
    CLIENT_ID_RE,
    INST_TYPE,
    INTERNAL_CID,
    STATES,
    OkxError,
    boolean,
    ct_val,
    dec,
    err_empty,
    err_param,
    fill_json,
    inst_filter,
    integer,
    ord_type,
    order_json,
    page,
    shown_cid,
    spec_of,
)

D = Decimal
MAX_BATCH = 20
#: ordType → (core type, time in force)
ORD_TYPES = {"market": ("MARKET", "GTC"), "optimal_limit_ioc": ("MARKET", "GTC"), "limit": ("LIMIT", "GTC"),
             "ioc": ("LIMIT", "IOC"), "fok": ("LIMIT", "FOK"), "post_only": ("LIMIT", "GTX")}


def _passes(e: SimError) -> bool:
    """Errors that are not one order's refusal but the whole request's answer."""
    return e.status >= 500 or e.status == 429


def _envelope(rows: list[dict]) -> dict:
    failed = sum(1 for r in rows if r["sCode"] != "0")
    if not failed:
        return {"code": "0", "msg": "", "data": rows}
    if failed == len(rows):
        return {"code": "1", "msg": "All operations failed", "data": rows}
    return {"code": "2", "msg": "Batch operation partially succeeded", "data": rows}


def _row(o: dict, now: int, e: SimError | None = None, order: Order | None = None) -> dict:
    code, msg = okx_code(e) if e is not None else ("0", "Order placed")
    cid = shown_cid(order.client_order_id) if order is not None else str(o.get("clOrdId") or "")
    return {"ordId": str(order.order_id) if order is not None else "", "clOrdId": cid, "tag": str(o.get("tag") or ""),
            "ts": str(now), "sCode": code, "sMsg": msg}


class _Drop:
    """Whether this request's answer is dropped: decided (and the ``drop_responses`` fault
    consumed) once, when its first order has passed the symbol and ``reject_orders`` checks,
    where the Binance dialect decides it."""

    def __init__(self, sim: Sim) -> None:
        self.sim, self.drop = sim, None

    def decide(self) -> bool:
        if self.drop is None:
            f = self.sim.faults
            self.drop = f.drop_responses > 0
            if self.drop:
                f.drop_responses -= 1
        return self.drop


def _request(sim: Sim, request: web.Request, o: dict, drop: _Drop) -> tuple[OrderRequest, object]:
    if not isinstance(o, dict):
        raise OkxError("50002", "Json data format error")
    s = spec_of(sim, o.get("instId"))
    f = sim.faults
    if f.reject_orders > 0:
        f.reject_orders -= 1
        raise SimError(-2010, "New order rejected (simulated fault).")
    drop.decide()
    side = str(o.get("side") or "")
    if not side:
        raise err_empty("side")
    if side not in ("buy", "sell"):
        raise err_param("side")
    typ = str(o.get("ordType") or "")
    if not typ:
        raise err_empty("ordType")
    if typ not in ORD_TYPES:
        raise OkxError("51000", f"Parameter ordType error (the simulated venue takes {', '.join(ORD_TYPES)})")
    core_type, tif = ORD_TYPES[typ]
    td = o.get("tdMode")
    if not td:
        raise err_empty("tdMode")
    if td != ("isolated" if sim.engine.is_isolated(s.id) else "cross"):
        raise err_param("tdMode")
    if (o.get("posSide") or "net") != "net":
        raise err_param("posSide")  # net_mode account
    sz = dec(o, "sz")
    cv = ct_val(sim, s)
    if sz <= 0:
        raise err_param("sz")
    if sz % (s.step / cv) != 0:
        raise OkxError("51121", f"Order quantity must be a multiple of the lot size ({s.step / cv:f}).")
    if sz < s.min_qty / cv:
        raise OkxError("51020", "Your order should meet or exceed the minimum order amount.")
    price = None
    if core_type == "LIMIT":
        price = dec(o, "px")
        if price <= 0 or price % s.tick != 0:
            raise err_param("px")
    cid = str(o.get("clOrdId") or "")
    if cid and not CLIENT_ID_RE.match(cid):
        raise err_param("clOrdId")
    cid = cid or INTERNAL_CID + secrets.token_hex(8)
    req = OrderRequest(s.id, side.upper(), core_type, sz * cv, cid, boolean(o.get("reduceOnly")), price, tif,
                       request[ARRIVED_NS])
    check_symbol_status(sim, s, req.reduce_only)
    return req, s


def _place(sim: Sim, request: web.Request, o: dict, drop: _Drop) -> Order:
    req, s = _request(sim, request, o, drop)
    delay = sim.faults.execute_late_ms
    if delay > 0:
        ts = timestamp_ms(request) or sim.now_ms()
        return _accept_late(sim, req, s, {"timestamp": str(ts), "recvWindow": "30000"}, delay,
                            visible=not drop.decide(), keep_killed=True)
    return _execute(sim, req, s, keep_killed=True)


async def _orders(sim: Sim, request: web.Request, items: list) -> dict:
    drop = _Drop(sim)
    rows = []
    for o in items:
        try:
            order = _place(sim, request, o, drop)
            rows.append(_row(o, sim.now_ms(), order=order))
        except SimError as e:
            if _passes(e) and not drop.drop:
                raise
            rows.append(_row(o if isinstance(o, dict) else {}, sim.now_ms(), e))
    if drop.drop:
        raise err_dropped()
    return _envelope(rows)


async def place_order(sim: Sim, request: web.Request, p: dict):
    return await _orders(sim, request, [p])


async def batch_orders(sim: Sim, request: web.Request, p: dict):
    items = p.get("_items")
    if not isinstance(items, list) or not items:
        raise OkxError("50000", "Body can not be empty.")
    if len(items) > MAX_BATCH:
        raise OkxError("51111", f"Maximum {MAX_BATCH} orders can be placed in bulk.")
    return await _orders(sim, request, items)


def _lookup_fault(sim: Sim) -> None:
    if sim.faults.lookup_errors > 0:
        sim.faults.lookup_errors -= 1
        raise SimError(-1001, "Internal error; unable to process your request. Please try again.", 500)


def _find(sim: Sim, p: dict) -> Order:
    s = spec_of(sim, p.get("instId"))
    oid = integer(p, "ordId")
    cid = str(p.get("clOrdId") or "")
    if oid is None and not cid:
        raise OkxError("51003", "Either client order ID or order ID is required.")
    if oid is None and not CLIENT_ID_RE.match(cid):
        raise SimError(-2013, "Order does not exist.")
    return sim.engine.find_order(s.id, oid, cid or None)


async def get_order(sim: Sim, request: web.Request, p: dict):
    _lookup_fault(sim)
    return [order_json(sim, _find(sim, p))]


def _cancel_one(sim: Sim, o: dict) -> dict:
    now = sim.now_ms()
    try:
        if not isinstance(o, dict):
            raise OkxError("50002", "Json data format error")
        try:
            order = _find(sim, o)
        except SimError as e:
            if e.code == -2013:
                raise OkxError("51400", "Order cancellation failed as the order has been filled, canceled or does "
                                        "not exist.") from None
            raise
        if order.status in ("CANCELED", "EXPIRED"):
            raise OkxError("51401", "Order cancellation failed as the order has been canceled.")
        if not order.is_open:
            raise OkxError("51402", "Order cancellation failed as the order has been completed.")
        sim.persist(sim.engine.cancel(order, now))
        return {"ordId": str(order.order_id), "clOrdId": shown_cid(order.client_order_id), "ts": str(now),
                "sCode": "0", "sMsg": ""}
    except SimError as e:
        if _passes(e):
            raise
        code, msg = okx_code(e)
        o = o if isinstance(o, dict) else {}
        return {"ordId": str(o.get("ordId") or ""), "clOrdId": str(o.get("clOrdId") or ""), "ts": str(now),
                "sCode": code, "sMsg": msg}


async def cancel_order(sim: Sim, request: web.Request, p: dict):
    return _envelope([_cancel_one(sim, p)])


async def cancel_batch(sim: Sim, request: web.Request, p: dict):
    items = p.get("_items")
    if not isinstance(items, list) or not items:
        raise OkxError("50000", "Body can not be empty.")
    if len(items) > MAX_BATCH:
        raise OkxError("51111", f"Maximum {MAX_BATCH} orders can be canceled in bulk.")
    return _envelope([_cancel_one(sim, o) for o in items])


def _swap(p: dict, required: bool) -> bool:
    t = p.get("instType")
    if not t:
        if required:
            raise err_empty("instType")
        return True
    return str(t).upper() == INST_TYPE


def _orders_where(sim: Sim, p: dict, open_: bool) -> list[dict]:
    specs = inst_filter(sim, p)
    ids = {s.id for s in specs} if specs is not None else None
    rows = [o for o in sim.engine.orders.values() if o.is_open == open_ and o.symbol in sim.market.specs
            and (ids is None or o.symbol in ids) and (not p.get("ordType") or ord_type(o) == p["ordType"])
            and (not p.get("state") or STATES.get(o.status) == p["state"])]
    rows.sort(key=lambda o: o.order_id, reverse=True)
    return [order_json(sim, o) for o in page(rows, lambda o: (o.order_id, o.time), p)]


async def orders_pending(sim: Sim, request: web.Request, p: dict):
    _lookup_fault(sim)
    return _orders_where(sim, p, True) if _swap(p, False) else []


async def orders_history(sim: Sim, request: web.Request, p: dict):
    _lookup_fault(sim)
    return _orders_where(sim, p, False) if _swap(p, True) else []


async def _fills(sim: Sim, p: dict, type_required: bool):
    if not _swap(p, type_required):
        return []
    specs = inst_filter(sim, p)
    ids = {s.id for s in specs} if specs is not None else None
    oid = integer(p, "ordId")
    rows = [t for t in reversed(sim.engine.trades) if t.symbol in sim.market.specs
            and (ids is None or t.symbol in ids) and (oid is None or t.order_id == oid)]
    return [fill_json(sim, t) for t in page(rows, lambda t: (t.id, t.time), p)]


async def fills(sim: Sim, request: web.Request, p: dict):
    return await _fills(sim, p, False)


async def fills_history(sim: Sim, request: web.Request, p: dict):
    return await _fills(sim, p, True)
