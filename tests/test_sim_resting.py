"""Resting orders in the simulator, every dialect, through unmodified ccxt over real HTTP:
limit GTC and post-only rest and fill later as makers (at their own price, the maker fee,
``takerOrMaker == 'maker'``) when the price path crosses them, in part per tick when the book
is thin; a crossing post-only is refused (Binance -5022, Hyperliquid "Post only order would
have immediately matched") or created and cancelled at once (Bybit EC_PostOnlyWillTakeLiquidity,
OKX cancelSource 31); IOC fills what the book has within its price and the rest expires;
cancel works and a cancelled order never fills. Also: reduce-only resting orders, a restart,
faults, the fee options.

Prices are pinned (``POST /_sim/market``): BTC at 50000 has asks 50005, 50010, ... and bids
49995, 49990, ... (1 bp half spread, 1 bp between levels); each pin is a tick of the price path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal as D

import ccxt.async_support as ccxt
import pytest

from config.settings import DEMO_HL_PRIVATE_KEY, DEMO_HL_WALLET
from tests.simproc import admin, in_process_sim, make_ccxt_client
from venues.sim import DEFAULT_API_KEY, DEFAULT_API_SECRET, SimOptions, build_parser, options_from_args

PASSPHRASE = "Rest-Pass-1"
SLOW_TICK = 600_000  # ms: only POST /_sim/market ticks the price path (deterministic partial fills)


def _bybit(url: str) -> ccxt.Exchange:
    ex = ccxt.bybit({"apiKey": DEFAULT_API_KEY, "secret": DEFAULT_API_SECRET, "enableRateLimit": False,
                     "options": {"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}}})
    for k in list(ex.urls["api"]):
        ex.urls["api"][k] = url
    return ex


def _okx(url: str) -> ccxt.Exchange:
    ex = ccxt.okx({"apiKey": DEFAULT_API_KEY, "secret": DEFAULT_API_SECRET, "password": PASSPHRASE,
                   "enableRateLimit": False})
    for k in list(ex.urls["api"]):
        ex.urls["api"][k] = url
    return ex


def _hyperliquid(url: str) -> ccxt.Exchange:
    ex = ccxt.hyperliquid({"walletAddress": DEMO_HL_WALLET, "privateKey": DEMO_HL_PRIVATE_KEY,
                           "enableRateLimit": False})
    ex.urls["api"] = {"public": url, "private": url}
    return ex


@dataclass(frozen=True)
class Venue:
    dialect: str
    symbol: str  # ccxt's
    client: Callable[[str], ccxt.Exchange]
    per_btc: D  # ccxt amount per BTC (OKX: contracts of 0.01 BTC)
    maker_fee: D  # the dialect's default
    taker_fee: D
    ioc_status: str  # ccxt's status of an IOC that filled in part
    sim: tuple = ()  # extra SimOptions

    def amount(self, btc: str) -> float:
        return float(D(btc) * self.per_btc)

    def cid(self, n: int) -> str:
        return "0x" + f"{n:032x}" if self.dialect == "hyperliquid" else f"rest{n}"

    async def fetch(self, ex: ccxt.Exchange, oid: str) -> dict:
        params = {"acknowledged": True} if self.dialect == "bybit" else {}
        return await ex.fetch_order(oid, self.symbol, params)


VENUES = [
    Venue("binance", "BTC/USDT:USDT", make_ccxt_client, D(1), D("0.0002"), D("0.0005"), "expired"),
    Venue("bybit", "BTC/USDT:USDT", _bybit, D(1), D("0.0002"), D("0.00055"), "closed"),
    Venue("okx", "BTC/USDT:USDT", _okx, D(100), D("0.0002"), D("0.0005"), "canceled",
          (("api_passphrase", PASSPHRASE),)),
    Venue("hyperliquid", "BTC/USDC:USDC", _hyperliquid, D(1), D("0.00015"), D("0.00045"), "canceled",
          (("api_key", DEMO_HL_WALLET),)),
]


def _open(tmp_path, v: Venue, tick_ms: int = 100, name: str = "rest", **kw):
    return in_process_sim(tmp_path, f"{name}-{v.dialect}", seed=5, dialect=v.dialect, tick_ms=tick_ms,
                          **dict(v.sim), **kw)


@contextlib.asynccontextmanager
async def _client(sim, v: Venue | None = None) -> AsyncIterator[ccxt.Exchange]:
    ex = (v or VENUES[0]).client(sim.url)
    ex.enableRateLimit = False
    try:
        await ex.load_markets()
        yield ex
    finally:
        await ex.close()


@pytest.fixture(params=VENUES, ids=[v.dialect for v in VENUES])
def venue(request) -> Venue:
    return request.param


@pytest.fixture
async def sim(tmp_path, venue: Venue) -> AsyncIterator:
    async with _open(tmp_path, venue) as h:
        yield h


@pytest.fixture
async def ex(sim, venue: Venue) -> AsyncIterator[ccxt.Exchange]:
    async with _client(sim, venue) as client:
        yield client


async def pin(sim, price: str, **book) -> None:
    await admin(sim.url, "/_sim/market", {"symbol": "BTC/USDT:USDT", "price": price, **book})


def _orders(state: dict, oid: str) -> list[dict]:
    return [o for o in state["orders"] if str(o["orderId"]) == str(oid)]


def _commissions(state: dict) -> list[D]:
    return [D(i["income"]) for i in state["income"] if i["incomeType"] == "COMMISSION"]


async def _position(sim) -> D:
    pos = (await admin(sim.url, "/_sim/state"))["positions"]
    return sum((D(p["positionAmt"]) for p in pos), D(0))


# ---- per dialect ------------------------------------------------------------------------------
async def test_post_only_rests_then_fills_as_maker_at_its_price(venue, sim, ex) -> None:
    await pin(sim, "50000")
    o = await ex.create_order(venue.symbol, "limit", "buy", venue.amount("0.01"), 49900, {"postOnly": True})
    await asyncio.sleep(0.3)  # ticks pass: the book (best ask 50005) does not reach 49900
    (rest,) = await ex.fetch_open_orders(venue.symbol)
    assert rest["id"] == o["id"] and rest["status"] == "open" and rest["filled"] == 0 and rest["postOnly"]
    assert await _position(sim) == 0 and await ex.fetch_my_trades(venue.symbol) == []
    await pin(sim, "49800")  # best ask 49805: the mark moved through the bid
    done = await venue.fetch(ex, o["id"])
    assert done["status"] == "closed" and done["filled"] == venue.amount("0.01")
    assert done["average"] in (49900, None)  # Hyperliquid's orderStatus carries no average
    (t,) = await ex.fetch_my_trades(venue.symbol)
    fee = D("0.01") * 49900 * venue.maker_fee
    assert t["takerOrMaker"] == "maker" and t["price"] == 49900 and t["order"] == o["id"]
    assert D(str(t["fee"]["cost"])) == fee
    state = await admin(sim.url, "/_sim/state")
    assert _commissions(state) == [-fee] and await _position(sim) == D("0.01")
    assert await ex.fetch_open_orders(venue.symbol) == []


async def test_crossing_post_only_is_refused_as_the_venue_does(venue, sim, ex) -> None:
    await pin(sim, "50000")
    cid = venue.cid(7)
    params = {"postOnly": True, "clientOrderId": cid}
    if venue.dialect == "binance":  # refused, not recorded (-5022 since 2023-03-22)
        with pytest.raises(ccxt.OrderNotFillable, match="-5022"):
            await ex.create_order(venue.symbol, "limit", "buy", venue.amount("0.01"), 50010, params)
        assert not [o for o in (await admin(sim.url, "/_sim/state"))["orders"] if o["clientOrderId"] == cid]
    elif venue.dialect == "hyperliquid":
        with pytest.raises(ccxt.InvalidOrder, match="Post only order would have immediately matched"):
            await ex.create_order(venue.symbol, "limit", "buy", venue.amount("0.01"), 50010, params)
        assert (await admin(sim.url, "/_sim/state"))["orders"] == []
    else:  # Bybit / OKX: created, then cancelled at once
        o = await ex.create_order(venue.symbol, "limit", "buy", venue.amount("0.01"), 50010, params)
        got = await venue.fetch(ex, o["id"])
        assert got["status"] == "canceled" and got["filled"] == 0 and got["clientOrderId"] == cid
        if venue.dialect == "bybit":
            assert (got["info"]["orderStatus"], got["info"]["rejectReason"]) == (
                "Cancelled", "EC_PostOnlyWillTakeLiquidity")
        else:
            assert (got["info"]["state"], got["info"]["cancelSource"], got["info"]["ordType"]) == (
                "canceled", "31", "post_only")
    assert await _position(sim) == 0 and await ex.fetch_open_orders(venue.symbol) == []
    assert _commissions(await admin(sim.url, "/_sim/state")) == []


async def test_ioc_fills_within_its_price_and_the_rest_expires(venue, sim, ex) -> None:
    await pin(sim, "50000", book_level_notional=1000)  # 0.02 BTC per level: asks 50005, 50010, 50015 ...
    o = await ex.create_order(venue.symbol, "limit", "buy", venue.amount("0.05"), 50010, {"timeInForce": "IOC"})
    got = await venue.fetch(ex, o["id"])
    assert got["status"] == venue.ioc_status and got["filled"] == venue.amount("0.04")
    trades = await ex.fetch_my_trades(venue.symbol)
    assert sorted(t["price"] for t in trades) == [50005, 50010] and {t["takerOrMaker"] for t in trades} == {"taker"}
    fees = sorted(-c for c in _commissions(await admin(sim.url, "/_sim/state")))
    assert fees == sorted(D("0.02") * p * venue.taker_fee for p in (50005, 50010))
    assert await _position(sim) == D("0.04") and await ex.fetch_open_orders(venue.symbol) == []


async def test_thin_book_fills_a_resting_order_in_part_over_ticks(venue, tmp_path) -> None:
    async with _open(tmp_path, venue, tick_ms=SLOW_TICK, name="thin") as sim:
        async with _client(sim, venue) as ex:
            await pin(sim, "50000", book_level_notional=1000)
            o = await ex.create_order(venue.symbol, "limit", "buy", venue.amount("0.05"), 49995)  # GTC
            seen = []
            for _ in range(3):  # best ask 49995 (0.02 BTC), the next 50000: one level reaches the bid
                await pin(sim, "49990")
                got = await venue.fetch(ex, o["id"])
                seen.append((got["status"], got["filled"]))
            a = venue.amount
            assert seen == [("open", a("0.02")), ("open", a("0.04")), ("closed", a("0.05"))]
            rows = _orders(await admin(sim.url, "/_sim/state"), o["id"])
            assert [r["status"] for r in rows] == ["FILLED"]
            trades = await ex.fetch_my_trades(venue.symbol)
            assert sorted(t["amount"] for t in trades) == [a("0.01"), a("0.02"), a("0.02")]
            assert {(t["price"], t["takerOrMaker"]) for t in trades} == {(49995, "maker")}


async def test_cancelled_resting_order_never_fills(venue, sim, ex) -> None:
    await pin(sim, "50000")
    o = await ex.create_order(venue.symbol, "limit", "sell", venue.amount("0.01"), 50100)
    keep = await ex.create_order(venue.symbol, "limit", "sell", venue.amount("0.01"), 50200, {"postOnly": True})
    await ex.cancel_order(o["id"], venue.symbol)
    assert [x["id"] for x in await ex.fetch_open_orders(venue.symbol)] == [keep["id"]]
    await pin(sim, "50150")  # best bid 50144.9: through the cancelled 50100, short of 50200
    await asyncio.sleep(0.3)
    got = await venue.fetch(ex, o["id"])
    assert got["status"] == "canceled" and got["filled"] == 0
    assert await ex.fetch_my_trades(venue.symbol) == [] and await _position(sim) == 0
    await ex.cancel_order(keep["id"], venue.symbol)
    assert await ex.fetch_open_orders(venue.symbol) == []


# ---- one dialect is enough -------------------------------------------------------------------
BINANCE = VENUES[0]


async def test_the_price_path_ticks_fill_without_admin_moves(tmp_path) -> None:
    async with _open(tmp_path, BINANCE, tick_ms=50, name="loop") as sim:
        async with _client(sim) as ex:
            await pin(sim, "50000", book_level_notional=1000)
            o = await ex.create_order(BINANCE.symbol, "limit", "buy", 0.1, 49995, {"postOnly": True})
            await pin(sim, "49990")  # one tick fills 0.02; the loop's ticks (50 ms) the rest
            await asyncio.sleep(0.6)
            got = await ex.fetch_order(o["id"], BINANCE.symbol)
            assert got["status"] == "closed" and got["filled"] == 0.1
            trades = await ex.fetch_my_trades(BINANCE.symbol)
            assert len(trades) == 5 and all(t["info"]["maker"] is True for t in trades)


async def test_reduce_only_resting_order_never_opens_or_flips(tmp_path) -> None:
    async with _open(tmp_path, BINANCE, tick_ms=SLOW_TICK, name="ro") as sim:
        async with _client(sim) as ex:
            await pin(sim, "50000")
            await ex.create_order(BINANCE.symbol, "market", "buy", 0.02)
            ro = await ex.create_order(BINANCE.symbol, "limit", "sell", 0.02, 50100, {"reduceOnly": True})
            late = await ex.create_order(BINANCE.symbol, "limit", "sell", 0.02, 50300, {"reduceOnly": True})
            await ex.create_order(BINANCE.symbol, "market", "sell", 0.015, params={"reduceOnly": True})
            await pin(sim, "50200")  # crosses 50100: what is held (0.005) fills, the rest expires
            got = await ex.fetch_order(ro["id"], BINANCE.symbol)
            assert (got["status"], got["filled"], got["average"]) == ("expired", 0.005, 50100)
            assert await _position(sim) == 0
            await pin(sim, "50400")  # crosses 50300 with nothing left to reduce: expires unfilled
            got = await ex.fetch_order(late["id"], BINANCE.symbol)
            assert (got["status"], got["filled"]) == ("expired", 0)
            assert await _position(sim) == 0 and await ex.fetch_open_orders(BINANCE.symbol) == []


async def test_resting_orders_need_margin_as_market_orders_do(tmp_path) -> None:
    async with _open(tmp_path, BINANCE, tick_ms=SLOW_TICK, name="im", balance=D(100)) as sim:
        async with _client(sim) as ex:  # 100 USDT at 20x: 2,000 USDT of open orders and positions
            await pin(sim, "50000")
            with pytest.raises(ccxt.InsufficientFunds):  # 0.05 × 49900 / 20 = 124.75
                await ex.create_order(BINANCE.symbol, "limit", "buy", 0.05, 49900, {"postOnly": True})
            await ex.create_order(BINANCE.symbol, "limit", "buy", 0.03, 49900, {"postOnly": True})  # 74.85
            with pytest.raises(ccxt.InsufficientFunds):  # the resting order's margin is held
                await ex.create_order(BINANCE.symbol, "limit", "buy", 0.03, 49800, {"postOnly": True})
            assert len(await ex.fetch_open_orders(BINANCE.symbol)) == 1


async def test_resting_order_survives_a_restart(tmp_path) -> None:
    state = str(tmp_path / "restart.sqlite")
    async with _open(tmp_path, BINANCE, tick_ms=SLOW_TICK, name="r1", state=state) as sim:
        async with _client(sim) as ex:
            await pin(sim, "50000", book_level_notional=1000)
            o = await ex.create_order(BINANCE.symbol, "limit", "buy", 0.03, 49995, {"postOnly": True})
            await pin(sim, "49990")  # 0.02 of 0.03
            assert (await ex.fetch_order(o["id"], BINANCE.symbol))["filled"] == 0.02
            await pin(sim, "50000")  # away again: the restarted venue's first tick must not fill it
    async with _open(tmp_path, BINANCE, tick_ms=SLOW_TICK, name="r2", state=state) as sim:
        async with _client(sim) as ex:
            (rest,) = await ex.fetch_open_orders(BINANCE.symbol)
            assert rest["id"] == o["id"] and rest["filled"] == 0.02 and rest["info"]["status"] == "PARTIALLY_FILLED"
            await pin(sim, "49990")  # this tick fills the rest
            got = await ex.fetch_order(o["id"], BINANCE.symbol)
            assert got["status"] == "closed" and got["filled"] == 0.03 and await _position(sim) == D("0.03")


async def test_faults_on_resting_orders(tmp_path) -> None:
    async with _open(tmp_path, BINANCE, tick_ms=SLOW_TICK, name="flt") as sim:
        async with _client(sim) as ex:
            await pin(sim, "50000")
            await admin(sim.url, "/_sim/faults", {"drop_responses": 1, "partial_fill_ratio": 0.5})
            with pytest.raises(ccxt.RequestTimeout):  # accepted and resting, the answer lost
                await ex.create_order(BINANCE.symbol, "limit", "buy", 0.01, 49900,
                                      {"postOnly": True, "clientOrderId": "lost1"})
            (rest,) = await ex.fetch_open_orders(BINANCE.symbol)
            assert rest["clientOrderId"] == "lost1"
            await admin(sim.url, "/_sim/faults", {"symbol_status": {"BTC/USDT:USDT": "SETTLING"}})
            await pin(sim, "49800")  # no matching while the symbol is not trading
            assert (await ex.fetch_order(rest["id"], BINANCE.symbol))["filled"] == 0
            await admin(sim.url, "/_sim/faults", {"symbol_status": {}, "outage": True})
            await pin(sim, "49800")  # the API is down, the matching engine is not
            await admin(sim.url, "/_sim/faults", {"outage": False})
            got = await ex.fetch_order(rest["id"], BINANCE.symbol)
            assert got["status"] == "closed" and got["filled"] == 0.01  # partial_fill_ratio: taker fills only
            await admin(sim.url, "/_sim/faults", {"execute_late_ms": 300})
            late = await ex.create_order(BINANCE.symbol, "limit", "sell", 0.01, 49700, {"postOnly": True})
            assert late["status"] == "open"  # answered NEW; matched later it would take: expired
            await asyncio.sleep(0.5)
            assert (await ex.fetch_order(late["id"], BINANCE.symbol))["status"] == "expired"


async def test_bybit_post_only_matched_late_is_cancelled_with_its_reason(tmp_path) -> None:
    v = VENUES[1]
    async with _open(tmp_path, v, name="late") as sim:
        async with _client(sim, v) as ex:
            await pin(sim, "50000")
            await admin(sim.url, "/_sim/faults", {"execute_late_ms": 300})
            o = await ex.create_order(v.symbol, "limit", "buy", 0.01, 50010, {"postOnly": True})
            await asyncio.sleep(0.5)
            got = await v.fetch(ex, o["id"])
            assert (got["status"], got["info"]["rejectReason"]) == ("canceled", "EC_PostOnlyWillTakeLiquidity")
            fee = await ex.fetch_trading_fee(v.symbol)
            assert (fee["maker"], fee["taker"]) == (0.0002, 0.00055)


def test_fee_options_and_dialect_defaults() -> None:
    from venues.sim.venue import Sim

    for v in VENUES:
        s = Sim(SimOptions(name="f", dialect=v.dialect, state=":memory:", **dict(v.sim)))
        assert (s.engine.maker_fee, s.engine.taker_fee) == (v.maker_fee, v.taker_fee), v.dialect
        s.store.close()
    args = build_parser().parse_args(["--name", "x", "--port", "0", "--dialect", "bybit", "--maker-fee", "-0.0001",
                                      "--taker-fee", "0.0004", "--tick-ms", "250"])
    opts = options_from_args(args)
    assert (opts.maker_fee, opts.taker_fee, opts.tick_ms) == (D("-0.0001"), D("0.0004"), 250)
    s = Sim(SimOptions(name="f", dialect="bybit", state=":memory:", maker_fee=opts.maker_fee, taker_fee=opts.taker_fee))
    assert (s.engine.maker_fee, s.engine.taker_fee) == (D("-0.0001"), D("0.0004"))
    s.store.close()
    plain = options_from_args(build_parser().parse_args(["--name", "x", "--port", "0"]))
    assert (plain.maker_fee, plain.taker_fee, plain.tick_ms) == (None, None, 1000)
