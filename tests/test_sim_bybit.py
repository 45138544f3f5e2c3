"""Unmodified ccxt bybit (v5, unified account) against the simulator's ``bybit`` dialect over
real HTTP: only ccxt's API host is pointed at the simulator."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt
import pytest

from tests.simproc import admin, in_process_sim
from venues.sim import DEFAULT_API_KEY, DEFAULT_API_SECRET

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
SOL = "SOL/USDT:USDT"


def bybit_client(url: str, api_key: str = DEFAULT_API_KEY, secret: str = DEFAULT_API_SECRET,
                 **options) -> ccxt.bybit:
    """ccxt bybit with every API URL pointed at the simulator (nothing else changed but the
    market types it loads: linear only, the venue lists nothing else)."""
    ex = ccxt.bybit({"apiKey": api_key, "secret": secret, "enableRateLimit": False,
                     "options": {"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}, **options}})
    for k in list(ex.urls["api"]):
        ex.urls["api"][k] = url
    return ex


@pytest.fixture
async def sim(tmp_path) -> AsyncIterator:
    async with in_process_sim(tmp_path, "bb", dialect="bybit", seed=7) as h:
        yield h


@pytest.fixture
async def ex(sim) -> AsyncIterator[ccxt.bybit]:
    client = bybit_client(sim.url)
    try:
        await client.load_markets()
        yield client
    finally:
        await client.close()


# ---- the README snippet (its source is what the README shows) ----------------------------
async def readme_snippet(sim_url: str, api_key: str, secret: str) -> dict:
    import ccxt.async_support as ccxt

    ex = ccxt.bybit({"apiKey": api_key, "secret": secret})
    for k in ex.urls["api"]:
        ex.urls["api"][k] = sim_url  # e.g. http://127.0.0.1:8101 (hedgeflow sim --dialect bybit)
    try:
        await ex.load_markets()
        rates = await ex.fetch_funding_rates()
        order = await ex.create_order("BTC/USDT:USDT", "market", "buy", 0.001, params={"clientOrderId": "readme-1"})
        (filled,) = await ex.fetch_closed_orders("BTC/USDT:USDT", params={"orderLinkId": "readme-1"})
        positions = await ex.fetch_positions()
        return {"rate": rates["BTC/USDT:USDT"]["fundingRate"], "id": order["id"], "filled": filled["filled"],
                "positions": [(p["symbol"], p["side"], p["contracts"]) for p in positions]}
    finally:
        await ex.close()


async def test_readme_snippet_plain_ccxt(sim) -> None:
    src = inspect.getsource(readme_snippet)
    assert "fetchMarkets" not in src and "options" not in src  # plain ccxt: only the URLs change
    got = await readme_snippet(sim.url, DEFAULT_API_KEY, DEFAULT_API_SECRET)
    assert isinstance(got["rate"], float) and got["id"] and got["filled"] == 0.001
    assert got["positions"] == [(BTC, "long", 0.001)]


# ---- market data -------------------------------------------------------------------------
async def test_markets_metadata(ex) -> None:
    assert set(ex.symbols) == {BTC, ETH, SOL}
    m = ex.market(BTC)
    assert m["id"] == "BTCUSDT" and m["swap"] and m["linear"] and m["active"] and m["settle"] == "USDT"
    assert m["contractSize"] == 1 and m["type"] == "swap"
    assert m["precision"]["amount"] == 0.001 and m["precision"]["price"] == 0.1
    assert m["limits"]["amount"]["min"] == 0.001 and m["limits"]["cost"]["min"] == 5
    assert m["limits"]["leverage"]["max"] == 125
    assert m["info"]["fundingInterval"] == 480 and m["info"]["status"] == "Trading"
    assert ex.market(SOL)["precision"]["amount"] == 1


async def test_markets_paginate_and_closed_symbol_not_listed(tmp_path) -> None:
    async with in_process_sim(tmp_path, "big", dialect="bybit", symbols=1030) as h:
        ex = bybit_client(h.url)
        try:
            await ex.load_markets()
            assert len(ex.symbols) == 1030  # two pages of 1000
            await admin(h.url, "/_sim/faults", {"symbol_status": {"ETHUSDT": "CLOSE"}})
            await ex.load_markets(reload=True)
            assert ETH not in ex.symbols and len(ex.symbols) == 1029
        finally:
            await ex.close()


async def test_funding_rates_bulk_and_time(ex, sim) -> None:
    rates = await ex.fetch_funding_rates()
    assert set(rates) == {BTC, ETH, SOL}
    for r in rates.values():
        assert isinstance(r["fundingRate"], float) and r["markPrice"] > 0 and r["indexPrice"] > 0
        assert r["fundingTimestamp"] % (8 * 3600 * 1000) == 0 and r["fundingTimestamp"] > time.time() * 1000
        assert r["interval"] == "8h"
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "funding_rate": "0.0004"})
    assert (await ex.fetch_funding_rate(BTC))["fundingRate"] == 0.0004
    assert abs(await ex.fetch_time() - time.time() * 1000) < 5000


async def test_order_book(ex, sim) -> None:
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "price": "50000"})
    ob = await ex.fetch_order_book(BTC, 5)
    assert len(ob["bids"]) == 5 and len(ob["asks"]) == 5
    assert ob["bids"][0][0] < 50000 < ob["asks"][0][0] and ob["timestamp"] > 0
    assert len((await ex.fetch_order_book(BTC))["bids"]) == 20  # ccxt asks 25, the book has 20 levels


# ---- trading -----------------------------------------------------------------------------
async def test_round_trip_positions_balance_trades(tmp_path) -> None:
    async with in_process_sim(tmp_path, "rt", dialect="bybit", balance=D(1000)) as h:
        ex = bybit_client(h.url)
        try:
            await ex.load_markets()
            await admin(h.url, "/_sim/market", {"symbol": BTC, "price": "50000"})
            o = await ex.create_order(BTC, "market", "buy", 0.1, params={"clientOrderId": "bb-open"})
            assert o["id"] and o["clientOrderId"] == "bb-open"  # Bybit answers ids only
            got = await ex.fetch_order(o["id"], BTC, params={"acknowledged": True})
            assert got["status"] == "closed" and got["filled"] == 0.1 and got["average"] > 50000
            assert got["clientOrderId"] == "bb-open" and got["fee"]["currency"] == "USDT"
            (byc,) = await ex.fetch_closed_orders(BTC, params={"orderLinkId": "bb-open"})
            assert byc["id"] == o["id"]
            (pos,) = await ex.fetch_positions()
            assert pos["symbol"] == BTC and pos["contracts"] == 0.1 and pos["side"] == "long"
            assert pos["entryPrice"] == got["average"] and pos["leverage"] == 20 and pos["hedged"] is False
            assert pos["info"]["positionIdx"] == 0 and 39000 < pos["liquidationPrice"] < 41000
            bal = await ex.fetch_balance()
            state = await admin(h.url, "/_sim/state")
            assert bal["USDT"]["total"] == pytest.approx(float(state["balances"]["USDT"]["wallet"]))
            assert bal["USDT"]["used"] == pytest.approx(0.1 * 50000 / 20, rel=1e-3)
            c = await ex.create_order(BTC, "market", "sell", 0.5, params={"reduceOnly": True, "clientOrderId": "bb-close"})
            (closed,) = await ex.fetch_canceled_and_closed_orders(BTC, params={"orderLinkId": "bb-close"})
            assert closed["id"] == c["id"] and closed["filled"] == 0.1 and closed["reduceOnly"] is True  # clipped
            assert await ex.fetch_positions() == []
            flat = await ex.fetch_position(BTC)
            assert not flat["contracts"] and flat["side"] is None
            trades = await ex.fetch_my_trades(BTC)
            assert sorted(t["order"] for t in trades) == sorted([o["id"], c["id"]])
            assert all(t["fee"]["currency"] == "USDT" and t["fee"]["cost"] > 0 for t in trades)
            assert (await ex.fetch_order_trades(c["id"], BTC))[0]["order"] == c["id"]
            ledger = await ex.fetch_ledger("USDT")
            assert {x["type"] for x in ledger} == {"trade"} and len(ledger) == len(trades)
        finally:
            await ex.close()


async def test_leverage_position_mode_margin_mode(ex) -> None:
    await ex.set_leverage(10, BTC)
    with pytest.raises(ccxt.BadRequest, match="110043"):  # unchanged: Bybit's "leverage not modified"
        await ex.set_leverage(10, BTC)
    assert (await ex.fetch_leverage(BTC))["longLeverage"] == 10
    with pytest.raises(ccxt.BadRequest):
        await ex.set_leverage(500, BTC)
    with pytest.raises(ccxt.NoChange, match="110025"):  # already one-way
        await ex.set_position_mode(False, BTC)
    with pytest.raises(ccxt.BadRequest, match="110029"):
        await ex.set_position_mode(True)
    assert (await ex.fetch_margin_mode(BTC))["marginMode"] == "cross"
    await ex.set_margin_mode("isolated", BTC)
    assert (await ex.fetch_margin_mode(BTC))["marginMode"] == "isolated"
    await ex.create_order(ETH, "market", "sell", 0.1)
    (pos,) = await ex.fetch_positions([ETH])
    assert pos["side"] == "short" and pos["info"]["tradeMode"] == 1 and pos["liquidationPrice"] > 0
    with pytest.raises(ccxt.ExchangeError, match="110073"):  # a position is open
        await ex.set_margin_mode("cross", BTC)


async def test_limit_open_cancel_by_id_and_client_id(ex, sim) -> None:
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "price": "50000"})
    a = await ex.create_order(BTC, "limit", "buy", 0.01, 49000)
    b = await ex.create_order(BTC, "limit", "buy", 0.01, 48000, params={"clientOrderId": "bb-lim"})
    assert {o["id"] for o in await ex.fetch_open_orders(BTC)} == {a["id"], b["id"]}
    assert {o["id"] for o in await ex.fetch_open_orders()} == {a["id"], b["id"]}  # settleCoin USDT
    oa = await ex.fetch_open_order(a["id"], BTC)
    assert oa["status"] == "open" and oa["price"] == 49000 and oa["clientOrderId"] is None
    (ob,) = await ex.fetch_open_orders(BTC, params={"orderLinkId": "bb-lim"})
    assert ob["id"] == b["id"] and ob["remaining"] == 0.01
    with pytest.raises(ccxt.InvalidOrder, match="110072"):
        await ex.create_order(BTC, "limit", "buy", 0.01, 48000, params={"clientOrderId": "bb-lim"})
    await ex.cancel_order(a["id"], BTC)
    await ex.cancel_order(None, BTC, params={"orderLinkId": "bb-lim"})
    assert await ex.fetch_open_orders(BTC) == []
    (ca,) = await ex.fetch_canceled_orders(BTC, params={"orderId": a["id"]})
    assert ca["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound, match="110001"):
        await ex.cancel_order(a["id"], BTC)
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_open_order("12345", BTC)


async def test_exception_classes(sim, ex) -> None:
    bad_secret, bad_key = bybit_client(sim.url, secret="wrong"), bybit_client(sim.url, api_key="wrong")
    try:
        with pytest.raises(ccxt.AuthenticationError, match="10004"):  # loading markets asks for coin info
            await bad_secret.load_markets()
        bad_secret.set_markets_from_exchange(ex)
        with pytest.raises(ccxt.AuthenticationError, match="10004"):
            await bad_secret.fetch_positions()
        with pytest.raises(ccxt.AuthenticationError, match="10003"):
            await bad_key.privateGetV5PositionList({"category": "linear", "settleCoin": "USDT"})
    finally:
        await bad_secret.close()
        await bad_key.close()
    await admin(sim.url, "/_sim/faults", {"clock_skew_ms": 60000})
    with pytest.raises(ccxt.InvalidNonce, match="10002"):
        await ex.fetch_positions()
    await admin(sim.url, "/_sim/faults", {})
    with pytest.raises(ccxt.InsufficientFunds, match="110007"):
        await ex.create_order(BTC, "market", "buy", 100)
    with pytest.raises(ccxt.InvalidOrder, match="110017"):  # reduce-only, no position
        await ex.create_order(ETH, "market", "sell", 0.1, params={"reduceOnly": True})
    with pytest.raises(ccxt.BadRequest, match="symbol invalid") as ei:
        await ex.privatePostV5OrderCreate({"category": "linear", "symbol": "NOPEUSDT", "side": "Buy",
                                           "orderType": "Market", "qty": "1"})
    assert not isinstance(ei.value, ccxt.BadSymbol)  # 10001 "params error: symbol invalid" → BadRequest
    with pytest.raises(ccxt.BadSymbol):  # market data: "Not supported symbols"
        await ex.publicGetV5MarketTickers({"category": "linear", "symbol": "NOPEUSDT"})
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "price": "1000"})
    with pytest.raises(ccxt.InvalidOrder, match="110094"):  # 0.001 x 1000 < 5 USDT
        await ex.create_order(BTC, "market", "buy", 0.001)
    assert (await admin(sim.url, "/_sim/state"))["orders"] == []


async def test_raw_envelope_and_state_dialect(sim) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(sim.url + "/v5/position/list?category=linear&settleCoin=USDT") as r:
            body = await r.json()
            assert r.status == 200 and body["retCode"] == 10003 and set(body) == {
                "retCode", "retMsg", "result", "retExtInfo", "time"}
            assert "X-Bapi-Limit-Status" in r.headers
        async with s.get(sim.url + "/v5/market/time") as r:
            body = await r.json()
            assert body["retCode"] == 0 and body["retMsg"] == "OK" and int(body["result"]["timeSecond"]) > 0
    state = await admin(sim.url, "/_sim/state")
    assert state["dialect"] == "bybit"


# ---- faults and funding ------------------------------------------------------------------
async def test_drop_responses_executes_and_lookup_finds_it(ex, sim) -> None:
    await admin(sim.url, "/_sim/faults", {"drop_responses": 1})
    with pytest.raises(ccxt.NetworkError) as ei:
        await ex.create_order(BTC, "market", "buy", 0.002, params={"clientOrderId": "dropped"})
    assert isinstance(ei.value, ccxt.RequestTimeout)  # 10016 "Request timeout" (HTTP 503)
    (o,) = await ex.fetch_closed_orders(BTC, params={"orderLinkId": "dropped"})
    assert o["status"] == "closed" and o["filled"] == 0.002 and o["clientOrderId"] == "dropped"
    with pytest.raises(ccxt.InvalidOrder, match="110072"):  # a resend cannot execute twice
        await ex.create_order(BTC, "market", "buy", 0.002, params={"clientOrderId": "dropped"})
    await admin(sim.url, "/_sim/faults", {"lookup_errors": 1})
    with pytest.raises(ccxt.ExchangeError, match="10016"):
        await ex.fetch_open_orders(BTC)
    assert await ex.fetch_open_orders(BTC) == []
    await admin(sim.url, "/_sim/faults", {"reject_orders": 1})
    with pytest.raises(ccxt.InvalidOrder):
        await ex.create_order(BTC, "market", "buy", 0.002)


async def test_execute_late(ex, sim) -> None:
    import asyncio

    await admin(sim.url, "/_sim/faults", {"execute_late_ms": 300})
    o = await ex.create_order(BTC, "market", "buy", 0.002, params={"clientOrderId": "late"})
    (pending,) = await ex.fetch_open_orders(BTC, params={"orderLinkId": "late"})
    assert pending["id"] == o["id"] and pending["filled"] == 0
    await asyncio.sleep(0.6)
    (done,) = await ex.fetch_closed_orders(BTC, params={"orderLinkId": "late"})
    assert done["filled"] == 0.002


async def test_funding_history_after_settlement(ex, sim) -> None:
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "price": "50000", "funding_rate": "0.0003"})
    await ex.create_order(BTC, "market", "buy", 0.1)
    await ex.create_order(ETH, "market", "sell", 1)
    await admin(sim.url, "/_sim/settle", {"symbol": BTC})
    (f,) = await ex.fetch_funding_history(BTC)
    assert f["symbol"] == BTC and f["code"] == "USDT" and f["rate"] == 0.0003
    assert f["amount"] == 1.5  # Bybit's execFee: positive = paid (the core's income is -1.5)
    assert f["info"]["execType"] == "Funding" and f["info"]["execQty"] == "0.1"
    state = await admin(sim.url, "/_sim/state")
    assert [D(i["income"]) for i in state["income"] if i["incomeType"] == "FUNDING_FEE"] == [D("-1.5")]
    assert await ex.fetch_funding_history(ETH) == []
    hist = await ex.fetch_funding_rate_history(BTC)
    assert hist[-1]["fundingRate"] == 0.0003
    log = await ex.privateGetV5AccountTransactionLog({"accountType": "UNIFIED", "type": "SETTLEMENT"})
    (row,) = log["result"]["list"]
    assert row["funding"] == "1.5" and row["change"] == "-1.5" and row["symbol"] == "BTCUSDT"
    assert D(row["cashBalance"]) == D(state["balances"]["USDT"]["wallet"])


async def test_rate_limit_and_limit_headers(tmp_path) -> None:
    async with in_process_sim(tmp_path, "rl", dialect="bybit", weight_limit=3) as h:
        ex = bybit_client(h.url)
        try:
            await ex.fetch_time()
            assert ex.last_response_headers["X-Bapi-Limit"] == "3"
            assert ex.last_response_headers["X-Bapi-Limit-Status"] == "2"
            await ex.fetch_time()
            await ex.fetch_time()
            with pytest.raises(ccxt.RateLimitExceeded, match="10006"):
                await ex.fetch_time()
        finally:
            await ex.close()
