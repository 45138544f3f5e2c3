"""Unmodified ccxt okx against the simulator's OKX v5 dialect (in-process, real HTTP).

Sizes on the wire are contracts: BTC-USDT-SWAP ctVal 0.01 BTC, ETH 0.1, SOL 1, synthetic
S### one step; the admin ``/_sim/state`` keeps base units."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt
import pytest

from tests.simproc import admin, in_process_sim
from venues.sim import DEFAULT_API_KEY, DEFAULT_API_SECRET, build_parser, options_from_args

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
SOL = "SOL/USDT:USDT"
PASSPHRASE = "Sim-Pass-1"


def okx_client(url: str, password: str = PASSPHRASE, secret: str = DEFAULT_API_SECRET, **kw) -> ccxt.okx:
    """ccxt's okx, unmodified, with its API host pointed at ``url``."""
    ex = ccxt.okx({"apiKey": DEFAULT_API_KEY, "secret": secret, "password": password, "enableRateLimit": False, **kw})
    for k in list(ex.urls["api"]):
        ex.urls["api"][k] = url.rstrip("/")
    return ex


@pytest.fixture
async def sim(tmp_path) -> AsyncIterator:
    async with in_process_sim(tmp_path, "okx-t", seed=7, dialect="okx", api_passphrase=PASSPHRASE) as h:
        yield h


@pytest.fixture
async def ex(sim) -> AsyncIterator[ccxt.okx]:
    client = okx_client(sim.url)
    try:
        await client.load_markets()
        yield client
    finally:
        await client.close()


async def readme_snippet(url: str, passphrase: str) -> dict:
    """The README-style example: plain ccxt okx against ``hedgeflow sim --dialect okx``."""
    import ccxt.async_support as ccxt

    ex = ccxt.okx({"apiKey": DEFAULT_API_KEY, "secret": DEFAULT_API_SECRET, "password": passphrase})
    ex.urls["api"]["rest"] = url  # e.g. http://127.0.0.1:8711 (hedgeflow sim --dialect okx ...)
    try:
        await ex.load_markets()
        rate = (await ex.fetch_funding_rates(["BTC/USDT:USDT"]))["BTC/USDT:USDT"]
        o = await ex.create_order("BTC/USDT:USDT", "market", "buy", 1,  # 1 contract = 0.01 BTC
                                  params={"clientOrderId": "readme1"})
        filled = await ex.fetch_order(o["id"], "BTC/USDT:USDT")
        (pos,) = await ex.fetch_positions(["BTC/USDT:USDT"])
        await ex.create_order("BTC/USDT:USDT", "market", "sell", 1, params={"reduceOnly": True})
        return {"rate": rate, "order": filled, "position": pos, "balance": await ex.fetch_balance()}
    finally:
        await ex.close()


async def test_readme_snippet(sim) -> None:
    out = await readme_snippet(sim.url, PASSPHRASE)
    assert out["rate"]["interval"] == "8h" and out["order"]["filled"] == 1 and out["order"]["status"] == "closed"
    assert out["position"]["contracts"] == 1 and out["position"]["contractSize"] == 0.01
    assert out["balance"]["USDT"]["total"] < 100000  # fees paid


