"""Signed account handlers of the OKX dialect: account config (``posMode``), balance,
positions (``pos`` in contracts, ``posSide`` net), set leverage / leverage info, set position
mode (net_mode only: the core keeps one net position per symbol), bills (type 8 funding fee,
type 2 trade) for ``/account/bills`` and ``/account/bills-archive``.

Every handler is ``async (sim, request, params) -> data list``."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from aiohttp import web

from ..api_account import account_numbers, position_json
from ..records import ZERO, fmt
from ..venue import Sim
from .wire import INST_TYPE, OkxError, contracts, err_empty, err_param, inst_filter, inst_id, page, spec_of

D = Decimal


def _uid(sim: Sim) -> str:
    return str(int.from_bytes(hashlib.sha256(sim.opts.name.encode()).digest()[:7], "big"))


async def config(sim: Sim, request: web.Request, p: dict):
    uid = _uid(sim)
    return [{"uid": uid, "mainUid": uid, "acctLv": "2", "acctStpMode": "cancel_maker", "posMode": "net_mode",
             "autoLoan": False, "greeksType": "PA", "level": "Lv1", "levelTmp": "", "ctIsoMode": "automatic",
             "mgnIsoMode": "automatic", "spotOffsetType": "", "roleType": "0", "traderInsts": [],
             "spotRoleType": "0", "spotTraderInsts": [], "opAuth": "0", "kycLv": "2", "label": "hedgeflow-sim",
             "ip": "", "perm": "read_only,trade", "liquidationGear": "-1", "enableSpotBorrow": False,
             "spotBorrowAutoRepay": False, "type": "0", "feeType": "0", "settleCcy": "USDT",
             "settleCcyList": ["USDT"]}]


async def balance(sim: Sim, request: web.Request, p: dict):
    n = account_numbers(sim)
    if p.get("ccy") and "USDT" not in str(p["ccy"]).split(","):
        details = []
    else:
        eq = n["margin_balance"]
        avail = max(n["avail"], ZERO)
        details = [{
            "ccy": "USDT", "eq": fmt(eq), "cashBal": fmt(n["wallet"]), "availBal": fmt(avail),
            "availEq": fmt(avail), "frozenBal": fmt(max(eq - avail, ZERO)), "ordFrozen": fmt(n["oim"]),
            "isoEq": fmt(n["wallet"] - n["cross_wallet"]), "upl": fmt(n["upnl"]), "uplLiab": "0",
            "imr": fmt(n["pim"] + n["oim"]), "mmr": fmt(n["mm"]), "mgnRatio": fmt((eq / n["mm"]).quantize(D("1e-8")))
            if n["mm"] else "", "notionalLever": "", "disEq": fmt(eq), "eqUsd": fmt(eq), "liab": "", "interest": "",
            "crossLiab": "", "isoLiab": "", "maxLoan": "", "stgyEq": "0", "twap": "0", "spotInUseAmt": "",
            "clSpotInUseAmt": "", "maxSpotInUse": "", "spotIsoBal": "0", "smtSyncEq": "0", "spotCopyTradingEq": "0",
            "fixedBal": "0", "borrowFroz": "", "rewardBal": "0", "uTime": str(n["update"]),
        }]
    eq = n["margin_balance"]
    return [{"adjEq": fmt(eq), "availEq": fmt(max(n["avail"], ZERO)), "borrowFroz": "", "imr": fmt(n["pim"] + n["oim"]),
             "isoEq": fmt(n["wallet"] - n["cross_wallet"]), "mgnRatio": "", "mmr": fmt(n["mm"]),
             "notionalUsd": "", "ordFroz": fmt(n["oim"]), "totalEq": fmt(eq), "upl": fmt(n["upnl"]),
             "uTime": str(n["update"]), "details": details}]


async def positions(sim: Sim, request: web.Request, p: dict):
    t = p.get("instType")
    if t and str(t).upper() != INST_TYPE:
        if str(t).upper() not in ("MARGIN", "FUTURES", "OPTION"):
            raise err_param("instType")
        return []
    want = inst_filter(sim, p)
    ids = {s.id for s in want} if want is not None else None
    marks = sim.marks()
    out, base = [], sim.engine.cross_base(marks)
    for sym, pos in sim.engine.positions.items():
        if not pos.qty or sym not in sim.market.specs or (ids is not None and sym not in ids):
            continue
        s = sim.market.specs[sym]
        pj = position_json(sim, sym, marks, True, base)
        iso = sim.engine.is_isolated(sym)
        upl = D(pj["unRealizedProfit"])
        im = D(pj["initialMargin"])
        out.append({
            "instType": INST_TYPE, "instId": inst_id(s), "mgnMode": "isolated" if iso else "cross",
            "posId": str(int.from_bytes(hashlib.sha256(f"{sim.opts.name}|{sym}".encode()).digest()[:7], "big")),
            "posSide": "net", "pos": contracts(sim, s, pos.qty), "posCcy": "", "ccy": "USDT",
            "availPos": contracts(sim, s, abs(pos.qty)) if iso else "", "avgPx": pj["entryPrice"],
            "nonSettleAvgPx": "", "markPx": pj["markPrice"], "upl": pj["unRealizedProfit"],
            "uplRatio": fmt((upl / im).quantize(D("1e-8"))) if im else "0", "uplLastPx": pj["unRealizedProfit"],
            "lever": pj["leverage"], "liqPx": pj["liquidationPrice"] if pj["liquidationPrice"] != "0" else "",
            "imr": "" if iso else pj["initialMargin"], "margin": pj["isolatedMargin"] if iso else "",
            "mgnRatio": "", "mmr": pj["maintMargin"], "liab": "", "liabCcy": "", "interest": "0",
            "tradeId": "", "optVal": "", "pendingCloseOrdLiabVal": "", "notionalUsd": fmt(abs(D(pj["notional"]))),
            "adl": "1", "last": pj["markPrice"], "idxPx": fmt(sim.market.index(sym, sim.now_ms())),
            "usdPx": "", "bePx": pj["breakEvenPrice"], "deltaBS": "", "deltaPA": "", "gammaBS": "", "gammaPA": "",
            "thetaBS": "", "thetaPA": "", "vegaBS": "", "vegaPA": "", "spotInUseAmt": "", "spotInUseCcy": "",
            "clSpotInUseAmt": "", "maxSpotInUseAmt": "", "bizRefId": "", "bizRefType": "", "realizedPnl": "",
            "settledPnl": "", "pnl": "", "fee": "", "fundingFee": "", "liqPenalty": "", "closeOrderAlgo": [],
            "cTime": str(pos.update_time), "uTime": str(pos.update_time),
        })
    return out


def _mgn_mode(p: dict) -> str:
    m = p.get("mgnMode")
    if not m:
        raise err_empty("mgnMode")
    if m not in ("cross", "isolated"):
        raise err_param("mgnMode")
    return str(m)


async def set_leverage(sim: Sim, request: web.Request, p: dict):
    mode = _mgn_mode(p)
    s = spec_of(sim, p.get("instId"))
    raw = p.get("lever")
    if raw is None or raw == "":
        raise err_empty("lever")
    try:
        lev_d = D(str(raw))
    except ArithmeticError:
        raise err_param("lever") from None
    if not lev_d.is_finite() or lev_d < 1 or lev_d != lev_d.to_integral_value():
        raise err_param("lever")  # the core keeps whole leverages
    if lev_d > s.max_leverage:
        raise OkxError("59102", f"Leverage exceeds the maximum leverage ({s.max_leverage}x). Please adjust the leverage.")
    sim.engine.leverage[s.id] = int(lev_d)
    sim.store.save_leverage(s.id, int(lev_d))
    return [{"instId": inst_id(s), "lever": str(int(lev_d)), "mgnMode": mode, "posSide": p.get("posSide") or "net"}]


async def leverage_info(sim: Sim, request: web.Request, p: dict):
    mode = _mgn_mode(p)
    specs = inst_filter(sim, p)
    if specs is None:
        raise err_empty("instId")
    return [{"instId": inst_id(s), "mgnMode": mode, "posSide": "net", "ccy": "",
             "lever": str(sim.engine.get_leverage(s.id))} for s in specs]


async def set_position_mode(sim: Sim, request: web.Request, p: dict):
    mode = p.get("posMode")
    if not mode:
        raise err_empty("posMode")
    if mode == "net_mode":
        return [{"posMode": "net_mode"}]
    if mode == "long_short_mode":
        raise OkxError("51000", "Parameter posMode error: the simulated venue supports net_mode only.")
    raise err_param("posMode")


# ---- bills ------------------------------------------------------------------------------
def _balances_after(sim: Sim) -> dict[int, Decimal]:
    """Wallet balance after each income (by tran id), walking back from the current wallet."""
    bal, out = sim.engine.wallet, {}
    for i in reversed(sim.engine.income):
        out[i.tran_id] = bal
        bal -= i.income
    return out


async def bills(sim: Sim, request: web.Request, p: dict):
    t = p.get("instType")
    if (t and str(t).upper() != INST_TYPE) or (p.get("ccy") and p["ccy"] != "USDT") \
            or (p.get("ctType") and p["ctType"] != "linear"):
        return []
    kind = str(p.get("type") or "")
    sub = str(p.get("subType") or "")
    want = inst_filter(sim, p)
    ids = {s.id for s in want} if want is not None else None
    after = _balances_after(sim)
    mgn = lambda sym: "isolated" if sim.engine.is_isolated(sym) else "cross"  # noqa: E731
    rows: list[dict] = []
    if kind in ("", "8"):
        for i in sim.engine.income:
            if i.income_type != "FUNDING_FEE" or i.symbol not in sim.market.specs or (ids and i.symbol not in ids):
                continue
            s = sim.market.specs[i.symbol]
            rows.append(_bill(i.tran_id, "8", "174" if i.income > 0 else "173", s, i.time, i.income, ZERO, i.income,
                              after.get(i.tran_id, sim.engine.wallet), mgn(i.symbol)))
    if kind in ("", "2"):
        last_of_trade: dict[str, int] = {}
        for i in sim.engine.income:
            if i.trade_id:
                last_of_trade[i.trade_id] = i.tran_id
        for tr in sim.engine.trades:
            if tr.symbol not in sim.market.specs or (ids and tr.symbol not in ids):
                continue
            s = sim.market.specs[tr.symbol]
            b = _bill(tr.id, "2", "1" if tr.side == "BUY" else "2", s, tr.time, tr.realized_pnl, -tr.commission,
                      tr.realized_pnl - tr.commission, after.get(last_of_trade.get(str(tr.id), -1), sim.engine.wallet),
                      mgn(tr.symbol))
            b.update(ordId=str(tr.order_id), tradeId=str(tr.id), px=fmt(tr.price), sz=contracts(sim, s, tr.qty),
                     execType="T", fillTime=str(tr.time))
            rows.append(b)
    if sub:
        rows = [r for r in rows if r["subType"] == sub]
    rows.sort(key=lambda r: (int(r["ts"]), int(r["billId"])), reverse=True)
    return page(rows, lambda r: (int(r["billId"]), int(r["ts"])), p)


def _bill(bill_id: int, kind: str, sub: str, s, ts: int, pnl: Decimal, fee: Decimal, chg: Decimal, bal: Decimal,
          mgn: str) -> dict:
    return {"bal": fmt(bal), "balChg": fmt(chg), "billId": str(bill_id), "ccy": "USDT", "clOrdId": "", "execType": "",
            "fee": fmt(fee), "fillFwdPx": "", "fillIdxPx": "", "fillMarkPx": "", "fillMarkVol": "", "fillPxUsd": "",
            "fillPxVol": "", "fillTime": "", "from": "", "instId": inst_id(s), "instType": INST_TYPE, "interest": "0",
            "mgnMode": mgn, "notes": "", "ordId": "", "pnl": fmt(pnl), "posBal": "0", "posBalChg": "0", "px": "",
            "subType": sub, "sz": "", "tag": "", "to": "", "tradeId": "", "ts": str(ts), "type": kind}
