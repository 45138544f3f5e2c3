"""Unmodified ccxt binanceusdm against in-process simulated venues over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt
import pytest

from tests.simproc import admin, in_process_sim, sim_client

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
DATA = "/work/shared/data/funding/binance_bybit_okx_2023-01_2024-06.csv"


@pytest.fixture
async def sim(tmp_path) -> AsyncIterator:
    async with in_process_sim(tmp_path, "sim-t", seed=7) as h:
        yield h


@pytest.fixture
async def ex(sim) -> AsyncIterator[ccxt.binanceusdm]:
    async with sim_client(sim.url, load_markets=True) as client:
        yield client


async def test_load_markets_metadata(ex) -> None:
    m = ex.market(BTC)
    assert m["id"] == "BTCUSDT" and m["swap"] and m["linear"] and m["active"] and m["settle"] == "USDT"
    assert m["contractSize"] == 1
    assert m["precision"]["amount"] == 0.001 and m["precision"]["price"] == 0.1
    assert m["limits"]["amount"]["min"] == 0.001 and m["limits"]["cost"]["min"] == 5
    assert ex.market("SOL/USDT:USDT")["precision"]["amount"] == 1
    assert set(ex.symbols) == {BTC, ETH, "SOL/USDT:USDT"}


async def test_many_symbols(tmp_path) -> None:
    async with in_process_sim(tmp_path, "big", symbols=300) as h:
        async with sim_client(h.url) as c:
            await c.load_markets()
            assert len(c.symbols) == 300 and "S001/USDT:USDT" in c.symbols
            rates = await c.fetch_funding_rates()
            assert len(rates) == 300


async def test_funding_rates_all_symbols_one_call(ex, sim) -> None:
    rates = await ex.fetch_funding_rates()
    assert set(rates) == {BTC, ETH, "SOL/USDT:USDT"}
    for r in rates.values():
        assert isinstance(r["fundingRate"], float) and r["markPrice"] > 0
        assert r["fundingTimestamp"] % (8 * 3600 * 1000) == 0 and r["fundingTimestamp"] > time.time() * 1000
    intervals = await ex.fetch_funding_intervals()
    assert intervals[BTC]["interval"] == "8h"


async def test_venues_differ_in_funding(tmp_path) -> None:
    # 20 symbols: the spread of one symbol wanders through zero (about 4 % of the day for the
    # three defaults), the widest of 20 is never that small
    async with in_process_sim(tmp_path, "a", seed=1, symbols=20) as a, \
            in_process_sim(tmp_path, "b", seed=2, symbols=20) as b:
        async with sim_client(a.url) as ca, sim_client(b.url) as cb:
            ra, rb = await ca.fetch_funding_rates(), await cb.fetch_funding_rates()
            spread = max(abs(ra[s]["fundingRate"] - rb[s]["fundingRate"]) for s in ra)
            assert spread > 0.0001
            assert abs(ra[BTC]["markPrice"] / rb[BTC]["markPrice"] - 1) < 0.001


async def test_order_book_slippage_and_partial(ex, sim) -> None:
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "price": "50000"})
    ob = await ex.fetch_order_book(BTC, 5)
    assert len(ob["bids"]) == 5 and ob["bids"][0][0] < 50000 < ob["asks"][0][0]
    level = ob["asks"][0][1]
    o = await ex.create_order(BTC, "market", "buy", round(level * 2.5, 3))
    assert o["status"] == "closed" and o["filled"] == pytest.approx(level * 2.5)
    assert ob["asks"][0][0] < o["average"] < ob["asks"][2][0]  # walked three levels
    # more than the whole side: the remainder expires
    depth = level * 20
    o2 = await ex.create_order(BTC, "market", "sell", round(depth + 5, 3))
    assert o2["info"]["status"] == "EXPIRED" and o2["filled"] == pytest.approx(depth)


async def test_round_trip_flat_with_fees_and_pnl(ex, sim) -> None:
    o = await ex.create_order(BTC, "market", "buy", 0.01, params={"newClientOrderId": "rt-open"})
    assert o["status"] == "closed" and o["filled"] == 0.01 and o["clientOrderId"] == "rt-open"
    pos = [p for p in await ex.fetch_positions() if p["symbol"] == BTC]
    assert pos and pos[0]["contracts"] == 0.01 and pos[0]["side"] == "long"
    assert pos[0]["entryPrice"] == o["average"] and pos[0]["leverage"] == 20
    c = await ex.create_order(BTC, "market", "sell", 0.01, params={"reduceOnly": True})
    assert c["filled"] == 0.01 and c["reduceOnly"] is True
    assert not [p for p in await ex.fetch_positions() if p["symbol"] == BTC and p["contracts"]]
    state = await admin(sim.url, "/_sim/state")
    kinds = [i["incomeType"] for i in state["income"]]
    assert kinds.count("COMMISSION") >= 2 and "REALIZED_PNL" in kinds
    total = sum(D(i["income"]) for i in state["income"])
    assert D(state["balances"]["USDT"]["wallet"]) == D(100000) + total
    pnl = D(next(i["income"] for i in state["income"] if i["incomeType"] == "REALIZED_PNL"))
    assert pnl == ((D(str(c["average"])) - D(str(o["average"]))) * D("0.01")).quantize(D("1e-8"))
    trades = await ex.fetch_my_trades(BTC)
    assert len(trades) == 2 and trades[0]["order"] == o["id"]
    bal = await ex.fetch_balance()
    assert bal["USDT"]["total"] == pytest.approx(float(state["balances"]["USDT"]["wallet"]))


async def test_reduce_only_clipped_and_rejected(ex) -> None:
    with pytest.raises(ccxt.InvalidOrder):
        await ex.create_order(ETH, "market", "sell", 0.1, params={"reduceOnly": True})
    await ex.create_order(ETH, "market", "sell", 0.1)
    o = await ex.create_order(ETH, "market", "buy", 1.0, params={"reduceOnly": True})
    assert o["amount"] == 0.1 and o["filled"] == 0.1
    with pytest.raises(ccxt.InvalidOrder):  # nothing left to reduce
        await ex.create_order(ETH, "market", "buy", 0.1, params={"reduceOnly": True})


async def test_insufficient_margin(ex) -> None:
    await ex.set_leverage(1, BTC)
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order(BTC, "market", "buy", 5)  # ~325k notional at 1x on a 100k wallet


async def test_order_errors(ex) -> None:
    with pytest.raises(ccxt.BadSymbol):
        await ex.fapiPrivatePostOrder({"symbol": "NOPEUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"})
    with pytest.raises(ccxt.BadRequest):  # -4003 quantity zero
        await ex.fapiPrivatePostOrder({"symbol": "SOLUSDT", "side": "BUY", "type": "MARKET", "quantity": "0"})
    with pytest.raises(ccxt.InvalidOrder):  # -1013 Filter failure: MARKET_LOT_SIZE (above maxQty)
        await ex.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "500"})
    with pytest.raises(ccxt.BadRequest):  # not a multiple of the step
        await ex.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0015"})
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order("12345", BTC)
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order(None, BTC, params={"clientOrderId": "never-sent"})


async def test_min_notional(tmp_path) -> None:
    async with in_process_sim(tmp_path, "mn") as h:
        async with sim_client(h.url) as c:
            await admin(h.url, "/_sim/market", {"symbol": "SOLUSDT", "price": "2"})
            with pytest.raises(ccxt.InvalidOrder):
                await c.fapiPrivatePostOrder({"symbol": "SOLUSDT", "side": "BUY", "type": "MARKET", "quantity": "2"})


async def test_fetch_by_id_and_client_id_and_resend_places_again(ex, sim) -> None:
    o = await ex.create_order(BTC, "market", "buy", 0.002, params={"newClientOrderId": "dup-1"})
    by_id = await ex.fetch_order(o["id"], BTC)
    by_cid = await ex.fetch_order(None, BTC, params={"clientOrderId": "dup-1"})
    assert by_id["id"] == by_cid["id"] == o["id"] and by_cid["status"] == "closed" and by_cid["filled"] == 0.002
    again = await ex.create_order(BTC, "market", "buy", 0.002, params={"newClientOrderId": "dup-1"})
    assert again["id"] != o["id"]  # Binance does not dedupe filled orders: the gateway must
    latest = await ex.fetch_order(None, BTC, params={"clientOrderId": "dup-1"})
    assert latest["id"] == again["id"]
    state = await admin(sim.url, "/_sim/state")
    dups = [x for x in state["orders"] if x["clientOrderId"] == "dup-1"]
    assert len(dups) == 2 and all(x["arrived_ns"] > 0 and x["status"] == "FILLED" for x in dups)
    pos = await ex.fetch_positions([BTC])
    assert pos[0]["contracts"] == 0.004


async def test_limit_orders_open_cancel_and_duplicate_open_id(ex) -> None:
    o = await ex.create_order(BTC, "limit", "buy", 0.002, 30000, params={"newClientOrderId": "lim-1"})
    assert o["status"] == "open" and o["filled"] == 0
    with pytest.raises(ccxt.InvalidOrder):  # -4116 duplicate among open orders
        await ex.create_order(BTC, "limit", "buy", 0.002, 30000, params={"newClientOrderId": "lim-1"})
    assert [x["id"] for x in await ex.fetch_open_orders(BTC)] == [o["id"]]
    c = await ex.cancel_order(None, BTC, params={"clientOrderId": "lim-1"})
    assert c["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order(o["id"], BTC)
    inside = round((await ex.fetch_funding_rate(BTC))["markPrice"] * 1.04, 1)  # a BUY above mark × 1.05: -4016
    ioc = await ex.create_order(BTC, "limit", "buy", 0.002, inside, params={"timeInForce": "IOC"})
    assert ioc["status"] == "closed" and ioc["filled"] == 0.002


async def test_ack_response_type(ex) -> None:
    r = await ex.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.002",
                                       "newClientOrderId": "ack-1"})
    assert r["status"] == "NEW" and r["executedQty"] == "0"
    o = await ex.fetch_order(r["orderId"], BTC)
    assert o["status"] == "closed" and o["filled"] == 0.002


async def test_account_endpoints(ex) -> None:
    assert (await ex.fetch_position_mode())["hedged"] is False
    await ex.set_position_mode(False)
    with pytest.raises(ccxt.ExchangeError):
        await ex.set_position_mode(True)
    r = await ex.set_leverage(7, BTC)
    assert r["leverage"] == 7
    await ex.create_order(BTC, "market", "sell", 0.003)
    p = (await ex.fetch_positions([BTC]))[0]
    assert p["leverage"] == 7 and p["side"] == "short" and p["liquidationPrice"] > p["entryPrice"]
    assert p["marginMode"] == "cross"
    acct = await ex.fapiPrivateV2GetAccount()
    assert acct["assets"][0]["asset"] == "USDT"
    assert (await ex.fapiPrivateGetMultiAssetsMargin())["multiAssetsMargin"] is False
    bal = await ex.fetch_balance()
    assert bal["USDT"]["used"] > 0 and bal["USDT"]["free"] < 100000


async def test_auth_errors(sim) -> None:
    async with (sim_client(sim.url, secret="wrong") as bad_secret, sim_client(sim.url, api_key="wrong") as bad_key,
                sim_client(sim.url, load_markets=True) as stale):
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await bad_secret.fetch_balance()
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await bad_key.fetch_balance()
        stale.options["timeDifference"] = 70_000  # clock 70 s behind
        with pytest.raises(ccxt.InvalidNonce, match="-1021"):
            await stale.fetch_balance()


async def test_weight_header_and_429(tmp_path) -> None:
    async with in_process_sim(tmp_path, "w", weight_limit=12) as h:
        async with sim_client(h.url) as c:
            await c.fetch_time()
            assert c.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "1"
            await c.fetch_funding_rates()  # 1 (exchangeInfo) + 10
            assert c.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "12"
            with pytest.raises(ccxt.DDoSProtection):  # ccxt raises DDoSProtection for any HTTP 429
                await c.fetch_time()
            assert c.last_response_headers.get("X-MBX-USED-WEIGHT-1M") == "13"


async def test_fault_outage_error_rate_and_clear(ex, sim) -> None:
    await admin(sim.url, "/_sim/faults", {"outage": True})
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.fetch_time()
    state = await admin(sim.url, "/_sim/state")  # admin keeps working
    assert state["faults"]["outage"] is True
    await admin(sim.url, "/_sim/faults", {})
    await ex.fetch_time()
    await admin(sim.url, "/_sim/faults", {"error_rate": 1.0})
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.create_order(BTC, "market", "buy", 0.002)
    await admin(sim.url, "/_sim/faults", {})
    assert not (await admin(sim.url, "/_sim/state"))["orders"]  # error_rate answers without executing


async def test_fault_validation(sim) -> None:
    async with aiohttp.ClientSession() as s:
        for body, field in (({"nope": 1}, "nope"), ({"latency_ms": -1}, "latency_ms"),
                            ({"error_rate": 2}, "error_rate"), ({"outage": "yes"}, "outage")):
            async with s.post(sim.url + "/_sim/faults", json=body) as r:
                assert r.status == 400
                assert (await r.json())["field"] == field
                assert field in (await r.json())["error"]


async def test_fault_drop_responses_executes(ex, sim) -> None:
    await admin(sim.url, "/_sim/faults", {"drop_responses": 1})
    with pytest.raises(ccxt.NetworkError) as ei:
        await ex.create_order(BTC, "market", "buy", 0.002, params={"newClientOrderId": "dropped"})
    assert isinstance(ei.value, ccxt.RequestTimeout)  # -1007 → RequestTimeout (a NetworkError)
    o = await ex.fetch_order(None, BTC, params={"clientOrderId": "dropped"})
    assert o["status"] == "closed" and o["filled"] == 0.002
    o2 = await ex.create_order(BTC, "market", "buy", 0.002)  # n was 1
    assert o2["filled"] == 0.002


async def test_fault_partial_fill_and_reject(ex, sim) -> None:
    await admin(sim.url, "/_sim/faults", {"partial_fill_ratio": 0.5})
    o = await ex.create_order(BTC, "market", "buy", 0.005)
    assert o["filled"] == 0.002 and o["info"]["status"] == "EXPIRED"  # 0.0025 rounded down to the step
    await admin(sim.url, "/_sim/faults", {"partial_fill_ratio": None, "reject_orders": 2})
    for _ in range(2):
        with pytest.raises(ccxt.InvalidOrder):
            await ex.create_order(BTC, "market", "buy", 0.002)
    assert (await ex.create_order(BTC, "market", "buy", 0.002))["filled"] == 0.002


async def test_fault_latency_and_client_gone(ex, sim) -> None:
    await admin(sim.url, "/_sim/faults", {"latency_ms": 300})
    t0 = time.monotonic()
    await ex.fetch_time()
    assert time.monotonic() - t0 >= 0.3
    ex.timeout = 100  # the client gives up long before the venue answers
    with pytest.raises(ccxt.RequestTimeout):
        await ex.create_order(BTC, "market", "buy", 0.002, params={"newClientOrderId": "gone"})
    await asyncio.sleep(0.5)
    state = await admin(sim.url, "/_sim/state")
    assert [o["status"] for o in state["orders"] if o["clientOrderId"] == "gone"] == ["FILLED"]


async def test_funding_settlement_exact(tmp_path) -> None:
    async with in_process_sim(tmp_path, "fa") as a, in_process_sim(tmp_path, "fb") as b:
        async with sim_client(a.url) as ca, sim_client(b.url) as cb:
            for h in (a, b):
                await admin(h.url, "/_sim/market", {"symbol": BTC, "price": "50000", "funding_rate": "0.0003"})
            await ca.create_order(BTC, "market", "buy", 0.1)
            await cb.create_order(BTC, "market", "sell", 0.1)
            ra = await ca.fetch_funding_rates([BTC])
            assert ra[BTC]["fundingRate"] == 0.0003 and ra[BTC]["markPrice"] == 50000
            await admin(a.url, "/_sim/settle", {})
            await admin(b.url, "/_sim/settle", {"symbol": BTC})
            la, lb = await ca.fetch_funding_history(BTC), await cb.fetch_funding_history(BTC)
            assert [x["amount"] for x in la] == [-1.5] and [x["amount"] for x in lb] == [1.5]
            sa = await admin(a.url, "/_sim/state")
            fee = [i for i in sa["income"] if i["incomeType"] == "FUNDING_FEE"]
            assert [D(x["income"]) for x in fee] == [D("-1.5")]
            hist = await ca.fapiPublicGetFundingRate({"symbol": "BTCUSDT"})
            assert hist and hist[-1]["fundingRate"] == "0.0003"


async def test_scheduled_settlement(tmp_path) -> None:
    async with in_process_sim(tmp_path, "fs", funding_interval=1) as h:
        async with sim_client(h.url) as c:
            await admin(h.url, "/_sim/market", {"symbol": ETH, "funding_rate": "0.001"})
            await c.create_order(ETH, "market", "sell", 0.5)
            r = (await c.fetch_funding_rates([ETH]))[ETH]
            assert r["fundingTimestamp"] % 1000 == 0
            await asyncio.sleep(2.2)
            got = await c.fetch_funding_history(ETH)
            assert len(got) >= 1 and all(x["amount"] > 0 for x in got)


def csv_rows(venue: str) -> dict[str, list[tuple[float, float]]]:
    import csv

    rows: dict[str, list[tuple[float, float]]] = {}
    with open(DATA) as f:
        for r in csv.DictReader(f):
            if r["venue"] == venue:
                rows.setdefault(r["symbol"], []).append((float(r["funding_rate"]), float(r["mark_price"] or 0)))
    return rows


async def test_replay_serves_csv(tmp_path) -> None:
    rows = csv_rows("binance")
    speed = 30 * 24 * 3600  # 30 days of data per wall second
    async with in_process_sim(tmp_path, "binance", replay=DATA, speed=speed) as h:
        async with sim_client(h.url) as c:
            await c.load_markets()
            assert set(c.symbols) == {BTC, ETH}
            await c.create_order(BTC, "market", "buy", 0.01)
            r = (await c.fetch_funding_rates())[BTC]
            assert (r["fundingRate"], r["markPrice"]) in rows[BTC]
            served_at = r["timestamp"]  # next funding = next row's data time mapped to wall time
            assert served_at < r["fundingTimestamp"] <= served_at + 8 * 3600 * 1000 / speed + 1
            assert (await c.fetch_funding_intervals())[BTC]["interval"] == "8h"
            await asyncio.sleep(0.4)
            r2 = (await c.fetch_funding_rates())[BTC]
            assert (r2["fundingRate"], r2["markPrice"]) in rows[BTC]
            got = await c.fetch_funding_history(BTC, limit=1000)
            assert len(got) >= 10
            expected = {float((-D("0.01") * D(str(p)) * D(str(rt))).quantize(D("1e-8"))) for rt, p in rows[BTC]}
            assert all(x["amount"] in expected for x in got)