async def test_markets_in_contracts(tmp_path) -> None:
    async with in_process_sim(tmp_path, "okx-m", dialect="okx", api_passphrase=PASSPHRASE, symbols=5) as h:
        ex = okx_client(h.url)
        try:
            await ex.load_markets()
            assert set(ex.symbols) == {BTC, ETH, SOL, "S001/USDT:USDT", "S002/USDT:USDT"}
            m = ex.market(BTC)
            assert m["id"] == "BTC-USDT-SWAP" and m["swap"] and m["linear"] and m["active"] and m["settle"] == "USDT"
            assert m["contractSize"] == 0.01 and m["precision"]["amount"] == 0.1 and m["precision"]["price"] == 0.1
            assert m["limits"]["amount"]["min"] == 0.1 and m["limits"]["leverage"]["max"] == 125
            assert m["info"]["ctValCcy"] == "BTC" and m["info"]["state"] == "live"
            assert ex.market(ETH)["contractSize"] == 0.1 and ex.market(ETH)["precision"]["amount"] == 0.01
            assert ex.market(SOL)["contractSize"] == 1 and ex.market(SOL)["precision"]["amount"] == 1
            state = await admin(h.url, "/_sim/market")
            s1 = next(r for r in state if r["symbol"] == "S001/USDT:USDT")
            m1 = ex.market("S001/USDT:USDT")
            assert m1["contractSize"] == float(s1["qty_step"]) and m1["precision"]["amount"] == 1
            assert m1["limits"]["amount"]["min"] == float(D(s1["min_qty"]) / D(s1["qty_step"]))
            # a qty_step override changes lotSz, never ctVal (a contract's meaning)
            await admin(h.url, "/_sim/market", {"symbol": BTC, "qty_step": "0.01"})
            (inst,) = (await ex.public_get_public_instruments({"instType": "SWAP", "instId": "BTC-USDT-SWAP"}))["data"]
            assert inst["ctVal"] == "0.01" and inst["lotSz"] == "1"
            assert (await ex.public_get_public_instruments({"instType": "SPOT"}))["data"] == []
        finally:
            await ex.close()


async def test_funding_rates_book_mark_ticker(ex, sim) -> None:
    rates = await ex.fetch_funding_rates()
    assert set(rates) == {BTC, ETH, SOL}
    for r in rates.values():
        assert isinstance(r["fundingRate"], float) and r["interval"] == "8h"
        assert r["fundingTimestamp"] % (8 * 3600 * 1000) == 0
        assert r["nextFundingTimestamp"] - r["fundingTimestamp"] == 8 * 3600 * 1000
    one = await ex.fetch_funding_rate(BTC)
    assert one["fundingRate"] == pytest.approx(rates[BTC]["fundingRate"], abs=1e-5)
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "price": "50000", "funding_interval_hours": 4})
    assert (await ex.fetch_funding_rate(BTC))["interval"] == "4h"
    ob = await ex.fetch_order_book(BTC, 5)
    assert len(ob["bids"]) == 5 and ob["bids"][0][0] < 50000 < ob["asks"][0][0]
    assert ob["asks"][0][1] == 100  # 50 000 USDT a level = 1 BTC = 100 contracts
    mark = await ex.fetch_mark_price(BTC)
    assert mark["markPrice"] == 50000
    t = await ex.fetch_ticker(BTC)
    assert t["bid"] == ob["bids"][0][0] and t["ask"] == ob["asks"][0][0]


async def test_balance_leverage_position_mode(ex) -> None:
    bal = await ex.fetch_balance()
    assert bal["USDT"]["total"] == 100000 and bal["USDT"]["free"] == 100000
    await ex.set_leverage(5, BTC)
    lev = await ex.fetch_leverage(BTC)
    assert lev["longLeverage"] == 5 and lev["marginMode"] == "cross"
    with pytest.raises(ccxt.ExchangeError, match="59102"):
        await ex.set_leverage(110, SOL)  # above the instrument's max lever (100)
    await ex.set_position_mode(False)
    assert (await ex.fetch_position_mode())["hedged"] is False
    with pytest.raises(ccxt.BadRequest):
        await ex.set_position_mode(True)  # the core keeps net positions only


