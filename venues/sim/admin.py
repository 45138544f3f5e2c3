"""Admin API of the simulated venue under ``/_sim/`` (unsigned, no faults, no weight):
state snapshot (with liquidations), health, faults, pinned market values and symbol
parameters (qty step, min qty, funding interval), forced funding settlement.

Every handler is ``async (sim, request) -> web.Response``; :mod:`venues.sim.endpoints`
maps paths to them."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from aiohttp import web

from . import dialects
from .api_account import account_numbers, position_json
from .errors import SimError
from .liquidation import liquidation_view
from .market import BOOK_FIELDS
from .records import fmt
from .venue import Sim
from .wire import json_response, param_int

D = Decimal


async def health(sim: Sim, request: web.Request) -> web.Response:
    return json_response({"ok": True, "name": sim.opts.name,
                  "mode": "replay" if sim.market.replay is not None else "synthetic",
                  "symbols": len(sim.market.specs)})


async def state(sim: Sim, request: web.Request) -> web.Response:
    e = sim.engine
    n = account_numbers(sim)
    positions, base = [], e.cross_base(n["marks"])
    for sym, pos in e.positions.items():
        if pos.qty and sym in sim.market.specs:
            pj = position_json(sim, sym, n["marks"], True, base)
            positions.append({"symbol": _unified(sim, sym), "venue_symbol": sym,
                              "positionAmt": pj["positionAmt"], "entryPrice": pj["entryPrice"],
                              "markPrice": pj["markPrice"], "unRealizedProfit": pj["unRealizedProfit"],
                              "notional": pj["notional"], "leverage": pj["leverage"],
                              "liquidationPrice": pj["liquidationPrice"]})
    orders_limit = param_int(dict(request.query), "orders_limit")
    income_limit = param_int(dict(request.query), "income_limit")
    orders = sorted(e.orders.values(), key=lambda o: o.order_id)
    if orders_limit is not None:
        orders = orders[-orders_limit:] if orders_limit else []
    income = e.income if income_limit is None else (e.income[-income_limit:] if income_limit else [])
    return json_response({
        "name": sim.opts.name,
        "dialect": sim.opts.dialect,
        "balances": {"USDT": {"wallet": fmt(n["wallet"]), "walletBalance": fmt(n["wallet"]), "available": fmt(n["avail"]),
                              "unrealized": fmt(n["upnl"]), "margin_balance": fmt(n["margin_balance"])}},
        "positions": positions,
        "orders": [o.to_binance(sim.market.specs.get(o.symbol))
                   | {"arrived_ns": o.arrived_ns, "unified_symbol": _unified(sim, o.symbol)} for o in orders],
        "income": [i.to_binance() for i in income],
        "liquidations": liquidation_view(e, lambda s: _unified(sim, s)),
        "faults": sim.faults.as_dict(),
    })


def _unified(sim: Sim, sym: str) -> str:
    """``sym``'s ccxt unified symbol in this venue's dialect (the spec's own unless the dialect maps it)."""
    s = sim.market.specs.get(sym)
    if s is None:
        return sym
    hook = dialects.get(sim.opts.dialect).unified
    return hook(s) if hook is not None else s.symbol


async def _json_body(request: web.Request) -> object:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError:
        raise SimError(-1, "body: invalid JSON") from None


async def get_faults(sim: Sim, request: web.Request) -> web.Response:
    return json_response(sim.faults.as_dict())


async def post_faults(sim: Sim, request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        sim.faults.update(body, resolve=lambda k: (s.symbol if (s := sim.market.resolve(str(k))) else None))
    except ValueError as e:
        return json_response({"error": str(e), "field": str(e).split(":", 1)[0]}, 400)
    return json_response(sim.faults.as_dict())


def _market_view(sim: Sim, sym: str) -> dict:
    t = sim.now_ms()
    m = sim.market
    book = m.book_for(sym)
    return {"symbol": m.specs[sym].symbol, "venue_symbol": sym, "mark_price": fmt(m.mark(sym, t)),
            "funding_rate": fmt(m.rate(sym, t)), "next_funding_time": m.next_funding_ms(sym, t),
            "pinned_price": fmt(m.pinned_price[sym]) if sym in m.pinned_price else None,
            "pinned_funding_rate": fmt(m.pinned_rate[sym]) if sym in m.pinned_rate else None,
            "qty_step": fmt(m.specs[sym].step), "min_qty": fmt(m.specs[sym].min_qty),
            "funding_interval_hours": m.interval_hours(sym, t),
            "book_level_notional": fmt(book.level_notional), "book_level_step_bps": fmt(book.level_step_bps)}


async def get_market(sim: Sim, request: web.Request) -> web.Response:
    return json_response([_market_view(sim, s) for s in sim.market.specs])


SPEC_FIELDS = ("qty_step", "min_qty", "funding_interval_hours", *BOOK_FIELDS)
#: fields that accept null (restore the venue's own value)
NULLABLE = ("funding_interval_hours", *BOOK_FIELDS)


async def post_market(sim: Sim, request: web.Request) -> web.Response:
    """Pin ``price`` / ``funding_rate`` (null unpins); set ``qty_step`` (stepSize of LOT_SIZE and
    MARKET_LOT_SIZE), ``min_qty`` and ``funding_interval_hours`` (fundingInfo and the settlement
    schedule; null restores the venue interval); thin or thicken the symbol's book with
    ``book_level_notional`` (USDT per level) and ``book_level_step_bps`` (distance between
    levels; null restores the venue's book). All persist across restarts. A price change is a
    tick of the price path: it fills the resting orders it crosses and liquidates what it must."""
    body = await _json_body(request)
    if not isinstance(body, dict):
        return json_response({"error": "body: expected a JSON object", "field": "body"}, 400)
    unknown = set(body) - {"symbol", "price", "funding_rate", *SPEC_FIELDS}
    if unknown:
        f = sorted(unknown)[0]
        return json_response({"error": f"{f}: unknown field", "field": f}, 400)
    spec = sim.market.resolve(str(body.get("symbol", "")))
    if spec is None:
        return json_response({"error": "symbol: unknown symbol", "field": "symbol"}, 400)
    m = sim.market
    for k, target in (("price", m.pinned_price), ("funding_rate", m.pinned_rate)):
        if k not in body:
            continue
        v = body[k]
        if v is None:
            target.pop(spec.id, None)
            continue
        try:
            d = D(str(v))
            if not d.is_finite() or isinstance(v, bool) or (k == "price" and d <= 0):
                raise InvalidOperation
        except InvalidOperation:
            return json_response({"error": f"{k}: invalid value", "field": k}, 400)
        target[spec.id] = d
    over = {}
    for k in SPEC_FIELDS:
        if k not in body:
            continue
        v = body[k]
        if v is None and k in NULLABLE:
            over[k] = None
            continue
        try:
            d = D(str(v))
            if isinstance(v, bool) or not d.is_finite() or d <= 0:
                raise InvalidOperation
        except InvalidOperation:
            expected = "a positive number or null" if k in NULLABLE else "a positive number"
            return json_response({"error": f"{k}: expected {expected}", "field": k}, 400)
        over[k] = str(d)
    sim.store.save_pinned(spec.id, m.pinned_price.get(spec.id), m.pinned_rate.get(spec.id))
    if over:
        sim.apply_spec_override(spec.id, over)
        sim.save_spec_override(spec.id)
    sim.tick()  # a moved mark crosses resting orders and liquidation prices at once
    return json_response(_market_view(sim, spec.id))


async def post_settle(sim: Sim, request: web.Request) -> web.Response:
    body = await _json_body(request)
    syms = None
    if isinstance(body, dict) and body.get("symbol"):
        spec = sim.market.resolve(str(body["symbol"]))
        if spec is None:
            return json_response({"error": "symbol: unknown symbol", "field": "symbol"}, 400)
        syms = [spec.id]
    mut = sim.settle(syms)
    return json_response({"settled": [i.to_binance() for i in mut.income]})
