"""Public market-data handlers of the Bybit dialect: server time, instruments, tickers (with
funding), order book, funding-rate history. Non-linear categories (spot, inverse, option,
which ccxt's fetchMarkets also asks for) answer empty lists: the venue lists linear USDT
perpetuals only."""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web

from ..engine import PERCENT_PRICE_DOWN, PERCENT_PRICE_UP
from ..records import SymbolSpec, fmt
from ..venue import Sim
from .common import INSTRUMENT_STATUS, category, integer, ok, page, spec, text
from .errors import params_error

D = Decimal
CATEGORIES = ("linear", "inverse", "spot", "option")


@ok
async def server_time(sim: Sim, request: web.Request, p: dict):
    t = sim.now_ms()
    return {"timeSecond": str(t // 1000), "timeNano": str(t * 1_000_000)}


@ok
async def system_status(sim: Sim, request: web.Request, p: dict):
    return {"list": []}


def _status(sim: Sim, s: SymbolSpec) -> str:
    return INSTRUMENT_STATUS.get(sim.faults.status(s.symbol), "Trading")


def _instrument(sim: Sim, s: SymbolSpec, t: int) -> dict:
    m = sim.market
    return {
        "symbol": s.id, "contractType": "LinearPerpetual", "status": _status(sim, s), "baseCoin": s.base,
        "quoteCoin": s.quote, "launchTime": str(s.onboard_ms), "deliveryTime": "0", "deliveryFeeRate": "",
        "priceScale": str(s.price_precision),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": f"{s.max_leverage}.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": fmt(s.tick), "maxPrice": fmt(s.base_price * 100), "tickSize": fmt(s.tick)},
        "lotSizeFilter": {"maxOrderQty": fmt(s.max_qty), "minOrderQty": fmt(s.min_qty), "qtyStep": fmt(s.step),
                          "postOnlyMaxOrderQty": fmt(s.max_qty), "maxMktOrderQty": fmt(s.market_max_qty),
                          "minNotionalValue": fmt(s.min_notional)},
        "unifiedMarginTrade": True, "fundingInterval": m.interval_ms_for(s.id, t) // 60_000, "settleCoin": "USDT",
        "copyTrading": "both", "upperFundingRate": "0.02", "lowerFundingRate": "-0.02", "isPreListing": False,
        "preListingInfo": None, "displayName": "", "symbolType": "",
        "riskParameters": {"priceLimitRatioX": fmt(PERCENT_PRICE_UP - 1), "priceLimitRatioY": fmt(1 - PERCENT_PRICE_DOWN)},
    }


@ok
async def instruments_info(sim: Sim, request: web.Request, p: dict):
    c = category(p, CATEGORIES)
    if c != "linear":
        return {"category": c, "list": [], "nextPageCursor": ""}
    t = sim.now_ms()
    want = text(p, "status") or "Trading"  # Bybit lists Trading symbols unless asked for another status
    if text(p, "symbol"):
        specs = [sim.market.specs[text(p, "symbol")]] if text(p, "symbol") in sim.market.specs else []
    else:
        specs = list(sim.market.specs.values())
    base = text(p, "baseCoin")
    rows = [s for s in specs if _status(sim, s) == want and (not base or s.base == base)]
    chunk, nxt = page(rows, p, 500, 1000)
    return {"category": "linear", "list": [_instrument(sim, s, t) for s in chunk], "nextPageCursor": nxt}


def _ticker(sim: Sim, s: SymbolSpec, t: int) -> dict:
    m = sim.market
    mark = m.mark(s.id, t)
    bids, asks = m.depth(s.id, t, 1)
    return {
        "symbol": s.id, "lastPrice": fmt(mark), "indexPrice": fmt(m.index(s.id, t)), "markPrice": fmt(mark),
        "prevPrice24h": fmt(mark), "price24hPcnt": "0", "highPrice24h": fmt(mark), "lowPrice24h": fmt(mark),
        "prevPrice1h": fmt(mark), "openInterest": "0", "openInterestValue": "0", "turnover24h": "0",
        "volume24h": "0", "fundingRate": fmt(m.rate(s.id, t)), "nextFundingTime": str(m.next_funding_ms(s.id, t)),
        "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0",
        "ask1Size": fmt(asks[0][1]), "bid1Price": fmt(bids[0][0]), "ask1Price": fmt(asks[0][0]),
        "bid1Size": fmt(bids[0][1]), "basis": "", "preOpenPrice": "", "preQty": "", "curPreListingPhase": "",
        "fundingIntervalHour": str(m.interval_ms_for(s.id, t) // 3_600_000), "fundingCap": "0.02",
    }


@ok
async def tickers(sim: Sim, request: web.Request, p: dict):
    c = category(p, CATEGORIES)
    if c != "linear":
        if text(p, "symbol"):
            raise params_error("symbol invalid")
        return {"category": c, "list": []}
    t = sim.now_ms()
    specs = [spec(sim, p, market_data=True)] if text(p, "symbol") else list(sim.market.specs.values())
    return {"category": "linear", "list": [_ticker(sim, s, t) for s in specs]}


@ok
async def orderbook(sim: Sim, request: web.Request, p: dict):
    category(p)
    s = spec(sim, p, market_data=True)
    limit = integer(p, "limit", 25) or 25
    if not 1 <= limit <= 500:
        raise params_error("limit must be in [1, 500]")
    t = sim.now_ms()
    bids, asks = sim.market.depth(s.id, t, limit)
    return {"s": s.id, "b": [[fmt(px), fmt(q)] for px, q in bids], "a": [[fmt(px), fmt(q)] for px, q in asks],
            "ts": t, "u": t, "seq": t, "cts": t}


@ok
async def funding_history(sim: Sim, request: web.Request, p: dict):
    category(p)
    s = spec(sim, p, market_data=True)
    limit = integer(p, "limit", 200) or 200
    if not 1 <= limit <= 200:
        raise params_error("limit must be in [1, 200]")
    start, end = integer(p, "startTime"), integer(p, "endTime")
    if start is not None and end is None:
        raise params_error("endTime is required when startTime is set")
    rows = sim.store.funding_history(s.id, start, end, limit)[::-1]  # newest first
    return {"category": "linear", "list": [{"symbol": sym, "fundingRate": fmt(D(r)), "fundingRateTimestamp": str(ft)}
                                           for sym, ft, r, _mk in rows]}
