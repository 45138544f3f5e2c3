"""Signed order and history handlers of the Binance USD-M dialect: new/query/cancel orders,
open and all orders, user trades (``maker``: the fill of a resting order), income. LIMIT orders
take ``timeInForce`` GTC (rests, fills later as a maker), IOC, FOK and GTX (post-only: one that
would take liquidity is refused -5022 and not recorded, as Binance has done since 2023-03-22).
New orders honour the order faults
(``execute_late_ms``: accepted now, matched later) and, when accepted and when matched, the
``symbol_status`` fault; look-ups honour the ``lookup_errors`` fault."""

from __future__ import annotations

import asyncio
import re
import secrets
from decimal import Decimal

from aiohttp import web

from .errors import SimError, err_dropped
from .records import Mutation, Order, OrderRequest, SymbolSpec
from .venue import Sim
from .wire import ARRIVED_NS, param_bool, param_dec, param_int

D = Decimal


CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
CLOSED_STATUSES = ("CLOSE", "DELIVERED")


def check_symbol_status(sim: Sim, s: SymbolSpec, reduce_only: bool) -> None:
    """Binance USD-M: a closed symbol refuses every order (-4141); any other status than
    TRADING refuses orders that may open a position (-4140), reduce-only orders still pass."""
    st = sim.faults.status(s.symbol)
    if st == "TRADING":
        return
    if st in CLOSED_STATUSES:
        raise SimError(-4141, "Symbol is closed.")
    if not reduce_only:
        raise SimError(-4140, "Invalid symbol status for opening position.")


def _lookup_fault(sim: Sim) -> None:
    if sim.faults.lookup_errors > 0:
        sim.faults.lookup_errors -= 1
        raise SimError(-1001, "Internal error; unable to process your request. Please try again.", 500)


async def new_order(sim: Sim, request: web.Request, p: dict):
    arrived = request[ARRIVED_NS]
    f = sim.faults
    drop = False
    resp_type = str(p.get("newOrderRespType") or "ACK").upper()
    try:
        s = sim.spec(p.get("symbol"))
        if f.reject_orders > 0:
            f.reject_orders -= 1
            raise SimError(-2010, "New order rejected (simulated fault).")
        if f.drop_responses > 0:
            f.drop_responses -= 1
            drop = True
        side = str(p.get("side", "")).upper()
        typ = str(p.get("type", "")).upper()
        if typ not in ("MARKET", "LIMIT"):
            raise SimError(-1116, "Invalid orderType.")
        ps = str(p.get("positionSide") or "BOTH").upper()
        if ps != "BOTH":
            raise SimError(-4061, "Order's position side does not match user's setting.")
        if param_bool(p.get("closePosition")):
            raise SimError(-1106, "Parameter 'closePosition' sent when not required.")
        qty = param_dec(p, "quantity")
        cid = p.get("newClientOrderId") or ("web_" + secrets.token_urlsafe(15).replace("-", "_"))[:22]
        if not CLIENT_ID_RE.match(cid):
            raise SimError(-4015, "Client order id is not valid.")
        price = param_dec(p, "price") if typ == "LIMIT" else None
        tif = str(p.get("timeInForce") or "GTC").upper()
        if typ == "LIMIT" and tif not in ("GTC", "IOC", "FOK", "GTX"):
            raise SimError(-1115, "Invalid timeInForce.")
        req = OrderRequest(s.id, side, typ, qty, cid, param_bool(p.get("reduceOnly")), price, tif, arrived)
        check_symbol_status(sim, s, req.reduce_only)
        if f.execute_late_ms > 0:
            order = _accept_late(sim, req, s, p, f.execute_late_ms, visible=not drop)
        else:
            order = _execute(sim, req, s)
    except SimError as e:
        if drop:
            raise err_dropped() from e
        raise
    if drop:
        raise err_dropped()
    body = order.to_binance(s)
    if resp_type == "ACK":
        body.update(status="NEW", executedQty="0", cumQty="0", cumQuote="0", avgPrice="0.00")
    return body


def _execute(sim: Sim, req: OrderRequest, s: SymbolSpec, order_id: int | None = None,
             keep_killed: bool = False) -> Order:
    """Match ``req`` now (``keep_killed``: a post-only order that would take liquidity is stored
    EXPIRED instead of refused, as Bybit and OKX cancel it)."""
    t = sim.now_ms()
    bids, asks = sim.market.depth(s.id, t)
    if req.type == "LIMIT" and req.time_in_force == "FOK":
        book = asks if req.side == "BUY" else bids
        avail = sum(q for px, q in book if (px <= req.price if req.side == "BUY" else px >= req.price))
        if avail < req.qty:
            raise SimError(-5021, "Due to the order could not be filled immediately, the FOK order has been rejected.")
    f = sim.faults
    ratio = D(str(f.partial_fill_ratio)) if f.partial_fill_ratio is not None else None
    order, mut = sim.engine.place(req, asks if req.side == "BUY" else bids, sim.marks(s.id), t, fill_ratio=ratio,
                                  order_id=order_id, keep_killed=keep_killed)
    sim.persist(mut)
    return order


