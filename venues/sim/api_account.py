"""Signed account handlers of the Binance USD-M dialect: account, balance, positionRisk,
leverage, leverage brackets (one bracket per symbol: its maintenance margin rate drives the
liquidation engine), margin type (CROSSED / ISOLATED, isolated margin allocated to the
position), the fixed position mode, plus the account numbers the admin ``/_sim/state`` view
shares."""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web

from .errors import SimError
from .records import Mutation, fmt
from .venue import Sim
from .wire import param_int

D = Decimal


def account_numbers(sim: Sim) -> dict:
    e = sim.engine
    marks = sim.marks()
    upnl = e.unrealized(marks)
    pim = e.position_initial_margin(marks)
    oim = e.open_order_initial_margin()
    mm = e.maint_margin(marks)
    avail = e.available(marks)
    return {"marks": marks, "wallet": e.wallet, "upnl": upnl, "pim": pim, "oim": oim, "mm": mm,
            "avail": avail, "margin_balance": e.wallet + upnl, "update": e.wallet_update_time or 1,
            "cross_wallet": e.cross_wallet(), "cross_upnl": e.cross_unrealized(marks)}


def position_json(sim: Sim, sym: str, marks: dict, v2: bool, base: D | None = None) -> dict:
    """One position as positionRisk shows it; ``base``: ``Engine.cross_base(marks)`` when the
    caller lists many (computed once for all of them)."""
    e = sim.engine
    pos = e.position(sym)
    spec = sim.market.specs[sym]
    mark = marks.get(sym) or sim.market.mark(sym, sim.now_ms())
    lev = e.get_leverage(sym)
    notional = pos.qty * mark
    upnl = pos.qty * (mark - pos.entry) if pos.qty else D(0)
    liq = e.liquidation_price(sym, marks if sym in marks else {**marks, sym: mark}, base) if pos.qty else D(0)
    im = abs(notional) / lev
    pp = spec.price_precision
    iso = e.is_isolated(sym)
    d = {
        "symbol": sym, "positionSide": "BOTH", "positionAmt": fmt(pos.qty),
        "entryPrice": fmt(pos.entry), "breakEvenPrice": fmt(pos.entry),
        "markPrice": fmt(mark), "unRealizedProfit": fmt(upnl.quantize(D("0.00000001"))),
        "liquidationPrice": fmt(liq.quantize(D(1).scaleb(-pp))) if liq else "0",
        "isolatedMargin": fmt(pos.iso_margin + upnl) if iso and pos.qty else "0", "notional": fmt(notional),
        "marginAsset": "USDT", "isolatedWallet": fmt(pos.iso_margin) if iso else "0",
        "initialMargin": fmt(im), "maintMargin": fmt(abs(notional) * e.mmr(sym)),
        "positionInitialMargin": fmt(im), "openOrderInitialMargin": "0", "adl": 1 if pos.qty else 0,
        "bidNotional": "0", "askNotional": "0", "updateTime": pos.update_time,
        # v2 fields, also served on v3 for convenience
        "leverage": str(lev), "marginType": "isolated" if iso else "cross", "isAutoAddMargin": "false",
        "maxNotionalValue": "1000000000",
    }
    if not v2:
        d.pop("isAutoAddMargin")
    return d


def _account(sim: Sim, v3: bool) -> dict:
    n = account_numbers(sim)
    asset = {
        "asset": "USDT", "walletBalance": fmt(n["wallet"]), "unrealizedProfit": fmt(n["upnl"]),
        "marginBalance": fmt(n["margin_balance"]), "maintMargin": fmt(n["mm"]),
        "initialMargin": fmt(n["pim"] + n["oim"]), "positionInitialMargin": fmt(n["pim"]),
        "openOrderInitialMargin": fmt(n["oim"]), "crossWalletBalance": fmt(n["cross_wallet"]),
        "crossUnPnl": fmt(n["cross_upnl"]), "availableBalance": fmt(n["avail"]),
        "maxWithdrawAmount": fmt(max(n["avail"], D(0))), "marginAvailable": True, "updateTime": n["update"],
    }
    positions, base = [], sim.engine.cross_base(n["marks"])
    for sym, pos in sim.engine.positions.items():
        if sym not in sim.market.specs or (v3 and not pos.qty):
            continue
        pj = position_json(sim, sym, n["marks"], not v3, base)
        positions.append({k: pj[k] for k in (
            "symbol", "positionSide", "positionAmt", "isolatedMargin", "notional", "isolatedWallet",
            "initialMargin", "maintMargin", "updateTime")} | {"unrealizedProfit": pj["unRealizedProfit"]}
            | ({} if v3 else {"leverage": pj["leverage"], "entryPrice": pj["entryPrice"],
                               "isolated": pj["marginType"] == "isolated",
                               "positionInitialMargin": pj["positionInitialMargin"],
                               "openOrderInitialMargin": "0", "maxNotional": "1000000000",
                               "bidNotional": "0", "askNotional": "0", "breakEvenPrice": pj["breakEvenPrice"]}))
    acct = {
        "totalInitialMargin": fmt(n["pim"] + n["oim"]), "totalMaintMargin": fmt(n["mm"]),
        "totalWalletBalance": fmt(n["wallet"]), "totalUnrealizedProfit": fmt(n["upnl"]),
        "totalMarginBalance": fmt(n["margin_balance"]), "totalPositionInitialMargin": fmt(n["pim"]),
        "totalOpenOrderInitialMargin": fmt(n["oim"]), "totalCrossWalletBalance": fmt(n["cross_wallet"]),
        "totalCrossUnPnl": fmt(n["cross_upnl"]), "availableBalance": fmt(n["avail"]),
        "maxWithdrawAmount": fmt(max(n["avail"], D(0))), "assets": [asset], "positions": positions,
    }
    if not v3:
        acct = {"feeTier": 0, "feeBurn": False, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1} | acct
    return acct


