"""Signed order handlers of the Bybit dialect: create (market / limit GTC, IOC, FOK, PostOnly;
reduce-only, ``orderLinkId``), cancel (by ``orderId`` or ``orderLinkId``), cancel-all, open and recent
orders (``/v5/order/realtime``), order history and executions (trades and funding).

Faults as in the Binance dialect: ``reject_orders``, ``drop_responses`` (executed, answered
5xx), ``execute_late_ms`` (answered at once, matched later), ``symbol_status``, and
``lookup_errors`` on order look-ups. An ``orderLinkId`` is unique per symbol for good (110072),
as on Bybit, so a retried create cannot execute twice. A PostOnly order that would take
liquidity is created (retCode 0) and cancelled at once: orderStatus ``Cancelled``, rejectReason
``EC_PostOnlyWillTakeLiquidity``, as Bybit answers it. Executions carry ``isMaker``."""

from __future__ import annotations

import re
import secrets
from decimal import Decimal

from aiohttp import web

from ..api_orders import _accept_late, _execute, _lookup_fault, check_symbol_status
from ..errors import SimError, err_dropped
from ..records import Mutation, Order, OrderRequest, fmt
from ..venue import Sim
from ..wire import ARRIVED_NS
from .common import (
    AUTO_LINK,
    SIDE,
    body_params,
    category,
    dec,
    flag,
    integer,
    link_id,
    ok,
    order_json,
    order_status,
    page,
    spec,
    text,
)
from .errors import bybit, order_not_found, params_error

D = Decimal
LINK_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
WEEK_MS = 7 * 86_400_000
RECENT = 500  # realtime answers any status by id among the account's latest orders
UNSUPPORTED = ("triggerPrice", "takeProfit", "stopLoss", "trailingStop", "tpslMode")


@body_params
@ok
async def create(sim: Sim, request: web.Request, p: dict):
    arrived = request[ARRIVED_NS]
    f = sim.faults
    drop = False
    try:
        category(p)
        s = spec(sim, p)
        if f.reject_orders > 0:
            f.reject_orders -= 1
            raise SimError(-2010, "New order rejected (simulated fault).")
        if f.drop_responses > 0:
            f.drop_responses -= 1
            drop = True
        side = {"Buy": "BUY", "Sell": "SELL"}.get(text(p, "side"))
        if side is None:
            raise params_error("Side invalid")
        typ = {"Market": "MARKET", "Limit": "LIMIT"}.get(text(p, "orderType"))
        if typ is None:
            raise params_error("OrderType invalid")
        if text(p, "positionIdx") not in ("", "0"):
            raise bybit(10001, "position idx not match position mode")
        for k in UNSUPPORTED:
            if text(p, k) not in ("", "0"):
                raise params_error(f"{k} is not supported on this venue")
        qty = dec(p, "qty")
        tif = text(p, "timeInForce") or ("IOC" if typ == "MARKET" else "GTC")
        if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
            raise params_error("TimeInForce invalid")
        price = dec(p, "price") if typ == "LIMIT" else None
        link = text(p, "orderLinkId")
        if link:
            if not LINK_RE.match(link):
                raise params_error("orderLinkId invalid")
            if sim.engine.orders_by_client.get((s.id, link)):
                raise bybit(110072, "OrderLinkedID is duplicate")
        cid = link or AUTO_LINK + secrets.token_hex(12)
        req = OrderRequest(s.id, side, typ, qty, cid, flag(p, "reduceOnly"), price,
                           ("GTX" if tif == "PostOnly" else tif) if typ == "LIMIT" else "GTC", arrived)
        check_symbol_status(sim, s, req.reduce_only)
        if f.execute_late_ms > 0:
            window = {"timestamp": request.headers.get("X-BAPI-TIMESTAMP"),
                      "recvWindow": request.headers.get("X-BAPI-RECV-WINDOW") or "5000"}
            order = _accept_late(sim, req, s, window, f.execute_late_ms, visible=not drop, keep_killed=True)
        else:
            order = _execute(sim, req, s, keep_killed=True)
    except SimError as e:
        if drop:
            raise err_dropped() from e
        raise
    if drop:
        raise err_dropped()
    return {"orderId": str(order.order_id), "orderLinkId": link_id(order)}