async def test_round_trip_in_contracts_with_client_ids(ex, sim) -> None:
    await ex.set_leverage(10, BTC)
    o = await ex.create_order(BTC, "market", "buy", 2.5, params={"clientOrderId": "open1"})
    assert o["clientOrderId"] == "open1" and o["id"]
    got = await ex.fetch_order(o["id"], BTC)
    assert got["status"] == "closed" and got["filled"] == 2.5 and got["amount"] == 2.5 and got["side"] == "buy"
    assert got["clientOrderId"] == "open1" and got["fee"]["cost"] > 0 and float(got["info"]["fee"]) < 0
    assert got["info"]["sz"] == "2.5" and got["info"]["tdMode"] == "cross" and got["reduceOnly"] is False
    by_cid = await ex.fetch_order(None, BTC, params={"clientOrderId": "open1"})
    assert by_cid["id"] == o["id"]
    (pos,) = await ex.fetch_positions([BTC])
    assert pos["contracts"] == 2.5 and pos["contractSize"] == 0.01 and pos["side"] == "long"
    assert pos["marginMode"] == "cross" and pos["info"]["posSide"] == "net" and pos["leverage"] == 10
    assert pos["entryPrice"] == got["average"]
    assert pos["liquidationPrice"] is None  # 0.025 BTC long on 100 000 USDT cross: no liquidation price
    state = await admin(sim.url, "/_sim/state")
    assert state["dialect"] == "okx"
    assert [p["positionAmt"] for p in state["positions"]] == ["0.025"]  # base units
    c = await ex.create_order(BTC, "market", "sell", 2.5, params={"reduceOnly": True, "clientOrderId": "close1"})
    closed = await ex.fetch_order(None, BTC, params={"clientOrderId": "close1"})
    assert c["id"] == closed["id"] and closed["filled"] == 2.5 and closed["reduceOnly"] is True
    assert await ex.fetch_positions([BTC]) == []
    trades = await ex.fetch_my_trades(BTC)
    assert {t["order"] for t in trades} == {o["id"], c["id"]}
    assert sum(t["amount"] for t in trades if t["order"] == o["id"]) == 2.5
    assert all(t["fee"]["cost"] > 0 and t["fee"]["currency"] == "USDT" for t in trades)
    assert await ex.fetch_my_trades() == []  # ccxt asks for instType SPOT without a symbol
    assert len(await ex.fetch_my_trades(params={"instType": "SWAP"})) == len(trades)
    state = await admin(sim.url, "/_sim/state")
    total = sum(D(i["income"]) for i in state["income"])
    bal = await ex.fetch_balance()
    assert D(str(bal["USDT"]["total"])) == D(100000) + total


async def test_trade_order_endpoint_and_limit_cancel(tmp_path) -> None:
    async with in_process_sim(tmp_path, "okx-c", dialect="okx", api_passphrase=PASSPHRASE) as h:
        ex = okx_client(h.url, options={"createOrder": "privatePostTradeOrder"})
        try:
            await ex.load_markets()
            mark = (await ex.fetch_mark_price(ETH))["markPrice"]
            px = round(mark * 0.97, 2)
            o = await ex.create_order(ETH, "limit", "buy", 1, px, params={"clientOrderId": "rest1"})
            assert [x["id"] for x in await ex.fetch_open_orders(ETH)] == [o["id"]]
            got = await ex.fetch_order(o["id"], ETH)
            assert got["status"] == "open" and got["price"] == px and got["amount"] == 1
            with pytest.raises(ccxt.InvalidOrder):  # an open order has that client id
                await ex.create_order(ETH, "limit", "buy", 1, px, params={"clientOrderId": "rest1"})
            await ex.cancel_order(o["id"], ETH)
            assert (await ex.fetch_order(o["id"], ETH))["status"] == "canceled"
            assert [x["id"] for x in await ex.fetch_canceled_orders(ETH)] == [o["id"]]
            assert await ex.fetch_closed_orders(ETH) == []  # ccxt asks for state filled
            with pytest.raises(ccxt.OrderNotFound):
                await ex.cancel_order(o["id"], ETH)
            with pytest.raises(ccxt.OrderNotFound):
                await ex.fetch_order("123456", ETH)
            with pytest.raises(ccxt.OrderNotFound):
                await ex.fetch_order(None, ETH, params={"clientOrderId": "never"})
            with pytest.raises(ccxt.InvalidOrder):  # 0.005 contracts: not a multiple of lotSz 0.01 (51121)
                await ex.private_post_trade_order({"instId": "ETH-USDT-SWAP", "tdMode": "cross", "side": "buy",
                                                   "ordType": "market", "sz": "0.005"})
        finally:
            await ex.close()


