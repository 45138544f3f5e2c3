"""``POST /info`` of the Hyperliquid dialect (unsigned; the body's ``type`` picks the query):
meta, metaAndAssetCtxs, spotMeta, spotMetaAndAssetCtxs, perpDexs, allMids, l2Book,
exchangeStatus, fundingHistory, clearinghouseState, spotClearinghouseState, openOrders,
frontendOpenOrders, orderStatus, userFills, userFillsByTime, userFunding, userAbstraction.
A user other than the account's wallet is an empty account, as on the venue."""

from __future__ import annotations

import json
from decimal import Decimal

from aiohttp import web

from ..api_account import account_numbers
from ..api_orders import _lookup_fault
from ..records import ZERO, floor_step, fmt
from ..venue import Sim
from . import wire as w

D = Decimal
USDC_TOKEN = {"name": "USDC", "szDecimals": 8, "weiDecimals": 8, "index": 0,
              "tokenId": "0x6d1e7cde53ba9467b783cb7c530ce054", "isCanonical": True, "evmContract": None,
              "fullName": None}


async def read_body(request: web.Request) -> dict:
    try:
        body = json.loads((await request.read()) or b"null")
    except ValueError:
        raise w.bad_request() from None
    if not isinstance(body, dict):
        raise w.bad_request()
    return body


async def info(sim: Sim, request: web.Request, p: dict):
    w.state(sim)
    body = await read_body(request)
    h = HANDLERS.get(body.get("type"))  # type: ignore[arg-type]
    if h is None:
        raise w.bad_request()
    return h(sim, body)


def _int(body: dict, k: str, required: bool = False) -> int | None:
    v = body.get(k)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise w.bad_request()
    return v


# ---- market data ------------------------------------------------------------------------------
def _meta(sim: Sim) -> dict:
    return {"universe": [{"name": s.base, "szDecimals": w.sz_decimals(s), "maxLeverage": s.max_leverage,
                          "marginTableId": s.max_leverage, "onlyIsolated": False}
                         | ({"isDelisted": True} if sim.faults.status(s.symbol) in ("CLOSE", "DELIVERED") else {})
                         for s in w.specs(sim)]}


def _ctx(sim: Sim, s, t: int) -> dict:
    m = sim.market
    mark, index = m.mark(s.id, t), m.index(s.id, t)
    bids, asks = m.depth(s.id, t, 1)
    mid = (bids[0][0] + asks[0][0]) / 2 if bids and asks else mark
    oi = sum((abs(p.qty) for p in sim.engine.positions.values() if p.symbol == s.id), ZERO)
    oi += floor_step(D(50_000_000) / mark, s.step)  # the rest of the market
    return {"funding": fmt(m.rate(s.id, t)), "openInterest": fmt(oi), "prevDayPx": fmt(m.mark(s.id, t - 86_400_000)),
            "dayNtlVlm": fmt(floor_step(oi * mark * 3, D(1))), "premium": fmt(((mark - index) / index).quantize(D("1e-8"))),
            "oraclePx": fmt(index), "markPx": fmt(mark), "midPx": fmt(mid),
            "impactPxs": [fmt(bids[0][0]) if bids else fmt(mark), fmt(asks[0][0]) if asks else fmt(mark)]}


def meta(sim: Sim, body: dict):
    return _meta(sim)


def meta_and_ctxs(sim: Sim, body: dict):
    if body.get("dex"):
        return [{"universe": []}, []]
    t = sim.now_ms()
    return [_meta(sim), [_ctx(sim, s, t) for s in w.specs(sim)]]


def spot_meta(sim: Sim, body: dict):
    return {"universe": [], "tokens": [USDC_TOKEN]}


def spot_meta_and_ctxs(sim: Sim, body: dict):
    return [spot_meta(sim, body), []]


def perp_dexs(sim: Sim, body: dict):
    return [None]


def all_mids(sim: Sim, body: dict):
    t = sim.now_ms()
    return {s.base: _ctx(sim, s, t)["midPx"] for s in w.specs(sim)}


def l2_book(sim: Sim, body: dict):
    s = w.spec_by_coin(sim, body.get("coin"))
    if s is None:
        return None
    t = sim.now_ms()
    bids, asks = sim.market.depth(s.id, t)
    szd = w.sz_decimals(s)
    return {"coin": s.base, "time": t, "levels": [w.hl_book(bids, szd, False), w.hl_book(asks, szd, True)]}


def exchange_status(sim: Sim, body: dict):
    return {"specialStatuses": None, "time": sim.now_ms()}