def _find(sim: Sim, p: dict) -> Order:
    s = spec(sim, p)
    oid, link = text(p, "orderId"), text(p, "orderLinkId")
    if not oid and not link:
        raise params_error("orderId or orderLinkId is required")
    try:
        if oid:
            o = sim.engine.find_order(s.id, int(oid) if oid.isdigit() else -1)
            if link and o.client_order_id != link:
                raise order_not_found()
            return o
        return sim.engine.find_order(s.id, None, link)
    except SimError as e:
        if e.code == -2013:
            raise order_not_found() from None
        raise


@body_params
@ok
async def cancel(sim: Sim, request: web.Request, p: dict):
    category(p)
    o = _find(sim, p)
    if not o.is_open:
        raise order_not_found()
    sim.persist(sim.engine.cancel(o, sim.now_ms()))
    return {"orderId": str(o.order_id), "orderLinkId": link_id(o)}


@body_params
@ok
async def cancel_all(sim: Sim, request: web.Request, p: dict):
    category(p)
    if text(p, "symbol"):
        syms = {spec(sim, p).id}
    elif text(p, "settleCoin") or text(p, "baseCoin"):
        syms = None
    else:
        raise params_error("symbol or settleCoin or baseCoin is required")
    mut = Mutation()
    done = []
    for o in sim.engine.open_orders():
        if syms is None or o.symbol in syms:
            mut.merge(sim.engine.cancel(o, sim.now_ms()))
            done.append({"orderId": str(o.order_id), "orderLinkId": link_id(o)})
    sim.persist(mut)
    return {"list": done, "success": "1"}


def _matches(o: Order, p: dict) -> bool:
    oid, link = text(p, "orderId"), text(p, "orderLinkId")
    return (not oid or str(o.order_id) == oid) and (not link or o.client_order_id == link)


def _scope(sim: Sim, p: dict, need: bool) -> set[str] | None:
    if text(p, "symbol"):
        return {spec(sim, p).id}
    base = text(p, "baseCoin")
    if base:
        return {s.id for s in sim.market.specs.values() if s.base == base}
    if need and not text(p, "settleCoin"):
        raise params_error("symbol or settleCoin or baseCoin is required")
    return None


@ok
async def realtime(sim: Sim, request: web.Request, p: dict):
    """Open orders; by ``orderId`` / ``orderLinkId`` an order of any status among the latest
    :data:`RECENT`; ``openOnly=1``: the latest closed ones."""
    _lookup_fault(sim)
    category(p)
    syms = _scope(sim, p, need=True)
    rows = sorted(sim.engine.orders.values(), key=lambda o: o.order_id, reverse=True)
    rows = [o for o in rows if syms is None or o.symbol in syms]
    if text(p, "orderId") or text(p, "orderLinkId"):
        rows = [o for o in rows[:RECENT] if _matches(o, p)]
    elif text(p, "openOnly") == "1":
        rows = [o for o in rows if not o.is_open][:RECENT]
    else:
        rows = [o for o in rows if o.is_open]
    chunk, nxt = page(rows, p, 20, 50)
    return {"category": "linear", "list": [order_json(sim, o) for o in chunk], "nextPageCursor": nxt}


def _window(sim: Sim, p: dict) -> tuple[int, int]:
    start, end = integer(p, "startTime"), integer(p, "endTime")
    if start is None and end is None:
        end = sim.now_ms()
        start = end - WEEK_MS
    elif start is None:
        start = end - WEEK_MS
    elif end is None:
        end = start + WEEK_MS
    if end - start > WEEK_MS:
        raise params_error("The time range between startTime and endTime cannot exceed 7 days")
    return start, end


@ok
async def history(sim: Sim, request: web.Request, p: dict):
    _lookup_fault(sim)
    category(p)
    syms = _scope(sim, p, need=False)
    by_id = bool(text(p, "orderId") or text(p, "orderLinkId"))
    start, end = (None, None) if by_id else _window(sim, p)
    statuses = set(text(p, "orderStatus").split(",")) - {""}
    rows = [o for o in sorted(sim.engine.orders.values(), key=lambda o: o.order_id, reverse=True)
            if (syms is None or o.symbol in syms) and _matches(o, p)
            and (start is None or start <= o.time <= end) and (not statuses or order_status(o) in statuses)]
    chunk, nxt = page(rows, p, 20, 50)
    return {"category": "linear", "list": [order_json(sim, o) for o in chunk], "nextPageCursor": nxt}


