"""Public handlers of the OKX dialect: system time and status, instruments (USDT-margined
perpetual swaps only; other instrument types answer an empty list), funding rate (one
``instId`` or ``ANY``), funding rate history, mark price, order books, tickers; and the
currency list of the (signed) ``/asset/currencies``.

Every handler is ``async (sim, request, params) -> data list``; quantities are contracts."""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web

from ..records import fmt
from ..venue import Sim
from .wire import INST_TYPE, contracts, ct_val, err_param, inst_filter, inst_id, integer, spec_of

D = Decimal

#: OKX's instrument state of the core's (Binance) contract statuses
STATE = {"TRADING": "live", "PENDING_TRADING": "preopen"}


def _swap_only(p: dict, required: bool = True) -> bool:
    """True when the request asks for SWAP instruments; other instrument types are empty here."""
    t = p.get("instType")
    if not t:
        if required:
            raise err_param("instType")
        return True
    if str(t).upper() not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
        raise err_param("instType")
    return str(t).upper() == INST_TYPE


async def server_time(sim: Sim, request: web.Request, p: dict):
    return [{"ts": str(sim.now_ms())}]


async def system_status(sim: Sim, request: web.Request, p: dict):
    return []


async def instruments(sim: Sim, request: web.Request, p: dict):
    if not _swap_only(p):
        return []
    specs = inst_filter(sim, p) or list(sim.market.specs.values())
    out = []
    for s in specs:
        cv = ct_val(sim, s)
        out.append({
            "instType": INST_TYPE, "instId": inst_id(s), "uly": f"{s.base}-{s.quote}",
            "instFamily": f"{s.base}-{s.quote}", "baseCcy": "", "quoteCcy": "", "settleCcy": s.quote,
            "ctVal": fmt(cv), "ctMult": "1", "ctValCcy": s.base, "ctType": "linear", "optType": "", "stk": "",
            "listTime": str(s.onboard_ms), "contTdSwTime": str(s.onboard_ms), "expTime": "",
            "lever": str(s.max_leverage), "tickSz": fmt(s.tick), "lotSz": fmt(s.step / cv),
            "minSz": fmt(s.min_qty / cv), "maxLmtSz": fmt(s.max_qty / cv), "maxMktSz": fmt(s.market_max_qty / cv),
            "maxLmtAmt": "20000000", "maxMktAmt": "", "maxTwapSz": "", "maxIcebergSz": "", "maxTriggerSz": "",
            "maxStopSz": fmt(s.market_max_qty / cv), "state": STATE.get(sim.faults.status(s.symbol), "suspend"),
            "ruleType": "normal", "alias": "", "category": "1", "openType": "", "auctionEndTime": "",
            "futureSettlement": False, "instIdCode": None, "seriesId": "", "groupId": "1",
        })
    return out


def _funding(sim: Sim, s, t: int) -> dict:
    m = sim.market
    nxt = m.next_funding_ms(s.id, t)
    iv = m.interval_ms_for(s.id, t)  # replay: the data's interval, as the Binance dialect's fundingIntervalHours
    rate = fmt(m.rate(s.id, t))
    return {
        "instType": INST_TYPE, "instId": inst_id(s), "method": "current_period", "formulaType": "noRate",
        "fundingRate": rate, "nextFundingRate": "", "fundingTime": str(nxt), "nextFundingTime": str(nxt + iv),
        "minFundingRate": "-0.02", "maxFundingRate": "0.02", "settState": "settled", "settFundingRate": rate,
        "premium": "0", "interestRate": "0", "impactValue": "", "ts": str(t),
    }


async def funding_rate(sim: Sim, request: web.Request, p: dict):
    t = sim.now_ms()
    if p.get("instId") == "ANY":
        return [_funding(sim, s, t) for s in sim.market.specs.values()]
    return [_funding(sim, spec_of(sim, p.get("instId")), t)]


async def funding_rate_history(sim: Sim, request: web.Request, p: dict):
    s = spec_of(sim, p.get("instId"))
    limit = min(max(integer(p, "limit", 100) or 100, 1), 400)
    after, before = integer(p, "after"), integer(p, "before")  # fundingTime: older than / newer than
    rows = sim.store.funding_history(s.id, None if before is None else before + 1,
                                     None if after is None else after - 1, limit)
    return [{"instType": INST_TYPE, "instId": inst_id(s), "formulaType": "noRate", "fundingRate": fmt(D(r)),
             "realizedRate": fmt(D(r)), "fundingTime": str(t), "method": "current_period"}
            for _, t, r, _ in reversed(rows)]


async def mark_price(sim: Sim, request: web.Request, p: dict):
    if not _swap_only(p, required=not p.get("instId")):  # ccxt's fetchMarkPrice sends instId alone
        return []
    t = sim.now_ms()
    specs = inst_filter(sim, p) or list(sim.market.specs.values())
    return [{"instType": INST_TYPE, "instId": inst_id(s), "markPx": fmt(sim.market.mark(s.id, t)), "ts": str(t)}
            for s in specs]


async def books(sim: Sim, request: web.Request, p: dict):
    s = spec_of(sim, p.get("instId"))
    sz = integer(p, "sz", 1) or 1
    t = sim.now_ms()
    bids, asks = sim.market.depth(s.id, t, max(sz, 1))
    row = lambda px, q: [fmt(px), contracts(sim, s, q), "0", "1"]  # noqa: E731
    return [{"asks": [row(px, q) for px, q in asks], "bids": [row(px, q) for px, q in bids], "ts": str(t)}]


def _ticker(sim: Sim, s, t: int) -> dict:
    bids, asks = sim.market.depth(s.id, t, 1)
    mark = fmt(sim.market.mark(s.id, t))
    return {"instType": INST_TYPE, "instId": inst_id(s), "last": mark, "lastSz": "0",
            "askPx": fmt(asks[0][0]), "askSz": contracts(sim, s, asks[0][1]),
            "bidPx": fmt(bids[0][0]) if bids else "", "bidSz": contracts(sim, s, bids[0][1]) if bids else "0",
            "open24h": mark, "high24h": mark, "low24h": mark, "volCcy24h": "0", "vol24h": "0",
            "sodUtc0": mark, "sodUtc8": mark, "ts": str(t)}


async def ticker(sim: Sim, request: web.Request, p: dict):
    return [_ticker(sim, spec_of(sim, p.get("instId")), sim.now_ms())]


async def tickers(sim: Sim, request: web.Request, p: dict):
    if not _swap_only(p):
        return []
    t = sim.now_ms()
    return [_ticker(sim, s, t) for s in sim.market.specs.values()]


async def currencies(sim: Sim, request: web.Request, p: dict):
    codes = ["USDT"] + sorted({s.base for s in sim.market.specs.values()})
    want = set(str(p["ccy"]).split(",")) if p.get("ccy") else None
    return [{"ccy": c, "name": c, "chain": f"{c}-ERC20", "canDep": True, "canWd": True, "canInternal": True,
             "minWd": "1", "maxWd": "1000000", "wdTickSz": "8", "minFee": "0", "maxFee": "0", "fee": "0",
             "mainNet": True, "logoLink": ""} for c in codes if want is None or c in want]