def _accept_late(sim: Sim, req: OrderRequest, s: SymbolSpec, p: dict, delay_ms: int, visible: bool,
                 keep_killed: bool = False) -> Order:
    """Answer NEW now, match ``delay_ms`` later. A visible order (its answer reached the
    client) is listed as NEW meanwhile; an invisible one (answer dropped) is unknown until it
    is processed, and is discarded if ``timestamp + recvWindow`` has passed by then (the
    matching engine refuses a stale request, -1021 / -5028). The acceptance checks run now
    (a LIMIT price outside the band: -4016 / -4017 at once); a refusal at matching time (the
    price band, -4131; margin; status) expires a visible order and drops an invisible one."""
    e = sim.engine
    t = sim.now_ms()
    e.validate(req, sim.market.mark(s.id, t))
    pending = req.order(e.reserve_order_id(), t)
    if visible:
        e.index_order(pending)
        sim.persist(Mutation(orders=[pending]))
    deadline = int(p.get("timestamp") or t) + int(p.get("recvWindow") or 5000)
    task = asyncio.ensure_future(_run_late(sim, req, s, pending, delay_ms, visible, deadline, keep_killed))
    sim.late.add(task)
    task.add_done_callback(sim.late.discard)
    return pending


async def _run_late(sim: Sim, req: OrderRequest, s: SymbolSpec, pending: Order, delay_ms: int, visible: bool,
                    deadline: int, keep_killed: bool = False) -> None:
    await asyncio.sleep(delay_ms / 1000)
    if not visible and sim.now_ms() > deadline:
        return  # outside its recvWindow: never executed, never seen
    if visible:
        if not pending.is_open:
            return  # cancelled meanwhile
        sim.engine.unindex_order(pending)
    try:
        check_symbol_status(sim, s, req.reduce_only)
        order = _execute(sim, req, s, order_id=pending.order_id, keep_killed=keep_killed)
        order.time = pending.time
        sim.persist(Mutation(orders=[order]))
    except SimError:
        if visible:  # accepted but not executable any more
            pending.status, pending.update_time = "EXPIRED", sim.now_ms()
            sim.engine.index_order(pending)
            sim.persist(Mutation(orders=[pending]))


def _find(sim: Sim, p: dict) -> Order:
    s = sim.spec(p.get("symbol"))
    oid = param_int(p, "orderId")
    cid = p.get("origClientOrderId")
    if oid is None and not cid:
        raise SimError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
    return sim.engine.find_order(s.id, oid, cid)


async def get_order(sim: Sim, request: web.Request, p: dict):
    _lookup_fault(sim)
    o = _find(sim, p)
    return o.to_binance(sim.market.specs.get(o.symbol))


async def cancel_order(sim: Sim, request: web.Request, p: dict):
    try:
        o = _find(sim, p)
    except SimError as e:
        if e.code == -2013:
            raise SimError(-2011, "Unknown order sent.") from None
        raise
    mut = sim.engine.cancel(o, sim.now_ms())
    sim.persist(mut)
    return o.to_binance(sim.market.specs.get(o.symbol))


async def cancel_all(sim: Sim, request: web.Request, p: dict):
    s = sim.spec(p.get("symbol"))
    mut = Mutation()
    for o in sim.engine.open_orders(s.id):
        mut.merge(sim.engine.cancel(o, sim.now_ms()))
    sim.persist(mut)
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


async def open_orders(sim: Sim, request: web.Request, p: dict):
    _lookup_fault(sim)
    sym = sim.spec(p["symbol"]).id if p.get("symbol") else None
    return [o.to_binance(sim.market.specs.get(o.symbol)) for o in sim.engine.open_orders(sym)]


async def open_order(sim: Sim, request: web.Request, p: dict):
    _lookup_fault(sim)
    o = _find(sim, p)
    if not o.is_open:
        raise SimError(-2013, "Order does not exist.")
    return o.to_binance(sim.market.specs.get(o.symbol))


async def all_orders(sim: Sim, request: web.Request, p: dict):
    _lookup_fault(sim)
    s = sim.spec(p.get("symbol"))
    limit = min(max(param_int(p, "limit", 500), 1), 1000)
    start, end, from_id = param_int(p, "startTime"), param_int(p, "endTime"), param_int(p, "orderId")
    rows = [o for o in sim.engine.orders.values() if o.symbol == s.id
            and (start is None or o.time >= start) and (end is None or o.time <= end)
            and (from_id is None or o.order_id >= from_id)]
    rows.sort(key=lambda o: o.order_id)
    rows = rows[:limit] if (start is not None or from_id is not None) else rows[-limit:]
    return [o.to_binance(s) for o in rows]


async def user_trades(sim: Sim, request: web.Request, p: dict):
    sym = sim.spec(p["symbol"]).id if p.get("symbol") else None
    limit = min(max(param_int(p, "limit", 500), 1), 1000)
    start, end, from_id, oid = param_int(p, "startTime"), param_int(p, "endTime"), param_int(p, "fromId"), param_int(p, "orderId")
    rows = [t for t in sim.engine.trades if (sym is None or t.symbol == sym)
            and (start is None or t.time >= start) and (end is None or t.time <= end)
            and (from_id is None or t.id >= from_id) and (oid is None or t.order_id == oid)]
    rows = rows[:limit] if (start is not None or from_id is not None) else rows[-limit:]
    return [t.to_binance() for t in rows]


async def income(sim: Sim, request: web.Request, p: dict):
    sym = sim.spec(p["symbol"]).id if p.get("symbol") else None
    kind = p.get("incomeType")
    limit = min(max(param_int(p, "limit", 100), 1), 1000)
    start, end = param_int(p, "startTime"), param_int(p, "endTime")
    rows = [i for i in sim.engine.income if (sym is None or i.symbol == sym)
            and (not kind or i.income_type == kind)
            and (start is None or i.time >= start) and (end is None or i.time <= end)]
    page = param_int(p, "page", 1) or 1
    if start is not None:
        rows = rows[(page - 1) * limit: page * limit]
    else:
        rows = rows[-limit:]
    return [i.to_binance() for i in rows]
