"""Public market-data handlers of the Binance USD-M dialect: ping, time, exchangeInfo,
premiumIndex, fundingInfo, fundingRate, depth, bookTicker, ticker price.

Every handler is ``async (sim, request, params) -> JSON-able``; :mod:`venues.sim.endpoints`
maps paths to them."""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web

from .engine import PERCENT_PRICE_DOWN, PERCENT_PRICE_UP
from .records import fmt
from .venue import Sim
from .wire import param_int

D = Decimal


async def ping(sim: Sim, request: web.Request, p: dict):
    return {}


async def server_time(sim: Sim, request: web.Request, p: dict):
    return {"serverTime": sim.now_ms()}


async def exchange_info(sim: Sim, request: web.Request, p: dict):
    t = sim.now_ms()
    symbols = []
    for s in sim.market.specs.values():
        symbols.append({
            "symbol": s.id, "pair": s.id, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
            "onboardDate": s.onboard_ms, "status": sim.faults.status(s.symbol), "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": s.base, "quoteAsset": s.quote, "marginAsset": "USDT",
            "pricePrecision": s.price_precision, "quantityPrecision": s.qty_precision, "baseAssetPrecision": 8,
            "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0,
            "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": fmt(s.tick), "maxPrice": fmt(s.base_price * 100),
                 "tickSize": fmt(s.tick)},
                {"filterType": "LOT_SIZE", "minQty": fmt(s.min_qty), "maxQty": fmt(s.max_qty), "stepSize": fmt(s.step)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(s.min_qty), "maxQty": fmt(s.market_max_qty),
                 "stepSize": fmt(s.step)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": fmt(s.min_notional)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": f"{PERCENT_PRICE_UP:.4f}",
                 "multiplierDown": f"{PERCENT_PRICE_DOWN:.4f}", "multiplierDecimal": "4"},  # enforced by the engine
            ],
            "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC", "IOC", "FOK"],
            "permissionSet": ["GRID", "COPY"],
        })
    lim = sim.opts.weight_limit
    return {
        "timezone": "UTC", "serverTime": t, "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": lim},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": symbols,
    }


def _premium(sim: Sim, s, t) -> dict:
    m = sim.market
    mark = fmt(m.mark(s.id, t))
    return {
        "symbol": s.id, "markPrice": mark, "indexPrice": fmt(m.index(s.id, t)),
        "estimatedSettlePrice": mark, "lastFundingRate": fmt(m.rate(s.id, t)),
        "interestRate": "0.00010000", "nextFundingTime": m.next_funding_ms(s.id, t), "time": t,
    }


async def premium_index(sim: Sim, request: web.Request, p: dict):
    t = sim.now_ms()
    if p.get("symbol"):
        return _premium(sim, sim.spec(p["symbol"]), t)
    return [_premium(sim, s, t) for s in sim.market.specs.values()]


async def funding_info(sim: Sim, request: web.Request, p: dict):
    t = sim.now_ms()
    return [{"symbol": s.id, "adjustedFundingRateCap": "0.02000000", "adjustedFundingRateFloor": "-0.02000000",
             "fundingIntervalHours": sim.market.interval_hours(s.id, t), "disclaimer": False}
            for s in sim.market.specs.values()]


async def funding_rate(sim: Sim, request: web.Request, p: dict):
    sym = p.get("symbol")
    if sym:
        sim.spec(sym)
    limit = min(max(param_int(p, "limit", 100), 1), 1000)
    rows = sim.store.funding_history(sym, param_int(p, "startTime"), param_int(p, "endTime"), limit)
    return [{"symbol": s, "fundingTime": t, "fundingRate": fmt(D(r)), "markPrice": fmt(D(mk))} for s, t, r, mk in rows]


async def depth(sim: Sim, request: web.Request, p: dict):
    s = sim.spec(p.get("symbol"))
    limit = param_int(p, "limit", 500)
    t = sim.now_ms()
    bids, asks = sim.market.depth(s.id, t, limit)
    return {"lastUpdateId": t, "E": t, "T": t,
            "bids": [[fmt(px), fmt(q)] for px, q in bids], "asks": [[fmt(px), fmt(q)] for px, q in asks]}


async def book_ticker(sim: Sim, request: web.Request, p: dict):
    t = sim.now_ms()

    def one(s):
        bids, asks = sim.market.depth(s.id, t, 1)
        return {"symbol": s.id, "bidPrice": fmt(bids[0][0]), "bidQty": fmt(bids[0][1]), "askPrice": fmt(asks[0][0]),
                "askQty": fmt(asks[0][1]), "time": t, "lastUpdateId": t}

    if p.get("symbol"):
        return one(sim.spec(p["symbol"]))
    return [one(s) for s in sim.market.specs.values()]


async def ticker_price(sim: Sim, request: web.Request, p: dict):
    t = sim.now_ms()
    if p.get("symbol"):
        s = sim.spec(p["symbol"])
        return {"symbol": s.id, "price": fmt(sim.market.mark(s.id, t)), "time": t}
    return [{"symbol": s.id, "price": fmt(sim.market.mark(s.id, t)), "time": t}
            for s in sim.market.specs.values()]
