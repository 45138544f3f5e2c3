"""Signed account handlers of the Bybit dialect: API-key and account info (a UTA 2.0 account,
what ccxt's ``is_unified_enabled`` asks first), coin info, wallet balance (UNIFIED, USDT),
positions (one-way, ``positionIdx`` 0), leverage, position mode, account margin mode, fee
rates and the transaction log (TRADE and SETTLEMENT rows)."""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web

from ..api_account import account_numbers
from ..records import Mutation, fmt
from ..venue import Sim
from .common import body_params, category, integer, ok, page, spec, text
from .errors import bybit, params_error

D = Decimal
Q8 = D("0.00000001")


@ok
async def query_api(sim: Sim, request: web.Request, p: dict):
    return {"id": "1", "note": "hedgeflow-sim", "apiKey": sim.opts.api_key, "readOnly": 0, "secret": "",
            "permissions": {"ContractTrade": ["Order", "Position"], "Spot": [], "Wallet": ["AccountTransfer"],
                            "Options": [], "Derivatives": [], "CopyTrading": [], "BlockTrade": [], "Exchange": [],
                            "NFT": [], "Affiliate": []},
            "ips": ["*"], "type": 1, "deadlineDay": 90, "expiredAt": "", "createdAt": "2024-01-01T00:00:00Z",
            "unified": 0, "uta": 1, "userID": 100000001, "inviterID": 0, "vipLevel": "No VIP",
            "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "", "isMaster": True}


def _margin_mode(sim: Sim) -> str:
    specs = sim.market.specs
    return "ISOLATED_MARGIN" if specs and all(sim.engine.is_isolated(s) for s in specs) else "REGULAR_MARGIN"


@ok
async def account_info(sim: Sim, request: web.Request, p: dict):
    return {"marginMode": _margin_mode(sim), "updatedTime": str(sim.started_ms), "unifiedMarginStatus": 6,
            "dcpStatus": "OFF", "timeWindow": 10, "smpGroup": 0, "isMasterTrader": False, "spotHedgingStatus": "OFF"}


@ok
async def coin_info(sim: Sim, request: web.Request, p: dict):
    coins = ["USDT"] + sorted({s.base for s in sim.market.specs.values()})
    return {"rows": [{"name": c, "coin": c, "remainAmount": "0", "chains": []} for c in coins]}


@ok
async def wallet_balance(sim: Sim, request: web.Request, p: dict):
    at = text(p, "accountType")
    if not at:
        raise params_error("accountType is required")
    if at != "UNIFIED":
        raise bybit(10001, "accountType only support UNIFIED.")
    n = account_numbers(sim)
    im, mm = n["pim"] + n["oim"], n["mm"]
    equity = n["margin_balance"]
    coin = {"availableToBorrow": "", "bonus": "0", "accruedInterest": "0", "availableToWithdraw": "",
            "totalOrderIM": fmt(n["oim"]), "equity": fmt(equity), "totalPositionMM": fmt(mm), "usdValue": fmt(equity),
            "spotHedgingQty": "0", "unrealisedPnl": fmt(n["upnl"]), "collateralSwitch": True, "borrowAmount": "0",
            "totalPositionIM": fmt(n["pim"]), "walletBalance": fmt(n["wallet"]), "cumRealisedPnl": "0",
            "locked": "0", "marginCollateral": True, "coin": "USDT"}
    if text(p, "coin") and "USDT" not in text(p, "coin").split(","):
        coins = []
    else:
        coins = [coin]
    return {"list": [{
        "totalEquity": fmt(equity), "accountIMRate": fmt((im / equity).quantize(D("0.0001"))) if equity > 0 else "0",
        "totalMarginBalance": fmt(equity), "totalInitialMargin": fmt(im), "accountType": "UNIFIED",
        "totalAvailableBalance": fmt(n["avail"]),
        "accountMMRate": fmt((mm / equity).quantize(D("0.0001"))) if equity > 0 else "0",
        "totalPerpUPL": fmt(n["upnl"]), "totalWalletBalance": fmt(n["wallet"]), "accountLTV": "0",
        "totalMaintenanceMargin": fmt(mm), "coin": coins}]}


def position_json(sim: Sim, sym: str, marks: dict, base: Decimal | None = None) -> dict:
    e = sim.engine
    pos = e.position(sym)
    s = sim.market.specs[sym]
    mark = marks.get(sym) or sim.market.mark(sym, sim.now_ms())
    lev = e.get_leverage(sym)
    value = abs(pos.qty) * pos.entry
    upnl = (pos.qty * (mark - pos.entry)).quantize(Q8) if pos.qty else D(0)
    liq = e.liquidation_price(sym, marks if sym in marks else {**marks, sym: mark}, base) if pos.qty else D(0)
    im = abs(pos.qty) * mark / lev
    q = D(1).scaleb(-s.price_precision)
    t = sim.now_ms()
    return {
        "positionIdx": 0, "riskId": 1, "riskLimitValue": "1000000000", "symbol": sym,
        "side": ("Buy" if pos.qty > 0 else "Sell") if pos.qty else "", "size": fmt(abs(pos.qty)),
        "avgPrice": fmt(pos.entry), "positionValue": fmt(value) if pos.qty else "",
        "tradeMode": 1 if e.is_isolated(sym) else 0, "positionStatus": "Normal", "autoAddMargin": 0,
        "adlRankIndicator": 2 if pos.qty else 0, "leverage": str(lev),
        "positionBalance": fmt(pos.iso_margin) if e.is_isolated(sym) and pos.qty else fmt(im.quantize(Q8)) if pos.qty else "0",
        "markPrice": fmt(mark), "liqPrice": fmt(liq.quantize(q)) if liq else "", "bustPrice": "",
        "positionMM": fmt((abs(pos.qty) * mark * e.mmr(sym)).quantize(Q8)), "positionIM": fmt(im.quantize(Q8)),
        "tpslMode": "Full", "takeProfit": "", "stopLoss": "", "trailingStop": "0", "unrealisedPnl": fmt(upnl),
        "curRealisedPnl": "0", "cumRealisedPnl": "0", "seq": t, "isReduceOnly": False, "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "", "sessionAvgPrice": "", "createdTime": str(pos.update_time or sim.started_ms),
        "updatedTime": str(pos.update_time or sim.started_ms),
    }


@ok
async def position_list(sim: Sim, request: web.Request, p: dict):
    category(p)
    if text(p, "symbol"):
        syms = [spec(sim, p).id]
    elif text(p, "settleCoin") or text(p, "baseCoin"):
        settle, base = text(p, "settleCoin"), text(p, "baseCoin")
        syms = [s for s, pos in sim.engine.positions.items() if pos.qty and s in sim.market.specs
                and (not settle or settle == "USDT") and (not base or sim.market.specs[s].base == base)]
    else:
        raise params_error("symbol or settleCoin is required")
    marks = sim.marks()
    rows, nxt = page(sorted(syms), p, 20, 200)
    base = sim.engine.cross_base(marks)
    return {"category": "linear", "list": [position_json(sim, s, marks, base) for s in rows], "nextPageCursor": nxt}


@body_params
@ok
async def set_leverage(sim: Sim, request: web.Request, p: dict):
    category(p)
    s = spec(sim, p)
    buy, sell = text(p, "buyLeverage"), text(p, "sellLeverage")
    if not buy or not sell:
        raise params_error("buyLeverage and sellLeverage are required")
    if buy != sell:
        raise bybit(10001, "buy leverage must be equal to sell leverage in one-way mode")
    try:
        lev_d = D(buy)
    except ArithmeticError:
        raise params_error("leverage invalid") from None
    if not lev_d.is_finite() or lev_d != lev_d.to_integral_value() or not 1 <= lev_d <= s.max_leverage:
        raise bybit(10001, f"leverage invalid, must be an integer in [1, {s.max_leverage}] on this venue")
    lev = int(lev_d)
    if lev == sim.engine.get_leverage(s.id):
        raise bybit(110043, "leverage not modified")
    sim.engine.leverage[s.id] = lev
    sim.store.save_leverage(s.id, lev)
    return {}


@body_params
@ok
async def switch_mode(sim: Sim, request: web.Request, p: dict):
    category(p)
    if text(p, "symbol"):
        spec(sim, p)
    elif not text(p, "coin"):
        raise params_error("symbol or coin is required")
    mode = text(p, "mode")
    if mode not in ("0", "3"):
        raise params_error("mode invalid")
    if mode == "3":
        raise bybit(110029, "Hedge mode is not available on this venue (one-way mode only)")
    raise bybit(110025, "Position mode is not modified")


@body_params
@ok
async def set_margin_mode(sim: Sim, request: web.Request, p: dict):
    want = text(p, "setMarginMode")
    if want not in ("ISOLATED_MARGIN", "REGULAR_MARGIN", "PORTFOLIO_MARGIN"):
        raise params_error("setMarginMode invalid")
    if want == "PORTFOLIO_MARGIN":
        raise bybit(110073, "Set margin mode failed")
    e = sim.engine
    if want == _margin_mode(sim):
        return {"reasons": []}
    if e.open_orders() or any(pos.qty for pos in e.positions.values()):
        raise bybit(110073, "Set margin mode failed: close all positions and cancel all orders first")
    meta = {}
    for sym in sim.market.specs:
        if want == "ISOLATED_MARGIN":
            e.isolated.add(sym)
        else:
            e.isolated.discard(sym)
        meta[f"margin_type:{sym}"] = "ISOLATED" if want == "ISOLATED_MARGIN" else "CROSSED"
    sim.persist(Mutation(meta=meta))
    return {"reasons": []}


@ok
async def fee_rate(sim: Sim, request: web.Request, p: dict):
    category(p)
    specs = [spec(sim, p)] if text(p, "symbol") else list(sim.market.specs.values())
    return {"list": [{"symbol": s.id, "baseCoin": "", "takerFeeRate": fmt(sim.engine.taker_fee),
                      "makerFeeRate": fmt(sim.engine.maker_fee)} for s in specs]}


@ok
async def transaction_log(sim: Sim, request: web.Request, p: dict):
    at = text(p, "accountType") or "UNIFIED"
    if at != "UNIFIED":
        raise bybit(10001, "accountType only support UNIFIED.")
    if text(p, "category") and text(p, "category") != "linear":
        return {"list": [], "nextPageCursor": ""}
    want_type = text(p, "type")
    cur = text(p, "currency")
    start, end = integer(p, "startTime"), integer(p, "endTime")
    if end is None:
        end = sim.now_ms()
    if start is None:
        start = end - 7 * 86_400_000  # Bybit: the last 7 days unless asked
    if end - start > 7 * 86_400_000:
        raise params_error("The time range between startTime and endTime cannot exceed 7 days")
    rows = _ledger(sim)
    rows = [r for r in rows if start <= int(r["transactionTime"]) <= end and (not want_type or r["type"] == want_type)
            and (not cur or cur == "USDT")]
    rows.reverse()  # newest first
    chunk, nxt = page(rows, p, 20, 50)
    return {"list": chunk, "nextPageCursor": nxt}


def _ledger(sim: Sim) -> list[dict]:
    """The account's income as Bybit transaction-log rows, oldest first, with the wallet
    balance after each (a trade's realized PnL and fee are one TRADE row)."""
    e = sim.engine
    trades = {str(t.id): t for t in e.trades}
    groups: list[tuple[str, list]] = []
    by_trade: dict[str, list] = {}
    for i in e.income:
        if i.trade_id and i.income_type in ("REALIZED_PNL", "COMMISSION") and i.trade_id in trades:
            if i.trade_id not in by_trade:
                by_trade[i.trade_id] = []
                groups.append((i.trade_id, by_trade[i.trade_id]))
            by_trade[i.trade_id].append(i)
        else:
            groups.append(("", [i]))
    balance = e.wallet - sum((i.income for i in e.income), D(0))
    out = []
    for tid, items in groups:
        change = sum((i.income for i in items), D(0))
        balance += change
        first = items[0]
        row = {"id": f"{first.tran_id}", "symbol": first.symbol, "category": "linear", "side": "None",
               "transactionTime": str(first.time), "type": "", "qty": "0", "size": "0", "currency": "USDT",
               "tradePrice": "", "funding": "", "fee": "", "cashFlow": "0", "change": fmt(change),
               "cashBalance": fmt(balance), "feeRate": "", "bonusChange": "", "tradeId": "", "orderId": "",
               "orderLinkId": ""}
        if tid:
            t = trades[tid]
            o = e.orders.get(t.order_id)
            fee = -sum((i.income for i in items if i.income_type == "COMMISSION"), D(0))
            pnl = sum((i.income for i in items if i.income_type == "REALIZED_PNL"), D(0))
            pos = e.position(t.symbol)
            row |= {"type": "TRADE", "side": "Buy" if t.side == "BUY" else "Sell", "qty": fmt(t.qty),
                    "size": fmt(pos.qty), "tradePrice": fmt(t.price), "fee": fmt(fee), "cashFlow": fmt(pnl),
                    "feeRate": fmt(e.fee_rate(t.maker)), "tradeId": tid, "orderId": str(t.order_id),
                    "orderLinkId": (o.client_order_id if o and not o.client_order_id.startswith("~") else "")}
        elif first.income_type == "FUNDING_FEE":
            row |= {"type": "SETTLEMENT", "funding": fmt(-first.income)}
        elif first.income_type == "INSURANCE_CLEAR":
            row |= {"type": "LIQUIDATION", "fee": fmt(-first.income)}
        else:
            row |= {"type": first.income_type, "cashFlow": fmt(first.income)}
        out.append(row)
    return out