async def account_v2(sim: Sim, request: web.Request, p: dict):
    return _account(sim, False)


async def account_v3(sim: Sim, request: web.Request, p: dict):
    return _account(sim, True)


async def balance(sim: Sim, request: web.Request, p: dict):
    n = account_numbers(sim)
    return [{"accountAlias": "SgsR", "asset": "USDT", "balance": fmt(n["wallet"]),
             "crossWalletBalance": fmt(n["cross_wallet"]), "crossUnPnl": fmt(n["cross_upnl"]),
             "availableBalance": fmt(n["avail"]), "maxWithdrawAmount": fmt(max(n["avail"], D(0))),
             "marginAvailable": True, "updateTime": n["update"]}]


async def _position_risk(sim: Sim, p: dict, v2: bool):
    marks = sim.marks()
    if p.get("symbol"):
        syms = [sim.spec(p["symbol"]).id]
    elif v2:
        syms = list(sim.market.specs)
    else:
        syms = [s for s, pos in sim.engine.positions.items() if pos.qty and s in sim.market.specs]
    out, base = [], sim.engine.cross_base(marks)
    for s in syms:
        pos = sim.engine.position(s)
        if not v2 and not pos.qty:
            continue
        out.append(position_json(sim, s, marks, v2, base))
    return out


async def position_risk_v2(sim: Sim, request: web.Request, p: dict):
    return await _position_risk(sim, p, True)


async def position_risk_v3(sim: Sim, request: web.Request, p: dict):
    return await _position_risk(sim, p, False)


async def leverage(sim: Sim, request: web.Request, p: dict):
    s = sim.spec(p.get("symbol"))
    lev = param_int(p, "leverage")
    if lev is None or not 1 <= lev <= s.max_leverage:
        raise SimError(-4028, f"Leverage {lev} is not valid")
    sim.engine.leverage[s.id] = lev
    sim.store.save_leverage(s.id, lev)
    return {"leverage": lev, "maxNotionalValue": "1000000000", "symbol": s.id}


async def leverage_bracket(sim: Sim, request: web.Request, p: dict):
    specs = [sim.spec(p["symbol"])] if p.get("symbol") else list(sim.market.specs.values())
    return [{"symbol": s.id, "notionalCoef": 1.0, "brackets": [
        {"bracket": 1, "initialLeverage": s.max_leverage, "notionalCap": 1000000000, "notionalFloor": 0,
         "maintMarginRatio": float(s.mmr), "cum": 0.0}]} for s in specs]


async def symbol_config(sim: Sim, request: web.Request, p: dict):
    specs = [sim.spec(p["symbol"])] if p.get("symbol") else list(sim.market.specs.values())
    return [{"symbol": s.id, "marginType": "ISOLATED" if sim.engine.is_isolated(s.id) else "CROSSED",
             "isAutoAddMargin": "false",
             "leverage": sim.engine.get_leverage(s.id), "maxNotionalValue": "1000000000"} for s in specs]


async def commission_rate(sim: Sim, request: web.Request, p: dict):
    s = sim.spec(p.get("symbol"))
    return {"symbol": s.id, "makerCommissionRate": fmt(sim.engine.maker_fee),
            "takerCommissionRate": fmt(sim.engine.taker_fee)}


async def get_dual(sim: Sim, request: web.Request, p: dict):
    return {"dualSidePosition": False}


async def post_dual(sim: Sim, request: web.Request, p: dict):
    v = str(p.get("dualSidePosition", "")).lower()
    if v == "false":
        return {"code": 200, "msg": "success"}
    raise SimError(-4059, "No need to change position side. (simulator supports one-way mode only)")


async def multi_assets(sim: Sim, request: web.Request, p: dict):
    return {"multiAssetsMargin": False}


async def margin_type(sim: Sim, request: web.Request, p: dict):
    s = sim.spec(p.get("symbol"))
    want = str(p.get("marginType", "")).upper()
    if want not in ("CROSSED", "ISOLATED"):
        raise SimError(-1130, "Data sent for parameter 'marginType' is not valid.")
    e = sim.engine
    if (want == "ISOLATED") == e.is_isolated(s.id):
        raise SimError(-4046, "No need to change margin type.")
    if e.open_orders(s.id):
        raise SimError(-4047, "Margin type cannot be changed if there exists open orders.")
    if e.position(s.id).qty:
        raise SimError(-4048, "Margin type cannot be changed if there exists position.")
    if want == "ISOLATED":
        e.isolated.add(s.id)
    else:
        e.isolated.discard(s.id)
    sim.persist(Mutation(meta={f"margin_type:{s.id}": want}))
    return {"code": 200, "msg": "success"}
