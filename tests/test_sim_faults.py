"""The simulator as an adversary: late execution, failing look-ups, symbol status changes,
filter and funding-interval changes, liquidation. Real HTTP, unmodified ccxt binanceusdm."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D

import ccxt.async_support as ccxt
import pytest

from tests.simproc import admin, in_process_sim, sim_client

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


@pytest.fixture
async def sim(tmp_path) -> AsyncIterator:
    async with in_process_sim(tmp_path, "sim-f", seed=3) as h:
        yield h


@pytest.fixture
async def ex(sim) -> AsyncIterator[ccxt.binanceusdm]:
    async with sim_client(sim.url, load_markets=True) as client:
        yield client


def _orders(state: dict, cid: str) -> list[dict]:
    return [o for o in state["orders"] if o["clientOrderId"] == cid]


async def test_execute_late_answers_new_then_fills(ex, sim) -> None:
    await admin(sim.url, "/_sim/faults", {"execute_late_ms": 600})
    o = await ex.create_order(BTC, "market", "buy", 0.002, params={"newClientOrderId": "late-1"})
    assert o["info"]["status"] == "NEW" and o["filled"] == 0
    seen = await ex.fetch_order(None, BTC, params={"clientOrderId": "late-1"})
    assert seen["status"] == "open" and seen["filled"] == 0 and seen["id"] == o["id"]
    assert not [p for p in await ex.fetch_positions([BTC]) if p["contracts"]]
    await asyncio.sleep(0.9)
    done = await ex.fetch_order(o["id"], BTC)
    assert done["status"] == "closed" and done["filled"] == 0.002
    [row] = _orders(await admin(sim.url, "/_sim/state"), "late-1")
    assert row["status"] == "FILLED" and row["arrived_ns"] > 0
    await admin(sim.url, "/_sim/faults", {})
    assert (await admin(sim.url, "/_sim/faults"))["execute_late_ms"] == 0


async def test_execute_late_validates_on_arrival(ex, sim) -> None:
    await admin(sim.url, "/_sim/faults", {"execute_late_ms": 600})
    with pytest.raises(ccxt.InvalidOrder) as ei:  # above MARKET_LOT_SIZE maxQty: refused now, not NEW then EXPIRED
        await ex.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "500",
                                       "newClientOrderId": "too-big"})
    assert "-1013" in str(ei.value)
    assert not _orders(await admin(sim.url, "/_sim/state"), "too-big")


async def test_execute_late_with_dropped_answer_is_invisible_until_processed(ex, sim) -> None:
    await admin(sim.url, "/_sim/faults", {"execute_late_ms": 800, "drop_responses": 1})
    with pytest.raises(ccxt.RequestTimeout):
        await ex.create_order(BTC, "market", "buy", 0.003, params={"newClientOrderId": "ghost"})
    with pytest.raises(ccxt.OrderNotFound):  # the client looks up before resending ...
        await ex.fetch_order(None, BTC, params={"clientOrderId": "ghost"})
    assert await ex.fetch_open_orders(BTC) == []
    assert not _orders(await admin(sim.url, "/_sim/state"), "ghost")
    await asyncio.sleep(1.0)  # ... and the order shows up after it concluded it does not exist
    o = await ex.fetch_order(None, BTC, params={"clientOrderId": "ghost"})
    assert o["status"] == "closed" and o["filled"] == 0.003
    assert [p["contracts"] for p in await ex.fetch_positions([BTC])] == [0.003]


async def test_execute_late_past_recv_window_is_discarded(ex, sim) -> None:
    await admin(sim.url, "/_sim/faults", {"execute_late_ms": 700, "drop_responses": 1})
    with pytest.raises(ccxt.RequestTimeout):
        await ex.create_order(BTC, "market", "buy", 0.002,
                              params={"newClientOrderId": "stale", "recvWindow": 300})
    await asyncio.sleep(1.0)
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order(None, BTC, params={"clientOrderId": "stale"})
    state = await admin(sim.url, "/_sim/state")
    assert not _orders(state, "stale") and not state["positions"]


async def test_lookup_errors_raise_retryable(ex, sim) -> None:
    o = await ex.create_order(BTC, "market", "buy", 0.002, params={"newClientOrderId": "look"})
    await admin(sim.url, "/_sim/faults", {"lookup_errors": 2})
    for call in (ex.fetch_order(o["id"], BTC), ex.fetch_open_orders(BTC)):
        with pytest.raises(ccxt.OperationFailed) as ei:
            await call
        assert not isinstance(ei.value, ccxt.OrderNotFound | ccxt.ExchangeError)  # retryable, not "gone"
        assert "-1001" in str(ei.value)
    assert (await ex.fetch_order(o["id"], BTC))["status"] == "closed"  # n was 2
    assert (await admin(sim.url, "/_sim/faults"))["lookup_errors"] == 0


async def test_symbol_status_refuses_opening_keeps_position(ex, sim) -> None:
    await ex.create_order(BTC, "market", "buy", 0.01)
    await admin(sim.url, "/_sim/faults", {"symbol_status": {BTC: "SETTLING"}})
    await ex.load_markets(reload=True)
    assert ex.market(BTC)["info"]["status"] == "SETTLING" and ex.market(BTC)["active"] is False
    assert ex.market(ETH)["info"]["status"] == "TRADING"
    with pytest.raises(ccxt.BadRequest) as ei:
        await ex.create_order(BTC, "market", "buy", 0.002)
    assert "-4140" in str(ei.value)
    [pos] = [p for p in await ex.fetch_positions([BTC]) if p["contracts"]]
    assert pos["contracts"] == 0.01
    r = await ex.create_order(BTC, "market", "sell", 0.004, params={"reduceOnly": True})
    assert r["filled"] == 0.004
    assert (await ex.create_order(ETH, "market", "buy", 0.01))["filled"] == 0.01
    await admin(sim.url, "/_sim/faults", {"symbol_status": {"BTCUSDT": "CLOSE"}})
    with pytest.raises(ccxt.OperationRejected) as ei:
        await ex.create_order(BTC, "market", "sell", 0.002, params={"reduceOnly": True})
    assert "-4141" in str(ei.value)
    assert {p["symbol"] for p in await ex.fetch_positions() if p["contracts"]} == {BTC, ETH}
    for bad in ({"symbol_status": {"NOPE/USDT:USDT": "CLOSE"}}, {"symbol_status": {BTC: "ASLEEP"}}):
        assert (await admin(sim.url, "/_sim/faults", bad, status=400))["field"] == "symbol_status"
    await admin(sim.url, "/_sim/faults", {})
    await ex.load_markets(reload=True)
    assert ex.market(BTC)["active"] is True


async def test_qty_step_change_refuses_old_step(ex, sim) -> None:
    view = await admin(sim.url, "/_sim/market", {"symbol": BTC, "qty_step": "0.01", "min_qty": "0.02"})
    assert view["qty_step"] == "0.01" and view["min_qty"] == "0.02"
    with pytest.raises(ccxt.BadRequest) as ei:  # ex still rounds to the old 0.001 step
        await ex.create_order(BTC, "market", "buy", 0.005)
    assert "-1111" in str(ei.value)
    with pytest.raises(ccxt.InvalidOrder) as ei:  # below min_qty: -1013, ccxt's broad "Filter failure: LOT_SIZE"
        await ex.create_order(BTC, "market", "buy", 0.01)
    assert "-1013" in str(ei.value)
    assert (await ex.create_order(BTC, "market", "buy", 0.03))["filled"] == 0.03
    await ex.load_markets(reload=True)
    m = ex.market(BTC)
    assert m["precision"]["amount"] == 0.01 and m["limits"]["amount"]["min"] == 0.02
    lots = {f["filterType"]: f for f in m["info"]["filters"]}
    assert lots["LOT_SIZE"]["stepSize"] == lots["MARKET_LOT_SIZE"]["stepSize"] == "0.01"
    assert (await admin(sim.url, "/_sim/market", {"symbol": BTC, "qty_step": 0}, status=400))["field"] == "qty_step"


async def test_funding_interval_change(ex, sim) -> None:
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "funding_interval_hours": 4})
    assert (await ex.fetch_funding_interval(BTC))["interval"] == "4h"
    assert (await ex.fetch_funding_interval(ETH))["interval"] == "8h"
    rate = await ex.fetch_funding_rate(BTC)
    assert rate["fundingTimestamp"] % (4 * 3600 * 1000) == 0
    # a short interval: the schedule follows it, only for that symbol
    await ex.create_order(BTC, "market", "buy", 0.01)
    await ex.create_order(ETH, "market", "buy", 0.01)
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "funding_interval_hours": 0.0005})  # 1.8 s
    fees: list = []
    for _ in range(60):
        await asyncio.sleep(0.1)
        fees = [i for i in (await admin(sim.url, "/_sim/state"))["income"] if i["incomeType"] == "FUNDING_FEE"]
        if fees:
            break
    assert fees and {i["symbol"] for i in fees} == {"BTCUSDT"} and fees[0]["time"] % 1800 == 0
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "funding_interval_hours": None})
    assert (await ex.fetch_funding_interval(BTC))["interval"] == "8h"


@contextlib.asynccontextmanager
async def near_liquidation(tmp_path, name: str, isolated: bool) -> AsyncIterator:
    """A 200 USDT sim with 0.1 BTC long at 50x (isolated or cross): (sim, client, position, order)."""
    async with in_process_sim(tmp_path, name, balance=D(200)) as h, sim_client(h.url, load_markets=True) as c:
        await admin(h.url, "/_sim/market", {"symbol": BTC, "price": "50000"})
        await c.set_leverage(50, BTC)
        if isolated:
            await c.set_margin_mode("isolated", BTC)
        o = await c.create_order(BTC, "market", "buy", 0.1)
        assert o["filled"] == 0.1
        [pos] = [p for p in await c.fetch_positions([BTC]) if p["contracts"]]
        yield h, c, pos, o


async def test_liquidation_isolated_and_cross(tmp_path) -> None:
    async with (near_liquidation(tmp_path, "liq-iso", True) as (hi, ci, pi, oi),
                near_liquidation(tmp_path, "liq-cross", False) as (hc, cc, pc, oc)):
        brackets = await cc.fapiPrivateGetLeverageBracket({"symbol": "BTCUSDT"})
        mmr = D(str(brackets[0]["brackets"][0]["maintMarginRatio"]))
        assert mmr == D("0.004")
        entry, qty = D(str(oi["average"])), D("0.1")
        iso_wallet = D(pi["info"]["isolatedWallet"])
        assert iso_wallet == (qty * entry / 50).quantize(D("0.00000001")) and pi["info"]["marginType"] == "isolated"
        lp_iso = (iso_wallet - qty * entry) / (qty * mmr - qty)  # Binance USD-M, isolated: TMM1 = UPNL1 = 0
        assert pi["liquidationPrice"] == pytest.approx(float(lp_iso), abs=0.1)
        wallet_c = D((await admin(hc.url, "/_sim/state"))["balances"]["USDT"]["wallet"])
        lp_cross = (wallet_c - qty * entry) / (qty * mmr - qty)
        assert pc["liquidationPrice"] == pytest.approx(float(lp_cross), abs=0.1)
        assert pc["liquidationPrice"] < pi["liquidationPrice"] < 50000  # cross has the whole wallet behind it

        for h, c, lp in ((hi, ci, pi["liquidationPrice"]), (hc, cc, pc["liquidationPrice"])):
            await admin(h.url, "/_sim/market", {"symbol": BTC, "price": str(round(lp + 50, 1))})
            assert [p["contracts"] for p in await c.fetch_positions([BTC]) if p["contracts"]] == [0.1]
            before = D((await admin(h.url, "/_sim/state"))["balances"]["USDT"]["wallet"])
            await admin(h.url, "/_sim/market", {"symbol": BTC, "price": str(round(lp - 100, 1))})
            assert not [p for p in await c.fetch_positions([BTC]) if p["contracts"]]
            state = await admin(h.url, "/_sim/state")
            [liq] = state["liquidations"]
            assert liq["clientOrderId"].startswith("autoclose-") and liq["side"] == "SELL"
            assert float(liq["price"]) == pytest.approx(lp, abs=0.1)
            assert any(i["incomeType"] == "INSURANCE_CLEAR" for i in state["income"])
            assert [o["status"] for o in state["orders"] if o["clientOrderId"] == liq["clientOrderId"]] == ["FILLED"]
            after = D(state["balances"]["USDT"]["wallet"])
            if h is hi:  # isolated: the position's margin is lost, the rest of the wallet stays
                assert after == pytest.approx(before - iso_wallet, abs=D("0.5"))
            else:  # cross: the whole wallet backed the position
                assert after < D(1)
            assert sum(D(i["income"]) for i in state["income"]) == pytest.approx(after - 200, abs=D("0.00001"))


async def test_liquidation_on_price_path_tick(tmp_path) -> None:
    async with near_liquidation(tmp_path, "liq-tick", False) as (h, c, pos, _):
        # move the mark behind the admin API's back: only the venue's own tick can see it
        h.sim.market.pinned_price["BTCUSDT"] = D(str(round(pos["liquidationPrice"] - 200, 1)))
        for _ in range(40):
            await asyncio.sleep(0.1)
            if (await admin(h.url, "/_sim/state"))["liquidations"]:
                break
        assert not [p for p in await c.fetch_positions([BTC]) if p["contracts"]]


def test_cli_balance_option() -> None:
    from venues.sim import build_parser, options_from_args

    opts = options_from_args(build_parser().parse_args(["--name", "x", "--port", "0", "--balance", "250"]))
    assert opts.balance == D(250) and opts.start_balance == D(250)
    assert options_from_args(build_parser().parse_args(["--name", "x", "--port", "0"])).start_balance == D(100000)


async def test_thin_book_and_price_band(ex, sim, tmp_path) -> None:
    """A thin book (POST /_sim/market book overrides) makes a normal-size market order walk past
    the PERCENT_PRICE band: refused whole (-4131, nothing stored); a LIMIT beyond the band is
    refused (-4016 / -4017); a LIMIT IOC at the edge fills what lies inside."""
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "price": "65000"})
    view = await admin(sim.url, "/_sim/market", {"symbol": BTC, "book_level_notional": 650, "book_level_step_bps": "100"})
    assert (view["book_level_notional"], view["book_level_step_bps"]) == ("650", "100")
    [row] = [r for r in await admin(sim.url, "/_sim/market") if r["symbol"] == BTC]
    assert row["book_level_notional"] == "650"
    [eth] = [r for r in await admin(sim.url, "/_sim/market") if r["symbol"] == ETH]
    assert (eth["book_level_notional"], eth["book_level_step_bps"]) == ("50000", "1")  # per symbol
    for bad in ({"book_level_notional": 0}, {"book_level_notional": "x"}, {"book_level_step_bps": -1},
                {"book_level_step_bps": True}):
        err = await admin(sim.url, "/_sim/market", {"symbol": BTC, **bad}, status=400)
        assert err["field"] == next(iter(bad)) and "positive number or null" in err["error"]
    book = await ex.fetch_order_book(BTC, 10)
    assert [a[1] for a in book["asks"][:6]] == [0.01] * 6
    assert book["asks"][5][0] == 68256.5 > 65000 * 1.05 >= book["asks"][4][0]  # 5.01 % out: the sixth level

    with pytest.raises(ccxt.ExchangeError) as ei:
        await ex.create_order(BTC, "market", "buy", 0.06, params={"newClientOrderId": "band-1"})
    assert "-4131" in str(ei.value) and "PERCENT_PRICE" in str(ei.value)
    state = await admin(sim.url, "/_sim/state")
    assert not _orders(state, "band-1") and not state["positions"]
    o = await ex.create_order(BTC, "market", "buy", 0.05, params={"newClientOrderId": "band-1"})  # id still free
    assert o["filled"] == 0.05

    with pytest.raises(ccxt.ExchangeError) as ei:
        await ex.create_order(BTC, "limit", "buy", 0.01, 68250.1)
    assert "-4016" in str(ei.value) and "Limit price can't be higher than 68250.0." in str(ei.value)
    with pytest.raises(ccxt.ExchangeError) as ei:
        await ex.create_order(BTC, "limit", "sell", 0.01, 61749.9, params={"reduceOnly": True})
    assert "-4017" in str(ei.value) and "Limit price can't be lower than 61750.0." in str(ei.value)
    assert (await ex.create_order(BTC, "market", "buy", 0.05))["filled"] == 0.05  # long 0.1 now
    ioc = await ex.create_order(BTC, "limit", "sell", 0.1, 61750.0,
                                params={"reduceOnly": True, "timeInForce": "IOC", "newClientOrderId": "edge"})
    done = await ex.fetch_order(ioc["id"], BTC)
    assert done["status"] == "expired" and done["filled"] == 0.05  # the five bid levels inside the band
    assert [p["contracts"] for p in await ex.fetch_positions([BTC]) if p["contracts"]] == [0.05]

    # refused at matching time (execute_late_ms): the visible order expires unfilled
    await admin(sim.url, "/_sim/faults", {"execute_late_ms": 300})
    late = await ex.create_order(BTC, "market", "sell", 0.06, params={"newClientOrderId": "band-late"})
    assert late["info"]["status"] == "NEW"
    await asyncio.sleep(0.6)
    [row] = _orders(await admin(sim.url, "/_sim/state"), "band-late")
    assert row["status"] == "EXPIRED" and row["executedQty"] == "0"
    await admin(sim.url, "/_sim/faults", {})

    # the override persists across a restart of the venue; null restores the venue's book
    state_file = str(tmp_path / "band.sqlite")
    async with in_process_sim(tmp_path, "sim-band", state=state_file) as h:
        await admin(h.url, "/_sim/market", {"symbol": BTC, "book_level_notional": "650", "book_level_step_bps": 100})
    async with in_process_sim(tmp_path, "sim-band", state=state_file) as h:
        [row] = [r for r in await admin(h.url, "/_sim/market") if r["symbol"] == BTC]
        assert (row["book_level_notional"], row["book_level_step_bps"]) == ("650", "100")
        view = await admin(h.url, "/_sim/market", {"symbol": BTC, "book_level_notional": None})
        assert (view["book_level_notional"], view["book_level_step_bps"]) == ("50000", "100")
    await admin(sim.url, "/_sim/market", {"symbol": BTC, "book_level_notional": None, "book_level_step_bps": None})
    assert (await ex.create_order(BTC, "market", "sell", 0.06))["filled"] == 0.06  # a thick book again


# --- clock_skew_ms: the venue's whole clock ---------------------------------------------------
HOUR = 3600 * 1000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def _income(url: str, kind: str, symbol: str | None = None) -> list[dict]:
    return [i for i in (await admin(url, "/_sim/state"))["income"]
            if i["incomeType"] == kind and (symbol is None or i["symbol"] == symbol)]


async def test_clock_skew_moves_every_venue_timestamp(tmp_path) -> None:
    """``clock_skew_ms`` = N: serverTime, new orders, trades, income, the position's update time,
    the mark's time and the funding schedule all run N ahead of our wall clock."""
    skew = 5 * 24 * HOUR + 123_456
    async with in_process_sim(tmp_path, "sim-clock", seed=3) as h, sim_client(h.url, load_markets=True) as c:
        await admin(h.url, "/_sim/faults", {"clock_skew_ms": skew})
        assert (await admin(h.url, "/_sim/faults"))["clock_skew_ms"] == skew
        c.options["timeDifference"] = -skew  # ccxt signs with local − timeDifference: the venue's time
        lo = _wall_ms() + skew
        server = await c.fetch_time()
        o = await c.create_order(BTC, "market", "buy", 0.01, params={"newClientOrderId": "skewed-1"})
        [trade] = await c.fetch_my_trades(BTC, params={"orderId": o["id"]})
        [pos] = [p for p in await c.fetch_positions([BTC]) if p["contracts"]]
        fr = await c.fetch_funding_rate(BTC)
        commission = await _income(h.url, "COMMISSION")
        hi = _wall_ms() + skew
        assert lo <= server <= hi
        assert lo <= o["timestamp"] <= hi and lo <= int(o["info"]["updateTime"]) <= hi
        assert lo <= trade["timestamp"] <= hi
        assert [lo <= i["time"] <= hi for i in commission] == [True]
        assert lo <= int(pos["info"]["updateTime"]) <= hi
        assert lo <= int(fr["info"]["time"]) <= hi
        nxt = int(fr["info"]["nextFundingTime"])
        assert hi < nxt <= hi + 8 * HOUR and nxt % (8 * HOUR) == 0  # the schedule of the venue's clock
        # the venue's own look-ups by time see the order where its clock put it
        assert [x["id"] for x in await c.fetch_orders(BTC, since=lo - 1000)] == [o["id"]]
        assert await c.fetch_orders(BTC, since=lo - skew - 60_000, params={"endTime": hi - skew + 60_000}) == []