async def test_funding_history_after_settlement(ex, sim) -> None:
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "price": "60000", "funding_rate": "0.001"})
    await ex.create_order(BTC, "market", "sell", 10)  # short 0.1 BTC: receives funding
    await admin(sim.url, "/_sim/settle", {"symbol": BTC})
    (f,) = await ex.fetch_funding_history(BTC)
    assert f["symbol"] == BTC and f["code"] == "USDT" and f["amount"] == pytest.approx(0.1 * 60000 * 0.001)
    assert f["info"]["type"] == "8" and f["info"]["subType"] == "174"
    assert await ex.fetch_ledger("USDT") == []  # ccxt's default type is spot: instType SPOT
    ledger = await ex.fetch_ledger("USDT", params={"type": "swap"})  # /account/bills: trade and funding fee
    assert sorted(e["info"]["type"] for e in ledger) == ["2", "8"]
    state = await admin(sim.url, "/_sim/state")
    assert D(f["info"]["bal"]) == D(state["balances"]["USDT"]["wallet"])


async def test_exception_classes(ex, sim) -> None:
    bad = okx_client(sim.url, password="wrong")
    bad_sig = okx_client(sim.url, secret="not-the-secret")
    try:
        with pytest.raises(ccxt.AuthenticationError, match="50105"):
            await bad.fetch_balance()
        with pytest.raises(ccxt.AuthenticationError, match="50113"):
            await bad_sig.fetch_balance()
    finally:
        await bad.close()
        await bad_sig.close()
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order(BTC, "market", "buy", 10000)  # 100 BTC at 20x
    with pytest.raises(ccxt.ExchangeError, match="51169") as ei:  # ccxt's okx table has no 51169
        await ex.create_order(ETH, "market", "sell", 1, params={"reduceOnly": True})
    assert type(ei.value) is ccxt.ExchangeError
    with pytest.raises(ccxt.BadSymbol):
        await ex.public_get_market_books({"instId": "NOPE-USDT-SWAP"})
    with pytest.raises(ccxt.BadSymbol):
        await ex.private_post_trade_order({"instId": "NOPE-USDT-SWAP", "tdMode": "cross", "side": "buy",
                                           "ordType": "market", "sz": "1"})
    await admin(sim.url, "/_sim/faults", {"clock_skew_ms": 60000})
    with pytest.raises(ccxt.InvalidNonce, match="50102"):
        await ex.fetch_balance()
    await admin(sim.url, "/_sim/faults", {"clock_skew_ms": 0})
    await admin(sim.url, "/_sim/faults", {"lookup_errors": 1})
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.fetch_order("1", BTC)