def funding_history(sim: Sim, body: dict):
    s = w.spec_by_coin(sim, body.get("coin"))
    start, end = _int(body, "startTime", True), _int(body, "endTime")
    if s is None:
        return []
    rows = sim.store.funding_history(s.id, start, end, 500)
    return [{"coin": s.base, "fundingRate": fmt(D(r)), "premium": "0", "time": int(t)} for _, t, r, _m in rows]


# ---- account ----------------------------------------------------------------------------------
def _cum_funding(sim: Sim, sym: str, since: int) -> tuple[Decimal, Decimal]:
    paid_all = paid_since = ZERO  # Hyperliquid's sign: positive = paid
    for i in sim.engine.income:
        if i.symbol == sym and i.income_type == "FUNDING_FEE":
            paid_all -= i.income
            if i.time >= since:
                paid_since -= i.income
    return paid_all, paid_since


def _opened_at(sim: Sim, sym: str) -> int:
    """When the current position in ``sym`` was opened (its last fill from flat or through zero)."""
    pos, opened = ZERO, 0
    for t in sorted(sim.engine.trades, key=lambda t: t.id):
        if t.symbol != sym:
            continue
        new = pos + (t.qty if t.side == "BUY" else -t.qty)
        if pos == 0 or (new != 0 and (new > 0) != (pos > 0)):
            opened = t.time
        pos = new
    return opened


def clearinghouse_state(sim: Sim, body: dict):
    t = sim.now_ms()
    if not w.is_user(sim, body.get("user")):
        zero = {"accountValue": "0.0", "totalNtlPos": "0.0", "totalRawUsd": "0.0", "totalMarginUsed": "0.0"}
        return {"marginSummary": zero, "crossMarginSummary": zero, "crossMaintenanceMarginUsed": "0.0",
                "withdrawable": "0.0", "assetPositions": [], "time": t}
    e = sim.engine
    n = account_numbers(sim)
    marks = n["marks"]
    positions, ntl, cross_ntl, cross_used, cross_raw = [], ZERO, ZERO, ZERO, e.cross_wallet()
    base = e.cross_base(marks)
    for s in w.specs(sim):
        pos = e.positions.get(s.id)
        if pos is None or not pos.qty:
            continue
        mark = marks[s.id]
        lev = e.get_leverage(s.id)
        value = abs(pos.qty) * mark
        upnl = pos.qty * (mark - pos.entry)
        iso = e.is_isolated(s.id)
        used = (pos.iso_margin + upnl) if iso else value / lev
        liq = e.liquidation_price(s.id, marks, base)
        opened = _opened_at(sim, s.id)
        all_time, since_open = _cum_funding(sim, s.id, opened)
        _, since_change = _cum_funding(sim, s.id, pos.update_time)
        leverage = {"type": "isolated", "value": lev, "rawUsd": fmt(pos.iso_margin - pos.qty * pos.entry)} if iso \
            else {"type": "cross", "value": lev}
        positions.append({"type": "oneWay", "position": {
            "coin": s.base, "szi": fmt(pos.qty), "leverage": leverage, "entryPx": fmt(pos.entry),
            "positionValue": fmt(value), "unrealizedPnl": fmt(upnl.quantize(D("1e-6"))),
            "returnOnEquity": fmt((upnl / (abs(pos.qty) * pos.entry / lev)).quantize(D("1e-8"))) if pos.entry else "0",
            "liquidationPx": fmt(liq.quantize(D("1e-6"))) if liq else None, "marginUsed": fmt(used.quantize(D("1e-6"))),
            "maxLeverage": s.max_leverage,
            "cumFunding": {"allTime": fmt(all_time), "sinceOpen": fmt(since_open), "sinceChange": fmt(since_change)}}})
        ntl += value
        if not iso:
            cross_ntl += value
            cross_used += value / lev
            cross_raw -= pos.qty * pos.entry
    account_value = n["margin_balance"]
    summary = {"accountValue": fmt(account_value), "totalNtlPos": fmt(ntl),
               "totalRawUsd": fmt(account_value - sum((p.qty * marks[p.symbol] for p in e.positions.values()
                                                       if p.qty and p.symbol in marks), ZERO)),
               "totalMarginUsed": fmt(n["pim"])}
    cross_value = n["cross_wallet"] + n["cross_upnl"]
    return {"marginSummary": summary,
            "crossMarginSummary": {"accountValue": fmt(cross_value), "totalNtlPos": fmt(cross_ntl),
                                   "totalRawUsd": fmt(cross_raw), "totalMarginUsed": fmt(cross_used)},
            "crossMaintenanceMarginUsed": fmt(n["mm"]), "withdrawable": fmt(max(n["avail"], ZERO)),
            "assetPositions": positions, "time": t}