async def test_clock_skew_timestamp_check(tmp_path) -> None:
    """A request signed with our wall clock: accepted while the skew stays inside the
    recvWindow ccxt sends (10 s; the skew counted once, not twice), refused -1021 beyond it, and
    when the venue is behind by more than the 1 s Binance tolerates ahead."""
    async with in_process_sim(tmp_path, "sim-rw", seed=3) as h, sim_client(h.url, load_markets=True) as c:
        rw = int(c.options["recvWindow"])
        for skew, ok in ((rw * 7 // 10, True), (-500, True), (rw + 1500, False), (-2500, False)):
            await admin(h.url, "/_sim/faults", {"clock_skew_ms": skew})
            if ok:
                await c.fetch_balance()
            else:
                with pytest.raises(ccxt.InvalidNonce, match="-1021"):
                    await c.fetch_balance()
        await admin(h.url, "/_sim/faults", {})
        await c.fetch_balance()


async def test_clock_jump_settles_every_missed_boundary(tmp_path) -> None:
    """The venue's clock jumps 3¾ intervals (1 h) with positions open: BTC (the venue's
    interval) settles at each of the 3 hour boundaries passed, ETH (its own 30 min interval) at
    each of its half hours passed; each at that boundary's own mark, in time order."""
    async with (in_process_sim(tmp_path, "sim-jump", seed=3, funding_interval=3600) as h,
                sim_client(h.url, load_markets=True) as c):
        await admin(h.url, "/_sim/market", {"symbol": ETH, "funding_interval_hours": 0.5})
        await c.create_order(BTC, "market", "buy", 0.01)
        await c.create_order(ETH, "market", "sell", 0.1)
        views = {r["symbol"]: r for r in await admin(h.url, "/_sim/market")}
        server = await c.fetch_time()
        b0 = server // HOUR * HOUR
        assert views[BTC]["next_funding_time"] == b0 + HOUR
        eth_next = views[ETH]["next_funding_time"]
        await admin(h.url, "/_sim/faults", {"clock_skew_ms": b0 + 3 * HOUR + 3 * HOUR // 4 - server})
        want_btc = [b0 + k * HOUR for k in (1, 2, 3)]
        want_eth = list(range(eth_next, b0 + 3 * HOUR + HOUR // 2 + 1, HOUR // 2))
        for _ in range(50):
            if len(await _income(h.url, "FUNDING_FEE")) >= len(want_btc) + len(want_eth):
                break
            await asyncio.sleep(0.1)
        fees = await _income(h.url, "FUNDING_FEE")
        assert [i["time"] for i in fees if i["symbol"] == "BTCUSDT"] == want_btc
        assert [i["time"] for i in fees if i["symbol"] == "ETHUSDT"] == want_eth and len(want_eth) in (6, 7)
        assert [i["time"] for i in fees] == sorted(i["time"] for i in fees)  # settled in time order
        c.options["timeDifference"] = -(b0 + 3 * HOUR + 3 * HOUR // 4 - server)
        for sym, qty, fee_rows in ((BTC, D("0.01"), [i for i in fees if i["symbol"] == "BTCUSDT"]),
                                   (ETH, D("-0.1"), [i for i in fees if i["symbol"] == "ETHUSDT"])):
            hist = {r["timestamp"]: r for r in await c.fetch_funding_rate_history(sym, since=b0, limit=100)}
            marks = set()
            for i in fee_rows:  # each settled with the mark and rate the venue published for that time
                r = hist[i["time"]]
                mark, rate = D(r["info"]["markPrice"]), D(r["info"]["fundingRate"])
                assert D(i["income"]) == (-qty * mark * rate).quantize(D("0.00000001"))
                marks.add(mark)
            assert len(marks) > 1, "each boundary at its own mark"


async def test_clock_jump_catch_up_is_capped(tmp_path) -> None:
    """A 1.8 s interval and a one-hour jump: 2000 boundaries passed, the latest 1000 settled."""
    from venues.sim.venue import MAX_CATCH_UP

    async with (in_process_sim(tmp_path, "sim-cap", seed=3) as h, sim_client(h.url, load_markets=True) as c):
        await c.create_order(BTC, "market", "buy", 0.01)
        await admin(h.url, "/_sim/market", {"symbol": BTC, "funding_interval_hours": 0.0005})
        await asyncio.sleep(0.2)
        before = len(await _income(h.url, "FUNDING_FEE"))
        await admin(h.url, "/_sim/faults", {"clock_skew_ms": HOUR})
        fees: list = []
        for _ in range(50):
            await asyncio.sleep(0.1)
            fees = await _income(h.url, "FUNDING_FEE")
            if len(fees) >= before + MAX_CATCH_UP:
                break
        times = [i["time"] for i in fees[before:]]
        assert len(times) in (MAX_CATCH_UP, MAX_CATCH_UP + 1)  # plus, perhaps, one the clock reached since
        assert all(b - a == 1800 for a, b in zip(times, times[1:], strict=False))
        assert times[-1] >= _wall_ms() + HOUR - 5000