async def test_raw_wire_shapes(sim) -> None:
    """Signed by hand: an order refused inside data[0] (code "1", HTTP 200), auth at HTTP 401."""
    def headers(method: str, path: str, body: str = "", passphrase: str = PASSPHRASE) -> dict:
        ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        sig = base64.b64encode(hmac.new(DEFAULT_API_SECRET.encode(), (ts + method + path + body).encode(),
                                        hashlib.sha256).digest()).decode()
        return {"OK-ACCESS-KEY": DEFAULT_API_KEY, "OK-ACCESS-SIGN": sig, "OK-ACCESS-TIMESTAMP": ts,
                "OK-ACCESS-PASSPHRASE": passphrase, "Content-Type": "application/json"}

    body = json.dumps({"instId": "BTC-USDT-SWAP", "tdMode": "cross", "side": "buy", "ordType": "market",
                       "sz": "0.1", "reduceOnly": True, "clOrdId": "raw1"})
    async with aiohttp.ClientSession() as s:
        async with s.post(sim.url + "/api/v5/trade/order", data=body,
                          headers=headers("POST", "/api/v5/trade/order", body)) as r:
            assert r.status == 200
            out = await r.json()
        assert out["code"] == "1" and out["data"][0]["sCode"] == "51169" and out["data"][0]["clOrdId"] == "raw1"
        path = "/api/v5/account/balance?ccy=USDT"
        async with s.get(sim.url + path, headers=headers("GET", path, passphrase="nope")) as r:
            assert r.status == 401 and (await r.json())["code"] == "50105"
        async with s.get(sim.url + path, headers=headers("GET", path)) as r:
            out = await r.json()
        assert out["code"] == "0" and out["data"][0]["details"][0]["ccy"] == "USDT"
        async with s.get(sim.url + "/api/v5/public/time") as r:
            assert int((await r.json())["data"][0]["ts"]) > 0


async def test_fault_drop_responses_executes(ex, sim) -> None:
    await admin(sim.url, "/_sim/faults", {"drop_responses": 1})
    with pytest.raises(ccxt.NetworkError) as ei:
        await ex.create_order(BTC, "market", "buy", 0.2, params={"clientOrderId": "dropped1"})
    assert isinstance(ei.value, ccxt.RequestTimeout)  # 50004 at HTTP 503
    o = await ex.fetch_order(None, BTC, params={"clientOrderId": "dropped1"})
    assert o["status"] == "closed" and o["filled"] == 0.2
    assert (await ex.create_order(BTC, "market", "buy", 0.2))["id"]  # n was 1


async def test_fault_symbol_status_and_late_execution(ex, sim) -> None:
    await ex.create_order(SOL, "market", "buy", 3)
    await admin(sim.url, "/_sim/faults", {"symbol_status": {SOL: "BREAK"}})
    (inst,) = (await ex.public_get_public_instruments({"instType": "SWAP", "instId": "SOL-USDT-SWAP"}))["data"]
    assert inst["state"] == "suspend"
    with pytest.raises(ccxt.ContractUnavailable):
        await ex.create_order(SOL, "market", "buy", 1)
    assert (await ex.create_order(SOL, "market", "sell", 1, params={"reduceOnly": True}))["id"]
    await admin(sim.url, "/_sim/faults", {"symbol_status": {}, "execute_late_ms": 300})
    o = await ex.create_order(SOL, "market", "sell", 2, params={"reduceOnly": True, "clientOrderId": "late1"})
    assert (await ex.fetch_order(o["id"], SOL))["status"] == "open"
    await asyncio.sleep(0.6)
    assert (await ex.fetch_order(o["id"], SOL))["filled"] == 2
    assert await ex.fetch_positions([SOL]) == []


def test_cli_requires_passphrase_for_okx(monkeypatch) -> None:
    monkeypatch.delenv("HEDGEFLOW_SIM_API_PASSPHRASE", raising=False)
    args = build_parser().parse_args(["--name", "o", "--port", "0", "--dialect", "okx"])
    with pytest.raises(ValueError, match="--api-passphrase is required for --dialect okx"):
        options_from_args(args)
    args = build_parser().parse_args(["--name", "o", "--port", "0", "--dialect", "okx", "--api-passphrase", "p"])
    assert options_from_args(args).api_passphrase == "p"


async def test_rate_limit_answers_50011(tmp_path) -> None:
    async with in_process_sim(tmp_path, "okx-r", dialect="okx", api_passphrase=PASSPHRASE, weight_limit=3) as h:
        ex = okx_client(h.url)
        try:
            with pytest.raises(ccxt.RateLimitExceeded, match="50011"):
                for _ in range(5):
                    await ex.fetch_time()
        finally:
            await ex.close()