def _trade_json(sim: Sim, t) -> dict:
    o = sim.engine.orders.get(t.order_id)
    liq = bool(o and o.client_order_id.startswith("autoclose-"))
    return {
        "symbol": t.symbol, "orderType": ("Market" if o.type == "MARKET" else "Limit") if o else "UNKNOWN",
        "underlyingPrice": "", "orderLinkId": link_id(o) if o else "", "side": SIDE.get(t.side, t.side),
        "indexPrice": "", "orderId": str(t.order_id), "stopOrderType": "UNKNOWN",
        "leavesQty": fmt(o.orig_qty - o.executed_qty) if o and o.is_open else "0", "execTime": str(t.time),
        "feeCurrency": "USDT", "isMaker": t.maker, "execFee": fmt(t.commission), "feeRate": fmt(sim.engine.fee_rate(t.maker)),
        "execId": str(t.id), "tradeIv": "", "blockTradeId": "", "markPrice": fmt(t.price),
        "execPrice": fmt(t.price), "markIv": "", "orderQty": fmt(o.orig_qty) if o else fmt(t.qty),
        "orderPrice": fmt(o.price) if o and o.type == "LIMIT" else fmt(t.price), "execValue": fmt(t.quote_qty),
        "execType": "BustTrade" if liq else "Trade", "execQty": fmt(t.qty),
        "closedSize": fmt(t.qty) if t.realized_pnl else "0", "seq": t.id,
        "createType": "CreateByLiq" if liq else "CreateByUser",
    }


def _funding_json(sim: Sim, i) -> dict:
    rows = sim.store.funding_history(i.symbol, i.time, i.time, 1)
    rate = D(rows[0][2]) if rows else D(0)
    mark = D(rows[0][3]) if rows else sim.market.mark(i.symbol, i.time)
    qty = (-i.income / (mark * rate)) if rate and mark else D(0)
    s = sim.market.specs.get(i.symbol)
    if s is not None and qty:
        qty = (qty / s.step).to_integral_value() * s.step
    return {
        "symbol": i.symbol, "orderType": "UNKNOWN", "underlyingPrice": "", "orderLinkId": "",
        "side": "Buy" if qty >= 0 else "Sell", "indexPrice": "", "orderId": "", "stopOrderType": "UNKNOWN",
        "leavesQty": "0", "execTime": str(i.time), "feeCurrency": "USDT", "isMaker": False,
        "execFee": fmt(-i.income), "feeRate": fmt(rate), "execId": f"funding-{i.tran_id}", "tradeIv": "",
        "blockTradeId": "", "markPrice": fmt(mark), "execPrice": fmt(mark), "markIv": "", "orderQty": "0",
        "orderPrice": "0", "execValue": fmt((abs(qty) * mark).quantize(D("1e-8"))), "execType": "Funding",
        "execQty": fmt(abs(qty)), "closedSize": "0", "seq": i.tran_id, "createType": "",
    }


@ok
async def executions(sim: Sim, request: web.Request, p: dict):
    category(p)
    syms = _scope(sim, p, need=False)
    start, end = _window(sim, p)
    kind = text(p, "execType")
    rows: list[tuple[int, int, str, object]] = []
    if kind in ("", "Trade", "BustTrade"):
        for t in sim.engine.trades:
            if (syms is None or t.symbol in syms) and start <= t.time <= end:
                o = sim.engine.orders.get(t.order_id)
                if (text(p, "orderId") and str(t.order_id) != text(p, "orderId")) or \
                        (text(p, "orderLinkId") and (o is None or o.client_order_id != text(p, "orderLinkId"))):
                    continue
                liq = bool(o and o.client_order_id.startswith("autoclose-"))
                if kind and kind != ("BustTrade" if liq else "Trade"):
                    continue
                rows.append((t.time, t.id, "t", t))
    if kind in ("", "Funding") and not text(p, "orderId") and not text(p, "orderLinkId"):
        for i in sim.engine.income:
            if i.income_type == "FUNDING_FEE" and (syms is None or i.symbol in syms) and start <= i.time <= end:
                rows.append((i.time, i.tran_id, "f", i))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)  # newest first
    chunk, nxt = page(rows, p, 50, 100)
    return {"category": "linear", "nextPageCursor": nxt,
            "list": [_trade_json(sim, r[3]) if r[2] == "t" else _funding_json(sim, r[3]) for r in chunk]}