def spot_clearinghouse_state(sim: Sim, body: dict):
    return {"balances": [{"coin": "USDC", "token": 0, "hold": "0.0", "total": "0.0", "entryNtl": "0.0"}]}


def user_abstraction(sim: Sim, body: dict):
    return "default"


def open_orders(sim: Sim, body: dict, frontend: bool = False):
    _lookup_fault(sim)
    if not w.is_user(sim, body.get("user")):
        return []
    out = []
    for o in sorted(sim.engine.open_orders(), key=lambda o: o.order_id):
        s = sim.market.specs.get(o.symbol)
        if s is not None:
            out.append(w.order_json(o, s, frontend))
    return out


def frontend_open_orders(sim: Sim, body: dict):
    return open_orders(sim, body, True)


def find_order(sim: Sim, oid: object):
    """The order of an oid (int) or a cloid (hex string), else None."""
    e = sim.engine
    if isinstance(oid, int) and not isinstance(oid, bool):
        return e.orders.get(oid)
    if isinstance(oid, str) and w.CLOID_RE.match(oid):
        ids = [i for (sym, cid), lst in e.orders_by_client.items() if cid.lower() == oid.lower() for i in lst]
        return e.orders[max(ids)] if ids else None
    raise w.bad_request()


def order_status(sim: Sim, body: dict):
    _lookup_fault(sim)
    o = find_order(sim, body.get("oid"))
    if o is None or not w.is_user(sim, body.get("user")) or o.symbol not in sim.market.specs:
        return {"status": "unknownOid"}
    return {"status": "order", "order": {"order": w.order_json(o, sim.market.specs[o.symbol]),
                                          "status": w.order_status(o), "statusTimestamp": o.update_time}}


def _fills(sim: Sim, body: dict, start: int | None, end: int | None, newest_first: bool):
    if not w.is_user(sim, body.get("user")):
        return []
    e = sim.engine
    starts = w.start_positions(e.trades)
    rows = [t for t in e.trades if t.symbol in sim.market.specs
            and (start is None or t.time >= start) and (end is None or t.time <= end)]
    rows.sort(key=lambda t: (t.time, t.id), reverse=newest_first)
    rows = rows[:2000]
    return [w.fill_json(t, sim.market.specs[t.symbol], starts[t.id], e.orders.get(t.order_id)) for t in rows]


def user_fills(sim: Sim, body: dict):
    return _fills(sim, body, None, None, True)


def user_fills_by_time(sim: Sim, body: dict):
    return _fills(sim, body, _int(body, "startTime", True), _int(body, "endTime"), False)


def user_funding(sim: Sim, body: dict):
    start, end = _int(body, "startTime", True), _int(body, "endTime")
    if not w.is_user(sim, body.get("user")):
        return []
    out = []
    for i in sim.engine.income:
        s = sim.market.specs.get(i.symbol)
        if i.income_type != "FUNDING_FEE" or s is None or i.time < start or (end is not None and i.time > end):
            continue
        rows = sim.store.funding_history(i.symbol, i.time, i.time, 1)
        rate, mark = (D(rows[0][2]), D(rows[0][3])) if rows else (ZERO, ZERO)
        szi = (-i.income / (mark * rate)).quantize(s.step) if rate and mark else ZERO
        out.append({"time": i.time, "hash": "0x" + "0" * 64,
                    "delta": {"type": "funding", "coin": s.base, "usdc": fmt(i.income), "szi": fmt(szi),
                              "fundingRate": fmt(rate), "nSamples": None}})
        if len(out) == 500:
            break
    return out


HANDLERS = {
    "meta": meta, "metaAndAssetCtxs": meta_and_ctxs, "spotMeta": spot_meta,
    "spotMetaAndAssetCtxs": spot_meta_and_ctxs, "perpDexs": perp_dexs, "allMids": all_mids, "l2Book": l2_book,
    "exchangeStatus": exchange_status, "fundingHistory": funding_history,
    "clearinghouseState": clearinghouse_state, "spotClearinghouseState": spot_clearinghouse_state,
    "openOrders": open_orders, "frontendOpenOrders": frontend_open_orders, "orderStatus": order_status,
    "userFills": user_fills, "userFillsByTime": user_fills_by_time, "userFunding": user_funding,
    "userAbstraction": user_abstraction,
}
