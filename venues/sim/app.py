"""aiohttp server speaking the Binance USD-M futures REST dialect (the parts ccxt uses).

Non-admin requests go through: shield (execution survives a client disconnect) → faults
(outage, latency, error rate) → request weight → auth (private endpoints) → handler.
Admin endpoints under ``/_sim/`` are unsigned and bypass faults and weights.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import re
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from aiohttp import web

from . import DEFAULT_API_KEY, DEFAULT_API_SECRET
from .engine import Engine, Mutation, Order, OrderRequest, SimError, err_invalid_symbol, fmt
from .market import BookConfig, Market, default_specs, load_replay, spec_for_unified
from .store import Store

log = logging.getLogger("hedgeflow.sim")

D = Decimal
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
ARRIVED_NS = web.RequestKey("arrived_ns", int)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class SimOptions:
    name: str = "sim"
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    replay: str | None = None
    speed: float = 1.0
    state: str | None = None  # None → .hedgeflow/sim-NAME.sqlite; ":memory:" allowed
    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    funding_interval: int = 28800
    initial_balance: Decimal = D("100000")
    taker_fee: Decimal = D("0.0005")
    symbols: int | None = None
    weight_limit: int = 2400
    default_leverage: int = 20
    book_levels: int = 20
    book_half_spread_bps: Decimal = D("1")
    book_level_step_bps: Decimal = D("1")
    book_level_notional: Decimal = D("50000")

    @property
    def state_path(self) -> str:
        return self.state or os.path.join(".hedgeflow", f"sim-{self.name}.sqlite")


FAULT_TYPES = {
    "outage": bool,
    "latency_ms": int,
    "error_rate": float,
    "reject_orders": int,
    "partial_fill_ratio": float,
    "drop_responses": int,
}


@dataclass
class Faults:
    outage: bool = False
    latency_ms: int = 0
    error_rate: float = 0.0
    reject_orders: int = 0
    partial_fill_ratio: float | None = None
    drop_responses: int = 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in FAULT_TYPES}

    def update(self, body: object) -> None:
        if not isinstance(body, dict):
            raise ValueError("body: expected a JSON object")
        new = {}
        for k, v in body.items():
            if k not in FAULT_TYPES:
                raise ValueError(f"{k}: unknown fault")
            t = FAULT_TYPES[k]
            if t is bool:
                if not isinstance(v, bool):
                    raise ValueError(f"{k}: expected true/false")
            elif t is int:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"{k}: expected a non-negative integer")
            else:
                if k == "partial_fill_ratio" and v is None:
                    pass
                elif isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                    raise ValueError(f"{k}: expected a number between 0 and 1")
                else:
                    v = float(v)
            new[k] = v
        if not body:
            self.__dict__.update(Faults().__dict__)
        else:
            self.__dict__.update(new)


# request weights (approximately Binance's)
WEIGHTS = {
    ("GET", "/fapi/v1/exchangeInfo"): 1,
    ("GET", "/fapi/v1/depth"): 5,
    ("GET", "/fapi/v2/account"): 5,
    ("GET", "/fapi/v3/account"): 5,
    ("GET", "/fapi/v2/balance"): 5,
    ("GET", "/fapi/v3/balance"): 5,
    ("GET", "/fapi/v2/positionRisk"): 5,
    ("GET", "/fapi/v3/positionRisk"): 5,
    ("GET", "/fapi/v1/userTrades"): 5,
    ("GET", "/fapi/v1/allOrders"): 5,
    ("GET", "/fapi/v1/income"): 30,
    ("GET", "/fapi/v1/positionSide/dual"): 30,
    ("GET", "/fapi/v1/multiAssetsMargin"): 30,
    ("GET", "/fapi/v1/commissionRate"): 20,
    ("GET", "/fapi/v1/ticker/bookTicker"): 2,
}


class Sim:
    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        self.started_ms = now_ms()
        replay = None
        if opts.replay:
            replay = load_replay(opts.replay, opts.name)
            if not replay:
                raise ValueError(f"replay file {opts.replay} has no rows for venue {opts.name!r}")
            specs = [spec_for_unified(u, i) for i, u in enumerate(sorted(replay))]
        else:
            specs = default_specs(opts.symbols)
        self.store = Store(opts.state_path)
        wall0 = None
        if replay is not None:
            key = f"{os.path.abspath(opts.replay)}|{opts.speed}"
            if self.store.get_meta("replay_key") == key and self.store.get_meta("replay_wall0"):
                wall0 = int(self.store.get_meta("replay_wall0"))
            else:
                wall0 = self.started_ms
                self.store.set_meta(replay_key=key, replay_wall0=wall0)
        book = BookConfig(opts.book_levels, D(opts.book_half_spread_bps), D(opts.book_level_step_bps),
                          D(opts.book_level_notional))
        self.market = Market(specs, seed=opts.seed, funding_interval_s=opts.funding_interval, book=book,
                             replay=replay, speed=opts.speed, replay_wall0_ms=wall0)
        self.engine = Engine({s.id: s for s in specs}, wallet=D(opts.initial_balance), taker_fee=D(opts.taker_fee),
                             default_leverage=opts.default_leverage)
        if not self.store.load_engine(self.engine):
            self.engine.wallet_update_time = self.started_ms
            self.store.save(self.engine, Mutation(wallet=True))
        self.market.pinned_price, self.market.pinned_rate = self.store.load_pinned()
        self.faults = Faults()
        self.weight_minute = 0
        self.weight_used = 0
        self.secret = opts.api_secret.encode()
        self._tasks: set[asyncio.Task] = set()
        # settlement bookkeeping
        self.last_funding_ms = int(self.store.get_meta("last_funding_ms") or 0)
        self.replay_settled: dict[str, int] = {}
        if self.market.replay is not None:
            wall = now_ms()
            for sym, times in self.market.replay_times.items():
                saved = self.store.get_meta(f"replay_settled:{sym}")
                if saved is not None:
                    self.replay_settled[sym] = int(saved)
                else:
                    self.replay_settled[sym] = bisect.bisect_right(times, self.market.data_time(wall)) - 1

    # ---- helpers --------------------------------------------------------------------------
    def spec(self, symbol: str | None):
        if not symbol:
            raise SimError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        s = self.market.specs.get(symbol)
        if s is None:
            raise err_invalid_symbol()
        return s

    def marks(self, extra: str | None = None) -> dict[str, Decimal]:
        t = now_ms()
        syms = {p.symbol for p in self.engine.positions.values() if p.qty and p.symbol in self.market.specs}
        if extra:
            syms.add(extra)
        return {s: self.market.mark(s, t) for s in syms}

    def persist(self, mut: Mutation) -> None:
        self.store.save(self.engine, mut)

    # ---- funding --------------------------------------------------------------------------
    def settle(self, symbols: list[str] | None = None, *, at_ms: int | None = None,
               rates: dict[str, Decimal] | None = None, prices: dict[str, Decimal] | None = None) -> Mutation:
        t = now_ms()
        ts = at_ms or t
        mut = Mutation()
        for sym in symbols if symbols is not None else list(self.market.specs):
            mark = (prices or {}).get(sym) or self.market.mark(sym, t)
            rate = (rates or {}).get(sym)
            if rate is None:
                rate = self.market.rate(sym, t)
            if sym in self.market.pinned_price:
                mark = self.market.pinned_price[sym]
            if sym in self.market.pinned_rate:
                rate = self.market.pinned_rate[sym]
            mut.merge(self.engine.settle_funding(sym, mark, rate, ts))
            if symbols is not None or self.engine.positions.get(sym) is not None or len(self.market.specs) <= 50:
                self.store.save_funding_rate(sym, ts, rate, mark)
        self.persist(mut)
        return mut

    async def funding_loop(self) -> None:
        while True:
            try:
                if self.market.replay is not None:
                    self._replay_tick()
                    await asyncio.sleep(0.05)
                    continue
                interval = self.market.interval_ms
                t = now_ms()
                boundary = (t // interval) * interval
                if self.last_funding_ms == 0:
                    self.last_funding_ms = boundary
                    self.store.set_meta(last_funding_ms=boundary)
                if boundary > self.last_funding_ms:
                    self.last_funding_ms = boundary
                    self.settle(at_ms=boundary)
                    self.persist(Mutation(meta={"last_funding_ms": boundary}))
                nxt = (t // interval + 1) * interval
                await asyncio.sleep(min(1.0, max(0.005, (nxt - now_ms()) / 1000)))
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - keep the venue alive
                log.exception("funding loop")
                await asyncio.sleep(1)

    def _replay_tick(self) -> None:
        wall = now_ms()
        dt = self.market.data_time(wall)
        meta = {}
        for sym, rows in (self.market.replay or {}).items():
            i = self.replay_settled.get(sym, -1)
            while i + 1 < len(rows) and rows[i + 1].t_ms <= dt:
                i += 1
                row = rows[i]
                self.settle([sym], at_ms=self.market.wall_time(row.t_ms), rates={sym: row.rate},
                            prices={sym: row.price} if row.price is not None else None)
            if i != self.replay_settled.get(sym, -1):
                self.replay_settled[sym] = i
                meta[f"replay_settled:{sym}"] = i
        if meta:
            self.persist(Mutation(meta=meta))

    # ---- weights --------------------------------------------------------------------------
    def charge(self, method: str, path: str, params: dict) -> bool:
        minute = now_ms() // 60000
        if minute != self.weight_minute:
            self.weight_minute, self.weight_used = minute, 0
        cost = WEIGHTS.get((method, path), 1)
        if path == "/fapi/v1/premiumIndex" and "symbol" not in params:
            cost = 10
        if path == "/fapi/v1/openOrders" and "symbol" not in params:
            cost = 40
        if path == "/fapi/v1/depth":
            lim = int(params.get("limit", 500) or 500) if str(params.get("limit", "500")).isdigit() else 500
            cost = 2 if lim <= 50 else 5 if lim <= 100 else 10 if lim <= 500 else 20
        self.weight_used += cost
        return self.weight_used <= self.opts.weight_limit

    # ---- auth -----------------------------------------------------------------------------
    def authenticate(self, request: web.Request, raw_query: str, body: str, params: dict) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key or not hmac.compare_digest(key, self.opts.api_key):
            raise SimError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        sig = params.get("signature")
        if not sig:
            raise SimError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        total = raw_query + body
        signed = "&".join(p for p in total.split("&") if not p.startswith("signature="))
        expected = hmac.new(self.secret, signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig.lower()):
            raise SimError(-1022, "Signature for this request is not valid.")
        ts_s = params.get("timestamp")
        if not ts_s or not ts_s.isdigit():
            raise SimError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        rw_s = params.get("recvWindow", "5000")
        try:
            rw = int(rw_s)
        except ValueError:
            raise SimError(-1102, "Mandatory parameter 'recvWindow' was not sent, was empty/null, or malformed.") from None
        if rw > 60000 or rw <= 0:
            raise SimError(-1131, "recvWindow must be less than 60000")
        ts = int(ts_s)
        server = now_ms()
        if ts > server + 1000:
            raise SimError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server - ts > rw:
            raise SimError(-1021, "Timestamp for this request is outside of the recvWindow.")


PRIVATE = set()


def private(fn):
    PRIVATE.add(fn.__name__)
    fn.private = True
    return fn


def _bool(v: str | None) -> bool:
    return str(v).lower() == "true"


def _dec(params: dict, name: str, required: bool = True) -> Decimal | None:
    v = params.get(name)
    if v is None or v == "":
        if required:
            raise SimError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        return None
    try:
        d = D(v)
    except InvalidOperation:
        raise SimError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.") from None
    if not d.is_finite():
        raise SimError(-1100, f"Illegal characters found in parameter '{name}'.")
    return d


def _int(params: dict, name: str, default: int | None = None) -> int | None:
    v = params.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise SimError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})$'.") from None


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":")), status=status, content_type="application/json")


class Api:
    """Route handlers. Each receives (request, params) after the middleware chain."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    # ---- public ---------------------------------------------------------------------------
    async def ping(self, request, p):
        return {}

    async def time(self, request, p):
        return {"serverTime": now_ms()}

    async def exchange_info(self, request, p):
        t = now_ms()
        symbols = []
        for s in self.sim.market.specs.values():
            symbols.append({
                "symbol": s.id, "pair": s.id, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": s.onboard_ms, "status": "TRADING", "maintMarginPercent": "2.5000",
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
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"},
                ],
                "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC", "IOC", "FOK"],
                "permissionSet": ["GRID", "COPY"],
            })
        lim = self.sim.opts.weight_limit
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

    def _premium(self, s, t) -> dict:
        m = self.sim.market
        return {
            "symbol": s.id, "markPrice": fmt(m.mark(s.id, t)), "indexPrice": fmt(m.index(s.id, t)),
            "estimatedSettlePrice": fmt(m.mark(s.id, t)), "lastFundingRate": fmt(m.rate(s.id, t)),
            "interestRate": "0.00010000", "nextFundingTime": m.next_funding_ms(s.id, t), "time": t,
        }

    async def premium_index(self, request, p):
        t = now_ms()
        if p.get("symbol"):
            return self._premium(self.sim.spec(p["symbol"]), t)
        return [self._premium(s, t) for s in self.sim.market.specs.values()]

    async def funding_info(self, request, p):
        t = now_ms()
        return [{"symbol": s.id, "adjustedFundingRateCap": "0.02000000", "adjustedFundingRateFloor": "-0.02000000",
                 "fundingIntervalHours": self.sim.market.interval_hours(s.id, t), "disclaimer": False}
                for s in self.sim.market.specs.values()]

    async def funding_rate(self, request, p):
        sym = p.get("symbol")
        if sym:
            self.sim.spec(sym)
        limit = min(max(_int(p, "limit", 100), 1), 1000)
        rows = self.sim.store.funding_history(sym, _int(p, "startTime"), _int(p, "endTime"), limit)
        return [{"symbol": s, "fundingTime": t, "fundingRate": fmt(D(r)), "markPrice": fmt(D(mk))} for s, t, r, mk in rows]

    async def depth(self, request, p):
        s = self.sim.spec(p.get("symbol"))
        limit = _int(p, "limit", 500)
        t = now_ms()
        bids, asks = self.sim.market.depth(s.id, t, limit)
        return {"lastUpdateId": t, "E": t, "T": t,
                "bids": [[fmt(px), fmt(q)] for px, q in bids], "asks": [[fmt(px), fmt(q)] for px, q in asks]}

    async def book_ticker(self, request, p):
        t = now_ms()

        def one(s):
            bids, asks = self.sim.market.depth(s.id, t, 1)
            return {"symbol": s.id, "bidPrice": fmt(bids[0][0]), "bidQty": fmt(bids[0][1]), "askPrice": fmt(asks[0][0]),
                    "askQty": fmt(asks[0][1]), "time": t, "lastUpdateId": t}

        if p.get("symbol"):
            return one(self.sim.spec(p["symbol"]))
        return [one(s) for s in self.sim.market.specs.values()]

    async def ticker_price(self, request, p):
        t = now_ms()
        if p.get("symbol"):
            s = self.sim.spec(p["symbol"])
            return {"symbol": s.id, "price": fmt(self.sim.market.mark(s.id, t)), "time": t}
        return [{"symbol": s.id, "price": fmt(self.sim.market.mark(s.id, t)), "time": t}
                for s in self.sim.market.specs.values()]

    # ---- account --------------------------------------------------------------------------
    def _account_numbers(self) -> dict:
        e = self.sim.engine
        marks = self.sim.marks()
        upnl = e.unrealized(marks)
        pim = e.position_initial_margin(marks)
        oim = e.open_order_initial_margin()
        mm = e.maint_margin(marks)
        avail = e.available(marks)
        return {"marks": marks, "wallet": e.wallet, "upnl": upnl, "pim": pim, "oim": oim, "mm": mm,
                "avail": avail, "margin_balance": e.wallet + upnl, "update": e.wallet_update_time or 1}

    def _position_json(self, sym: str, marks: dict, v2: bool) -> dict:
        e = self.sim.engine
        pos = e.position(sym)
        spec = self.sim.market.specs[sym]
        mark = marks.get(sym) or self.sim.market.mark(sym, now_ms())
        lev = e.get_leverage(sym)
        notional = pos.qty * mark
        upnl = pos.qty * (mark - pos.entry) if pos.qty else D(0)
        liq = e.liquidation_price(sym, {**marks, sym: mark}) if pos.qty else D(0)
        im = abs(notional) / lev
        pp = spec.price_precision
        d = {
            "symbol": sym, "positionSide": "BOTH", "positionAmt": fmt(pos.qty),
            "entryPrice": fmt(pos.entry), "breakEvenPrice": fmt(pos.entry),
            "markPrice": fmt(mark), "unRealizedProfit": fmt(upnl.quantize(D("0.00000001"))),
            "liquidationPrice": fmt(liq.quantize(D(1).scaleb(-pp))) if liq else "0",
            "isolatedMargin": "0", "notional": fmt(notional), "marginAsset": "USDT", "isolatedWallet": "0",
            "initialMargin": fmt(im), "maintMargin": fmt(abs(notional) * D("0.004")),
            "positionInitialMargin": fmt(im), "openOrderInitialMargin": "0", "adl": 1 if pos.qty else 0,
            "bidNotional": "0", "askNotional": "0", "updateTime": pos.update_time,
            # v2 fields, also served on v3 for convenience
            "leverage": str(lev), "marginType": "cross", "isAutoAddMargin": "false",
            "maxNotionalValue": "1000000000",
        }
        if not v2:
            d.pop("isAutoAddMargin")
        return d

    def _account(self, v3: bool) -> dict:
        n = self._account_numbers()
        asset = {
            "asset": "USDT", "walletBalance": fmt(n["wallet"]), "unrealizedProfit": fmt(n["upnl"]),
            "marginBalance": fmt(n["margin_balance"]), "maintMargin": fmt(n["mm"]),
            "initialMargin": fmt(n["pim"] + n["oim"]), "positionInitialMargin": fmt(n["pim"]),
            "openOrderInitialMargin": fmt(n["oim"]), "crossWalletBalance": fmt(n["wallet"]),
            "crossUnPnl": fmt(n["upnl"]), "availableBalance": fmt(n["avail"]),
            "maxWithdrawAmount": fmt(max(n["avail"], D(0))), "marginAvailable": True, "updateTime": n["update"],
        }
        positions = []
        for sym, pos in self.sim.engine.positions.items():
            if sym not in self.sim.market.specs or (v3 and not pos.qty):
                continue
            pj = self._position_json(sym, n["marks"], not v3)
            positions.append({k: pj[k] for k in (
                "symbol", "positionSide", "positionAmt", "isolatedMargin", "notional", "isolatedWallet",
                "initialMargin", "maintMargin", "updateTime")} | {"unrealizedProfit": pj["unRealizedProfit"]}
                | ({} if v3 else {"leverage": pj["leverage"], "entryPrice": pj["entryPrice"], "isolated": False,
                                   "positionInitialMargin": pj["positionInitialMargin"],
                                   "openOrderInitialMargin": "0", "maxNotional": "1000000000",
                                   "bidNotional": "0", "askNotional": "0", "breakEvenPrice": pj["breakEvenPrice"]}))
        acct = {
            "totalInitialMargin": fmt(n["pim"] + n["oim"]), "totalMaintMargin": fmt(n["mm"]),
            "totalWalletBalance": fmt(n["wallet"]), "totalUnrealizedProfit": fmt(n["upnl"]),
            "totalMarginBalance": fmt(n["margin_balance"]), "totalPositionInitialMargin": fmt(n["pim"]),
            "totalOpenOrderInitialMargin": fmt(n["oim"]), "totalCrossWalletBalance": fmt(n["wallet"]),
            "totalCrossUnPnl": fmt(n["upnl"]), "availableBalance": fmt(n["avail"]),
            "maxWithdrawAmount": fmt(max(n["avail"], D(0))), "assets": [asset], "positions": positions,
        }
        if not v3:
            acct = {"feeTier": 0, "feeBurn": False, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                    "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1} | acct
        return acct

    @private
    async def account_v2(self, request, p):
        return self._account(False)

    @private
    async def account_v3(self, request, p):
        return self._account(True)

    @private
    async def balance(self, request, p):
        n = self._account_numbers()
        return [{"accountAlias": "SgsR", "asset": "USDT", "balance": fmt(n["wallet"]),
                 "crossWalletBalance": fmt(n["wallet"]), "crossUnPnl": fmt(n["upnl"]),
                 "availableBalance": fmt(n["avail"]), "maxWithdrawAmount": fmt(max(n["avail"], D(0))),
                 "marginAvailable": True, "updateTime": n["update"]}]

    async def _position_risk(self, p, v2: bool):
        marks = self.sim.marks()
        if p.get("symbol"):
            syms = [self.sim.spec(p["symbol"]).id]
        elif v2:
            syms = list(self.sim.market.specs)
        else:
            syms = [s for s, pos in self.sim.engine.positions.items() if pos.qty and s in self.sim.market.specs]
        out = []
        for s in syms:
            pos = self.sim.engine.position(s)
            if not v2 and not pos.qty:
                continue
            out.append(self._position_json(s, marks, v2))
        return out

    @private
    async def position_risk_v2(self, request, p):
        return await self._position_risk(p, True)

    @private
    async def position_risk_v3(self, request, p):
        return await self._position_risk(p, False)

    @private
    async def leverage(self, request, p):
        s = self.sim.spec(p.get("symbol"))
        lev = _int(p, "leverage")
        if lev is None or not 1 <= lev <= 125:
            raise SimError(-4028, f"Leverage {lev} is not valid")
        self.sim.engine.leverage[s.id] = lev
        self.sim.store.save_leverage(s.id, lev)
        return {"leverage": lev, "maxNotionalValue": "1000000000", "symbol": s.id}

    @private
    async def leverage_bracket(self, request, p):
        specs = [self.sim.spec(p["symbol"])] if p.get("symbol") else list(self.sim.market.specs.values())
        return [{"symbol": s.id, "notionalCoef": 1.0, "brackets": [
            {"bracket": 1, "initialLeverage": 125, "notionalCap": 1000000000, "notionalFloor": 0,
             "maintMarginRatio": 0.004, "cum": 0.0}]} for s in specs]

    @private
    async def symbol_config(self, request, p):
        specs = [self.sim.spec(p["symbol"])] if p.get("symbol") else list(self.sim.market.specs.values())
        return [{"symbol": s.id, "marginType": "CROSSED", "isAutoAddMargin": "false",
                 "leverage": self.sim.engine.get_leverage(s.id), "maxNotionalValue": "1000000000"} for s in specs]

    @private
    async def commission_rate(self, request, p):
        s = self.sim.spec(p.get("symbol"))
        return {"symbol": s.id, "makerCommissionRate": "0.000200", "takerCommissionRate": fmt(self.sim.engine.taker_fee)}

    @private
    async def get_dual(self, request, p):
        return {"dualSidePosition": False}

    @private
    async def post_dual(self, request, p):
        v = str(p.get("dualSidePosition", "")).lower()
        if v == "false":
            return {"code": 200, "msg": "success"}
        raise SimError(-4059, "No need to change position side. (simulator supports one-way mode only)")

    @private
    async def multi_assets(self, request, p):
        return {"multiAssetsMargin": False}

    @private
    async def margin_type(self, request, p):
        self.sim.spec(p.get("symbol"))
        if str(p.get("marginType", "")).upper() == "CROSSED":
            raise SimError(-4046, "No need to change margin type.")
        raise SimError(-4048, "Margin type cannot be changed (simulator supports cross margin only).")

    # ---- orders ---------------------------------------------------------------------------
    @private
    async def new_order(self, request, p):
        sim = self.sim
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
            if _bool(p.get("closePosition")):
                raise SimError(-1106, "Parameter 'closePosition' sent when not required.")
            qty = _dec(p, "quantity")
            cid = p.get("newClientOrderId") or ("web_" + secrets.token_urlsafe(15).replace("-", "_"))[:22]
            if not CLIENT_ID_RE.match(cid):
                raise SimError(-4015, "Client order id is not valid.")
            price = _dec(p, "price", required=typ == "LIMIT") if typ == "LIMIT" else None
            tif = str(p.get("timeInForce") or ("GTC" if typ == "LIMIT" else "GTC")).upper()
            if typ == "LIMIT" and tif not in ("GTC", "IOC", "FOK"):
                raise SimError(-1115, "Invalid timeInForce.")
            req = OrderRequest(s.id, side, typ, qty, cid, _bool(p.get("reduceOnly")), price, tif, arrived)
            t = now_ms()
            bids, asks = sim.market.depth(s.id, t)
            if typ == "LIMIT" and tif == "FOK":
                book = asks if side == "BUY" else bids
                avail = sum(q for px, q in book if (px <= price if side == "BUY" else px >= price))
                if avail < qty:
                    raise SimError(-5021, "Due to the order could not be filled immediately, the FOK order has been rejected.")
            ratio = D(str(f.partial_fill_ratio)) if f.partial_fill_ratio is not None else None
            order, mut = sim.engine.place(req, asks if side == "BUY" else bids, sim.marks(s.id), t, fill_ratio=ratio)
            sim.persist(mut)
        except SimError as e:
            if drop:
                raise _dropped() from e
            raise
        if drop:
            raise _dropped()
        body = order.to_binance(s)
        if resp_type == "ACK":
            body.update(status="NEW", executedQty="0", cumQty="0", cumQuote="0", avgPrice="0.00")
        return body

    def _find(self, p) -> Order:
        s = self.sim.spec(p.get("symbol"))
        oid = _int(p, "orderId")
        cid = p.get("origClientOrderId")
        if oid is None and not cid:
            raise SimError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        return self.sim.engine.find_order(s.id, oid, cid)

    @private
    async def get_order(self, request, p):
        o = self._find(p)
        return o.to_binance(self.sim.market.specs.get(o.symbol))

    @private
    async def cancel_order(self, request, p):
        try:
            o = self._find(p)
        except SimError as e:
            if e.code == -2013:
                raise SimError(-2011, "Unknown order sent.") from None
            raise
        mut = self.sim.engine.cancel(o, now_ms())
        self.sim.persist(mut)
        return o.to_binance(self.sim.market.specs.get(o.symbol))

    @private
    async def cancel_all(self, request, p):
        s = self.sim.spec(p.get("symbol"))
        mut = Mutation()
        for o in self.sim.engine.open_orders(s.id):
            mut.merge(self.sim.engine.cancel(o, now_ms()))
        self.sim.persist(mut)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    @private
    async def open_orders(self, request, p):
        sym = self.sim.spec(p["symbol"]).id if p.get("symbol") else None
        return [o.to_binance(self.sim.market.specs.get(o.symbol)) for o in self.sim.engine.open_orders(sym)]

    @private
    async def open_order(self, request, p):
        o = self._find(p)
        if not o.is_open:
            raise SimError(-2013, "Order does not exist.")
        return o.to_binance(self.sim.market.specs.get(o.symbol))

    @private
    async def all_orders(self, request, p):
        s = self.sim.spec(p.get("symbol"))
        limit = min(max(_int(p, "limit", 500), 1), 1000)
        start, end, from_id = _int(p, "startTime"), _int(p, "endTime"), _int(p, "orderId")
        rows = [o for o in self.sim.engine.orders.values() if o.symbol == s.id
                and (start is None or o.time >= start) and (end is None or o.time <= end)
                and (from_id is None or o.order_id >= from_id)]
        rows.sort(key=lambda o: o.order_id)
        rows = rows[:limit] if (start is not None or from_id is not None) else rows[-limit:]
        return [o.to_binance(s) for o in rows]

    @private
    async def user_trades(self, request, p):
        sym = self.sim.spec(p["symbol"]).id if p.get("symbol") else None
        limit = min(max(_int(p, "limit", 500), 1), 1000)
        start, end, from_id, oid = _int(p, "startTime"), _int(p, "endTime"), _int(p, "fromId"), _int(p, "orderId")
        rows = [t for t in self.sim.engine.trades if (sym is None or t.symbol == sym)
                and (start is None or t.time >= start) and (end is None or t.time <= end)
                and (from_id is None or t.id >= from_id) and (oid is None or t.order_id == oid)]
        rows = rows[:limit] if (start is not None or from_id is not None) else rows[-limit:]
        return [t.to_binance() for t in rows]

    @private
    async def income(self, request, p):
        sym = self.sim.spec(p["symbol"]).id if p.get("symbol") else None
        kind = p.get("incomeType")
        limit = min(max(_int(p, "limit", 100), 1), 1000)
        start, end = _int(p, "startTime"), _int(p, "endTime")
        rows = [i for i in self.sim.engine.income if (sym is None or i.symbol == sym)
                and (not kind or i.income_type == kind)
                and (start is None or i.time >= start) and (end is None or i.time <= end)]
        page = _int(p, "page", 1) or 1
        if start is not None:
            rows = rows[(page - 1) * limit: page * limit]
        else:
            rows = rows[-limit:]
        return [i.to_binance() for i in rows]


def _dropped() -> SimError:
    return SimError(-1007, "Timeout waiting for response from backend server. Send status unknown; "
                           "execution status unknown.", 503)


ROUTES = [
    ("GET", "/fapi/v1/ping", "ping"),
    ("GET", "/fapi/v1/time", "time"),
    ("GET", "/fapi/v1/exchangeInfo", "exchange_info"),
    ("GET", "/fapi/v1/premiumIndex", "premium_index"),
    ("GET", "/fapi/v1/fundingInfo", "funding_info"),
    ("GET", "/fapi/v1/fundingRate", "funding_rate"),
    ("GET", "/fapi/v1/depth", "depth"),
    ("GET", "/fapi/v1/ticker/bookTicker", "book_ticker"),
    ("GET", "/fapi/v1/ticker/price", "ticker_price"),
    ("GET", "/fapi/v2/ticker/price", "ticker_price"),
    ("GET", "/fapi/v2/account", "account_v2"),
    ("GET", "/fapi/v3/account", "account_v3"),
    ("GET", "/fapi/v2/balance", "balance"),
    ("GET", "/fapi/v3/balance", "balance"),
    ("GET", "/fapi/v2/positionRisk", "position_risk_v2"),
    ("GET", "/fapi/v3/positionRisk", "position_risk_v3"),
    ("POST", "/fapi/v1/leverage", "leverage"),
    ("GET", "/fapi/v1/leverageBracket", "leverage_bracket"),
    ("GET", "/fapi/v1/symbolConfig", "symbol_config"),
    ("GET", "/fapi/v1/commissionRate", "commission_rate"),
    ("GET", "/fapi/v1/positionSide/dual", "get_dual"),
    ("POST", "/fapi/v1/positionSide/dual", "post_dual"),
    ("GET", "/fapi/v1/multiAssetsMargin", "multi_assets"),
    ("POST", "/fapi/v1/marginType", "margin_type"),
    ("POST", "/fapi/v1/order", "new_order"),
    ("GET", "/fapi/v1/order", "get_order"),
    ("DELETE", "/fapi/v1/order", "cancel_order"),
    ("DELETE", "/fapi/v1/allOpenOrders", "cancel_all"),
    ("GET", "/fapi/v1/openOrders", "open_orders"),
    ("GET", "/fapi/v1/openOrder", "open_order"),
    ("GET", "/fapi/v1/allOrders", "all_orders"),
    ("GET", "/fapi/v1/userTrades", "user_trades"),
    ("GET", "/fapi/v1/income", "income"),
]


class Server:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.api = Api(sim)
        self.app = web.Application(middlewares=[self.middleware], client_max_size=1 << 20)
        for method, path, name in ROUTES:
            self.app.router.add_route(method, path, self._wrap(getattr(self.api, name)))
        self.app.router.add_get("/_sim/state", self.admin_state)
        self.app.router.add_get("/_sim/health", self.admin_health)
        self.app.router.add_get("/_sim/faults", self.admin_get_faults)
        self.app.router.add_post("/_sim/faults", self.admin_faults)
        self.app.router.add_post("/_sim/market", self.admin_market)
        self.app.router.add_get("/_sim/market", self.admin_get_market)
        self.app.router.add_post("/_sim/settle", self.admin_settle)

    def _wrap(self, fn):
        is_private = getattr(fn, "private", False)

        async def handler(request: web.Request) -> web.StreamResponse:
            raw = request.raw_path
            raw_query = raw.split("?", 1)[1] if "?" in raw else ""
            body = (await request.read()).decode("utf-8", "replace") if request.body_exists else ""
            params = dict(parse_qsl(raw_query, keep_blank_values=True))
            if body and request.content_type != "application/json":
                params.update(parse_qsl(body, keep_blank_values=True))
            if not self.sim.charge(request.method, request.path, params):
                raise SimError(-1003, f"Too many requests; current limit of IP(127.0.0.1) request weight per minute "
                                      f"is {self.sim.opts.weight_limit}. Please use WebSocket Streams for live "
                                      "updates to avoid bans.", 429)
            if is_private:
                self.sim.authenticate(request, raw_query, body, params)
            return _json(await fn(request, params))

        return handler

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        if request.path.startswith("/_sim/"):
            try:
                return await handler(request)
            except SimError as e:
                return _json(e.body(), e.status)
        request[ARRIVED_NS] = time.time_ns()
        await request.read()
        task = asyncio.ensure_future(self._process(request, handler))
        self.sim._tasks.add(task)
        task.add_done_callback(self.sim._tasks.discard)
        return await asyncio.shield(task)

    async def _process(self, request: web.Request, handler) -> web.StreamResponse:
        f = self.sim.faults
        try:
            if f.outage:
                resp = web.Response(text="<html><body><h1>503 Service Unavailable</h1></body></html>",
                                    status=503, content_type="text/html")
            else:
                if f.latency_ms:
                    await asyncio.sleep(f.latency_ms / 1000)
                if f.error_rate and random.random() < f.error_rate:
                    resp = web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>", status=502,
                                        content_type="text/html")
                else:
                    try:
                        resp = await handler(request)
                    except SimError as e:
                        resp = _json(e.body(), e.status)
                        if e.status == 429:
                            resp.headers["Retry-After"] = str(60 - (now_ms() // 1000) % 60)
                    except web.HTTPException as e:
                        resp = web.Response(text=e.text or e.reason, status=e.status, content_type="text/plain")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # pragma: no cover
            log.exception("handler error")
            resp = _json({"code": -1000, "msg": f"An unknown error occured while processing the request. {e}"}, 500)
        resp.headers["X-MBX-USED-WEIGHT-1M"] = str(self.sim.weight_used)
        return resp

    # ---- admin ----------------------------------------------------------------------------
    async def admin_health(self, request):
        return _json({"ok": True, "name": self.sim.opts.name,
                      "mode": "replay" if self.sim.market.replay is not None else "synthetic",
                      "symbols": len(self.sim.market.specs)})

    async def admin_state(self, request):
        e = self.sim.engine
        n = self.api._account_numbers()
        positions = []
        for sym, pos in e.positions.items():
            if pos.qty and sym in self.sim.market.specs:
                pj = self.api._position_json(sym, n["marks"], True)
                positions.append({"symbol": self.sim.market.specs[sym].symbol, "venue_symbol": sym,
                                  "positionAmt": pj["positionAmt"], "entryPrice": pj["entryPrice"],
                                  "markPrice": pj["markPrice"], "unRealizedProfit": pj["unRealizedProfit"],
                                  "notional": pj["notional"], "leverage": pj["leverage"],
                                  "liquidationPrice": pj["liquidationPrice"]})
        orders_limit = _int(dict(request.query), "orders_limit")
        income_limit = _int(dict(request.query), "income_limit")
        orders = sorted(e.orders.values(), key=lambda o: o.order_id)
        if orders_limit is not None:
            orders = orders[-orders_limit:] if orders_limit else []
        income = e.income if income_limit is None else (e.income[-income_limit:] if income_limit else [])
        return _json({
            "name": self.sim.opts.name,
            "balances": {"USDT": {"wallet": fmt(n["wallet"]), "walletBalance": fmt(n["wallet"]), "available": fmt(n["avail"]),
                                  "unrealized": fmt(n["upnl"]), "margin_balance": fmt(n["margin_balance"])}},
            "positions": positions,
            "orders": [o.to_binance(self.sim.market.specs.get(o.symbol))
                       | {"arrived_ns": o.arrived_ns, "unified_symbol": self._unified(o.symbol)} for o in orders],
            "income": [i.to_binance() for i in income],
            "faults": self.sim.faults.as_dict(),
        })

    def _unified(self, sym: str) -> str:
        s = self.sim.market.specs.get(sym)
        return s.symbol if s else sym

    async def _json_body(self, request) -> object:
        text = await request.text()
        if not text.strip():
            return {}
        try:
            return json.loads(text)
        except ValueError:
            raise SimError(-1, "body: invalid JSON") from None

    async def admin_get_faults(self, request):
        return _json(self.sim.faults.as_dict())

    async def admin_faults(self, request):
        body = await self._json_body(request)
        try:
            self.sim.faults.update(body)
        except ValueError as e:
            return _json({"error": str(e), "field": str(e).split(":", 1)[0]}, 400)
        return _json(self.sim.faults.as_dict())

    def _market_view(self, sym: str) -> dict:
        t = now_ms()
        m = self.sim.market
        return {"symbol": m.specs[sym].symbol, "venue_symbol": sym, "mark_price": fmt(m.mark(sym, t)),
                "funding_rate": fmt(m.rate(sym, t)), "next_funding_time": m.next_funding_ms(sym, t),
                "pinned_price": fmt(m.pinned_price[sym]) if sym in m.pinned_price else None,
                "pinned_funding_rate": fmt(m.pinned_rate[sym]) if sym in m.pinned_rate else None}

    async def admin_get_market(self, request):
        return _json([self._market_view(s) for s in self.sim.market.specs])

    async def admin_market(self, request):
        body = await self._json_body(request)
        if not isinstance(body, dict):
            return _json({"error": "body: expected a JSON object", "field": "body"}, 400)
        unknown = set(body) - {"symbol", "price", "funding_rate"}
        if unknown:
            f = sorted(unknown)[0]
            return _json({"error": f"{f}: unknown field", "field": f}, 400)
        spec = self.sim.market.resolve(str(body.get("symbol", "")))
        if spec is None:
            return _json({"error": "symbol: unknown symbol", "field": "symbol"}, 400)
        m = self.sim.market
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
                return _json({"error": f"{k}: invalid value", "field": k}, 400)
            target[spec.id] = d
        self.sim.store.save_pinned(spec.id, m.pinned_price.get(spec.id), m.pinned_rate.get(spec.id))
        return _json(self._market_view(spec.id))

    async def admin_settle(self, request):
        body = await self._json_body(request)
        syms = None
        if isinstance(body, dict) and body.get("symbol"):
            spec = self.sim.market.resolve(str(body["symbol"]))
            if spec is None:
                return _json({"error": "symbol: unknown symbol", "field": "symbol"}, 400)
            syms = [spec.id]
        mut = self.sim.settle(syms)
        return _json({"settled": [i.to_binance() for i in mut.income]})


@dataclass
class SimHandle:
    sim: Sim
    runner: web.AppRunner
    url: str
    port: int
    _loop_task: asyncio.Task | None = None
    _stopped: bool = field(default=False)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        await self.runner.cleanup()
        if self.sim._tasks:
            await asyncio.gather(*list(self.sim._tasks), return_exceptions=True)
        self.sim.store.close()

    async def __aenter__(self) -> SimHandle:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


async def start_sim(options: SimOptions | None = None, **kw) -> SimHandle:
    """Start a simulated venue in this event loop; ``port=0`` picks a free port."""
    opts = options or SimOptions(**kw)
    sim = Sim(opts)
    server = Server(sim)
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, opts.host, opts.port, reuse_address=True)
    await site.start()
    port = opts.port
    if not port:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    handle = SimHandle(sim, runner, f"http://{opts.host}:{port}", port)
    handle._loop_task = asyncio.ensure_future(sim.funding_loop())
    return handle
