"""Unmodified ccxt hyperliquid against an in-process simulated venue speaking the Hyperliquid
dialect (POST /info, signed POST /exchange) over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D

import aiohttp
import ccxt.async_support as ccxt
import pytest

from config.settings import DEMO_HL_PRIVATE_KEY, DEMO_HL_WALLET
from tests.simproc import admin, in_process_sim

BTC = "BTC/USDC:USDC"
ETH = "ETH/USDC:USDC"
SOL = "SOL/USDC:USDC"
#: another well-known test key (no funds): its signatures recover to another address
OTHER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
CLOID_OPEN = "0x" + "0" * 31 + "1"
CLOID_CLOSE = "0x" + "0" * 31 + "2"


def hl_client(url: str, private_key: str = DEMO_HL_PRIVATE_KEY, wallet: str = DEMO_HL_WALLET) -> ccxt.hyperliquid:
    """An unmodified ccxt hyperliquid client whose API host is the simulator."""
    ex = ccxt.hyperliquid({"walletAddress": wallet, "privateKey": private_key, "enableRateLimit": False})
    ex.urls["api"] = {"public": url, "private": url}
    return ex


async def readme_snippet(url: str) -> dict:
    """README-style plain ccxt: load markets, read funding, open and close a hedge leg."""
    ex = ccxt.hyperliquid({
        "walletAddress": "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23",  # the demo wallet (no funds anywhere)
        "privateKey": "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",  # demo key
    })
    ex.urls["api"] = {"public": url, "private": url}  # the simulated venue (e.g. http://127.0.0.1:8704)
    try:
        await ex.load_markets()
        rate = await ex.fetch_funding_rate("BTC/USDC:USDC")  # hourly
        book = await ex.fetch_order_book("BTC/USDC:USDC")
        mid = (book["bids"][0][0] + book["asks"][0][0]) / 2
        # Hyperliquid has no market order: ccxt sends an IOC limit at mid ± 5% (it needs the price)
        opened = await ex.create_order("BTC/USDC:USDC", "market", "buy", 0.01, mid,
                                       {"clientOrderId": "0x" + "ab" * 16})
        closed = await ex.create_order("BTC/USDC:USDC", "market", "sell", 0.01, mid, {"reduceOnly": True})
        return {"rate": rate, "opened": opened, "closed": closed,
                "positions": await ex.fetch_positions(["BTC/USDC:USDC"])}
    finally:
        await ex.close()


@pytest.fixture
async def sim(tmp_path) -> AsyncIterator:
    async with in_process_sim(tmp_path, "sim-d", seed=11, dialect="hyperliquid", api_key=DEMO_HL_WALLET,
                              funding_interval=3600) as h:
        yield h


@pytest.fixture
async def ex(sim) -> AsyncIterator[ccxt.hyperliquid]:
    client = hl_client(sim.url)
    try:
        await client.load_markets()
        yield client
    finally:
        await client.close()


async def _mid(ex, symbol: str) -> float:
    book = await ex.fetch_order_book(symbol)
    return (book["bids"][0][0] + book["asks"][0][0]) / 2


async def test_markets_with_size_decimals(ex) -> None:
    assert set(ex.symbols) == {BTC, ETH, SOL}
    m = ex.market(BTC)
    assert m["swap"] and m["linear"] and m["settle"] == "USDC" and m["baseName"] == "BTC" and m["baseId"] == "0"
    assert m["precision"]["amount"] == 0.001 and m["limits"]["leverage"]["max"] == 125
    assert m["precision"]["price"] == 1  # 5 significant figures at ~65000
    assert ex.market(SOL)["precision"]["amount"] == 1 and ex.market(ETH)["baseId"] == "1"
    assert ex.market(ETH)["precision"]["price"] == 0.1


async def test_funding_rates_hourly_and_book(ex, sim) -> None:
    rates = await ex.fetch_funding_rates()
    assert set(rates) == {BTC, ETH, SOL}
    t = sim.sim.now_ms()
    for sym, r in rates.items():
        spec = sim.sim.market.by_unified[sym.replace("USDC", "USDT")]
        assert r["interval"] == "1h" and r["markPrice"] > 0 and r["indexPrice"] > 0
        assert abs(D(str(r["fundingRate"])) - sim.sim.market.rate(spec.id, t)) < D("1e-6")  # the venue's rate
    book = await ex.fetch_order_book(BTC)
    assert book["bids"][0][0] < book["asks"][0][0] and len(book["bids"]) == 20
    assert all(p == int(p) for p, _ in book["bids"] + book["asks"])  # valid prices: 5 sig. figures
    view = await admin(sim.url, "/_sim/market")
    assert {v["funding_interval_hours"] for v in view} == {1}


async def test_default_interval_is_hourly_and_option_wins(tmp_path) -> None:
    async with in_process_sim(tmp_path, "d1", dialect="hyperliquid", api_key=DEMO_HL_WALLET) as h:
        async with aiohttp.ClientSession() as s:
            async with s.post(h.url + "/info", json={"type": "meta"}) as r:
                assert r.status == 200
        assert h.sim.market.interval_ms == 3_600_000
    async with in_process_sim(tmp_path, "d2", dialect="hyperliquid", api_key=DEMO_HL_WALLET,
                              funding_interval=2) as h:
        async with aiohttp.ClientSession() as s:
            async with s.post(h.url + "/info", json={"type": "meta"}) as r:
                assert r.status == 200
        assert h.sim.market.interval_ms == 2000


async def test_balance_leverage_positions_open_close_fetch_trades(ex, sim) -> None:
    bal = await ex.fetch_balance()
    assert bal["USDC"]["total"] == 100000
    await ex.set_leverage(5, BTC)
    assert sim.sim.engine.get_leverage("BTCUSDT") == 5
    mid = await _mid(ex, BTC)
    o = await ex.create_order(BTC, "market", "buy", 0.01, mid, {"clientOrderId": CLOID_OPEN})
    assert o["filled"] == 0.01 and o["clientOrderId"] == CLOID_OPEN and o["average"] > 0  # {"filled": ...}
    pos = await ex.fetch_positions([BTC])
    assert len(pos) == 1 and pos[0]["side"] == "long" and pos[0]["contracts"] == 0.01
    assert pos[0]["leverage"] == 5 and pos[0]["marginMode"] == "cross"
    assert pos[0]["liquidationPrice"] is None  # 0.01 BTC on 100k cross: nothing to liquidate (null, as the venue)
    assert pos[0]["entryPrice"] == pytest.approx(mid, rel=1e-3)
    st = await admin(sim.url, "/_sim/state")
    assert st["dialect"] == "hyperliquid" and st["positions"][0]["symbol"] == BTC
    bal = await ex.fetch_balance()
    assert 0 < bal["USDC"]["used"] < 200
    c = await ex.create_order(BTC, "market", "sell", 0.01, mid, {"reduceOnly": True, "clientOrderId": CLOID_CLOSE})
    assert c["filled"] == 0.01
    assert await ex.fetch_positions([BTC]) == []
    by_id = await ex.fetch_order(o["id"], BTC)
    by_cloid = await ex.fetch_order(None, BTC, {"clientOrderId": CLOID_CLOSE})
    assert by_id["status"] == "closed" and by_id["side"] == "buy" and by_id["amount"] == 0.01
    assert by_cloid["id"] == c["id"] and by_cloid["reduceOnly"] is True and by_cloid["clientOrderId"] == CLOID_CLOSE
    trades = await ex.fetch_my_trades(BTC)
    assert {t["order"] for t in trades} == {o["id"], c["id"]} and all(t["fee"]["currency"] == "USDC" for t in trades)
    assert [t["info"]["dir"] for t in sorted(trades, key=lambda t: int(t["id"]))][:1] == ["Open Long"]
    since = await ex.fetch_my_trades(BTC, since=sim.sim.now_ms() - 60_000)
    assert len(since) == len(trades)


async def test_resting_limit_cancel_by_id_and_cloid(ex, sim) -> None:
    mid = await _mid(ex, ETH)
    low = float(int(mid * 0.9))
    a = await ex.create_order(ETH, "limit", "buy", 0.1, low)
    b = await ex.create_order(ETH, "limit", "buy", 0.1, low, {"clientOrderId": "0x" + "cd" * 16})
    assert a["status"] is None and a["id"]  # resting: {"resting": {"oid": ...}}
    assert {x["id"] for x in await ex.fetch_open_orders(ETH)} == {a["id"], b["id"]}
    assert (await ex.fetch_order(b["id"], ETH))["status"] == "open"
    res = await ex.cancel_order(a["id"], ETH)
    assert res["info"] == "success"
    await ex.cancel_order(None, ETH, {"clientOrderId": "0x" + "cd" * 16})
    assert (await ex.fetch_order(a["id"], ETH))["status"] == "canceled"
    assert (await ex.fetch_order(None, ETH, {"clientOrderId": "0x" + "cd" * 16}))["status"] == "canceled"
    assert await ex.fetch_open_orders(ETH) == []
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order(a["id"], ETH)
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order("12345", ETH)


async def test_funding_history_after_settlement(ex, sim) -> None:
    mid = await _mid(ex, SOL)
    await ex.create_order(SOL, "market", "sell", 100, mid)
    await admin(sim.url, "/_sim/market", {"symbol": "SOL/USDT:USDT", "funding_rate": "0.0001"})
    t0 = sim.sim.now_ms()
    await admin(sim.url, "/_sim/settle", {"symbol": "SOL/USDT:USDT"})
    hist = await ex.fetch_funding_history(SOL, since=t0 - 1000)
    assert len(hist) == 1 and hist[0]["symbol"] == SOL and hist[0]["code"] == "USDC"
    assert hist[0]["amount"] > 0 and hist[0]["rate"] == 0.0001  # the short receives
    assert D(hist[0]["info"]["delta"]["szi"]) == -100
    pos = await ex.fetch_positions([SOL])
    assert D(pos[0]["info"]["position"]["cumFunding"]["allTime"]) < 0  # received


async def test_errors_map_to_ccxt_classes(ex, sim) -> None:
    mid = await _mid(ex, BTC)
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order(BTC, "market", "buy", 100, mid)
    with pytest.raises(ccxt.InvalidOrder, match="Reduce only order would increase position"):
        await ex.create_order(BTC, "market", "sell", 0.01, mid, {"reduceOnly": True})
    # a price with 6 significant figures: ccxt rounds prices itself, so sign the raw action
    req = ex.create_orders_request([{"symbol": BTC, "type": "limit", "side": "buy", "amount": 0.01,
                                     "price": 60000}])
    req["action"]["orders"][0]["p"] = "60000.5"
    req["signature"] = ex.sign_l1_action(req["action"], req["nonce"])
    with pytest.raises(ccxt.InvalidOrder, match="Price must be divisible by tick size"):
        await ex.privatePostExchange(req)
    with pytest.raises(ccxt.InvalidOrder, match="minimum value of \\$10"):
        await ex.create_order(ETH, "limit", "buy", 0.001, float(int(await _mid(ex, ETH) * 0.95)))


async def test_signature_by_another_key_is_refused(sim) -> None:
    ex = hl_client(sim.url, private_key=OTHER_KEY)  # claims the demo wallet, signs with another key
    try:
        await ex.load_markets()
        mid = await _mid(ex, BTC)
        with pytest.raises(ccxt.InvalidOrder, match="User or API Wallet 0x[0-9a-f]{40} does not exist"):
            await ex.create_order(BTC, "market", "buy", 0.01, mid)
        with pytest.raises(ccxt.InvalidOrder, match="does not exist"):
            await ex.set_leverage(3, BTC)
        assert sim.sim.engine.trades == [] and sim.sim.engine.get_leverage("BTCUSDT") == 20
    finally:
        await ex.close()


async def test_nonce_window_and_replay(ex, sim) -> None:
    action = {"type": "updateLeverage", "asset": 0, "isCross": True, "leverage": 7}
    nonce = sim.sim.now_ms() - 3 * 86_400_000
    body = {"action": action, "nonce": nonce, "signature": ex.sign_l1_action(action, nonce)}
    with pytest.raises(ccxt.ExchangeError, match="Invalid nonce"):
        await ex.privatePostExchange(body)
    nonce = sim.sim.now_ms()
    body = {"action": action, "nonce": nonce, "signature": ex.sign_l1_action(action, nonce)}
    assert (await ex.privatePostExchange(body))["status"] == "ok"
    with pytest.raises(ccxt.ExchangeError, match="duplicate nonce"):
        await ex.privatePostExchange(body)


async def test_dropped_response_executes_and_cloid_finds_it(ex, sim) -> None:
    mid = await _mid(ex, BTC)
    await admin(sim.url, "/_sim/faults", {"drop_responses": 1})
    cloid = "0x" + "ee" * 16
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.create_order(BTC, "market", "buy", 0.01, mid, {"clientOrderId": cloid})
    o = await ex.fetch_order(None, BTC, {"clientOrderId": cloid})
    assert o["status"] == "closed" and o["filled"] == 0.01
    assert (await ex.fetch_positions([BTC]))[0]["contracts"] == 0.01


async def test_partial_fill_and_reject_faults(ex, sim) -> None:
    mid = await _mid(ex, BTC)
    await admin(sim.url, "/_sim/faults", {"partial_fill_ratio": 0.5})
    o = await ex.create_order(BTC, "market", "buy", 0.02, mid, {"clientOrderId": "0x" + "12" * 16})
    assert o["filled"] == 0.01
    got = await ex.fetch_order(o["id"], BTC)
    assert got["amount"] == 0.02 and got["filled"] == 0.01 and got["status"] == "canceled"
    await admin(sim.url, "/_sim/faults", {"partial_fill_ratio": None, "reject_orders": 1})
    with pytest.raises(ccxt.ExchangeError, match="simulated fault"):
        await ex.create_order(BTC, "market", "buy", 0.01, mid)


async def test_readme_snippet(sim) -> None:
    out = await readme_snippet(sim.url)
    assert out["rate"]["interval"] == "1h"
    assert out["opened"]["filled"] == 0.01 and out["closed"]["filled"] == 0.01
    assert out["positions"] == []
    await asyncio.sleep(0)


async def test_symbol_status_and_late_execution_faults(ex, sim) -> None:
    mid = await _mid(ex, BTC)
    await admin(sim.url, "/_sim/faults", {"execute_late_ms": 200})
    o = await ex.create_order(BTC, "market", "buy", 0.01, mid, {"clientOrderId": "0x" + "34" * 16})
    assert o["id"] and o["filled"] is None  # accepted now ({"resting": ...}), matched later
    assert (await ex.fetch_order(o["id"], BTC))["status"] == "open"
    await asyncio.sleep(0.4)
    assert (await ex.fetch_order(o["id"], BTC))["status"] == "closed"
    await admin(sim.url, "/_sim/faults", {"execute_late_ms": 0, "symbol_status": {"BTC/USDT:USDT": "BREAK"}})
    with pytest.raises(ccxt.ExchangeError, match="Trading is halted"):
        await ex.create_order(BTC, "market", "buy", 0.01, mid)
    c = await ex.create_order(BTC, "market", "sell", 0.01, mid, {"reduceOnly": True})
    assert c["filled"] == 0.01
