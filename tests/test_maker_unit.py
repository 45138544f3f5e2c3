"""Issue 15's maker unit (``activities/maker_unit.py``) against two real simulators (unmodified ccxt
over real HTTP): the passive leg (sim-a) quotes post-only, the active leg (sim-b) hedges by taker.
The maker fill is hedged at once (a maker fill, at the maker fee); a quote that never fills falls
back to taker within the window; a fill below the minimum the active leg can match trips the cap;
an active venue that goes down gets the passive fill flattened; a retried attempt sends no id twice;
a reduce-only unit closes what a unit opened.

Prices are pinned (``POST /_sim/market``): BTC at 50000 shows bid 49995 / ask 50005; a pin at 49980
(ask 49985) crosses a BUY quote resting at 49995, which fills as a maker at its own price.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D

import aiohttp
import pytest

from activities.maker_unit import maker_unit
from domain.execution import maker_ids
from messages.execution import MakerUnitRequest
from tests.simproc import in_process_sim
from tests.test_gateway import Admin, venue
from venues.models import Side
from venues.pool import GatewayPool

SYMBOL = "BTC/USDT:USDT"
QTY = D("0.01")
SLOW_TICK = 600_000  # only the pins tick the price path: fills happen exactly when a test moves it


@pytest.fixture
async def pair(tmp_path) -> AsyncIterator[tuple[GatewayPool, Admin, Admin]]:
    async with in_process_sim(tmp_path, name="sim-a", tick_ms=SLOW_TICK) as a, \
            in_process_sim(tmp_path, name="sim-b", tick_ms=SLOW_TICK) as b, aiohttp.ClientSession() as http:
        pool = GatewayPool([venue(a.url, name="sim-a"), venue(b.url, name="sim-b", timeout_ms=800)])
        fa, fb = Admin(a.url, http), Admin(b.url, http)
        for f in (fa, fb):
            await f.market(symbol=SYMBOL, price="50000")
        await pool.warm()  # markets loaded: a fault hits the orders themselves
        yield pool, fa, fb
        await pool.close()


def request(trade: str, *, closing: bool = False, requotes: int = 3, window_s: float = 3.0,
            cap_usd: str = "100000", cap_s: float = 5.0, min_qty: str = "0.001") -> MakerUnitRequest:
    """Long on sim-a (passive, quoting post-only), short on sim-b (active, hedging by taker)."""
    ids = maker_ids(trade, "long", 0, requotes, closing=closing)
    return MakerUnitRequest(
        symbol=SYMBOL, qty=QTY, step=D("0.001"), min_qty=D(min_qty), reduce_only=closing,
        passive_venue="sim-a", passive_side=Side.SELL if closing else Side.BUY,
        active_venue="sim-b", active_side=Side.BUY if closing else Side.SELL,
        quote_ids=ids.quotes, passive_taker_id=ids.passive_taker, hedge_ids=ids.hedges, flatten_ids=ids.flattens,
        window_s=window_s, cap_usd=D(cap_usd), cap_s=cap_s, ref_price=D("50000"))


async def held(pool: GatewayPool, name: str) -> D:
    return sum((p.qty for p in await pool.get(name).positions([SYMBOL])), D(0))


async def resting(pool: GatewayPool, name: str = "sim-a", timeout: float = 3.0) -> None:
    """Wait until the unit's quote rests on ``name``."""
    t = time.monotonic()
    while not await pool.get(name).open_orders(SYMBOL):
        assert time.monotonic() - t < timeout, "no quote rested"
        await asyncio.sleep(0.05)


async def once_each(admin: Admin) -> None:
    """Every client id the venue executed, at most once."""
    cids = [o["clientOrderId"] for o in (await admin.state())["orders"]]
    assert len(cids) == len(set(cids)), cids


async def test_the_maker_leg_fills_and_the_hedge_follows_then_a_reduce_only_unit_closes_it(pair) -> None:
    pool, fa, fb = pair
    req = request("mu-fill")
    unit = asyncio.create_task(maker_unit(pool, req, attempt=1))
    await resting(pool)
    await fa.market(symbol=SYMBOL, price="49980")  # crosses the bid 49995: the quote fills as a maker
    out = await asyncio.wait_for(unit, 5)
    assert out.maker_qty == QTY and not out.fell_back and not out.cap_fired and out.active_failed is None
    assert [o.filled_qty for o in out.passive] == [QTY] and out.passive[0].avg_price == D("49995")
    assert sum(o.filled_qty for o in out.active) == QTY
    assert await held(pool, "sim-a") == QTY and await held(pool, "sim-b") == -QTY
    (fill,) = await pool.get("sim-a").fills(SYMBOL, 0)
    assert fill.maker is True and fill.fee == QTY * D("49995") * D("0.0002")  # the maker fee, not 0.0005
    (hedge,) = await pool.get("sim-b").fills(SYMBOL, 0)
    assert hedge.maker is False and fill.fee < hedge.fee
    assert out.passive[0].fee == fill.fee  # booked at the maker fee (Binance's answer carries none)
    assert 0 < out.unhedged_max_s < 1.0 and out.unhedged_max_usd > 0
    assert set(out.sent_ids) == {req.quote_ids[0], req.hedge_ids[0]}

    close = request("mu-fill", closing=True)  # the reduce-only unit: off both legs
    await fa.market(symbol=SYMBOL, price="50000")
    unit = asyncio.create_task(maker_unit(pool, close, attempt=1))
    await resting(pool)
    await fa.market(symbol=SYMBOL, price="50020")  # bid 50015 crosses the ask quote 50005
    out = await asyncio.wait_for(unit, 5)
    assert out.maker_qty == QTY and all(o.reduce_only for o in out.passive + out.active)
    assert await held(pool, "sim-a") == 0 and await held(pool, "sim-b") == 0
    await once_each(fa)
    await once_each(fb)


async def test_a_quote_that_never_fills_goes_taker_within_the_window(pair) -> None:
    pool, fa, _ = pair
    req = request("mu-away", window_s=1.5, requotes=2)
    t0 = time.monotonic()
    unit = asyncio.create_task(maker_unit(pool, req, attempt=1))
    await resting(pool)
    await fa.market(symbol=SYMBOL, price="50100")  # the price runs away from the bid: re-quoted higher
    out = await asyncio.wait_for(unit, 5)
    assert time.monotonic() - t0 < 1.5 + 1.0
    assert out.fell_back and out.maker_qty == 0 and not out.cap_fired
    quotes = [o for o in out.passive if o.client_order_id in req.quote_ids]
    assert len(quotes) >= 2 and all(o.status == "canceled" and o.filled_qty == 0 for o in quotes)
    taker = [o for o in out.passive if o.client_order_id == req.passive_taker_id]
    assert taker and taker[0].filled_qty == QTY
    assert await held(pool, "sim-a") == QTY and await held(pool, "sim-b") == -QTY
    assert not await pool.get("sim-a").open_orders(SYMBOL)


async def test_a_fill_the_active_leg_cannot_match_trips_the_cap(pair) -> None:
    """A thin book fills 0.002 of the quote, below the 0.005 the active venue trades: it waits
    unhedged while the price runs away, until cap_s: the passive rest by taker, the match whole."""
    pool, fa, fb = pair
    await fa.market(symbol=SYMBOL, price="50000", book_level_notional="100")  # 0.002 BTC a level
    await fb.market(symbol=SYMBOL, min_qty="0.005")
    req = request("mu-cap", cap_s=0.6, min_qty="0.005", window_s=5)
    unit = asyncio.create_task(maker_unit(pool, req, attempt=1))
    await resting(pool)
    await fa.market(symbol=SYMBOL, price="49990")  # ask 49995 reaches the bid: one level, 0.002
    t_fill = time.monotonic()
    await fa.market(symbol=SYMBOL, price="50100")  # and away
    out = await asyncio.wait_for(unit, 5)
    took = time.monotonic() - t_fill
    assert out.cap_fired and not out.fell_back and out.maker_qty == D("0.002")
    assert 0.6 <= out.unhedged_max_s < 1.2 and took < 2.0, (out.unhedged_max_s, took)
    assert await held(pool, "sim-a") == QTY and await held(pool, "sim-b") == -QTY
    assert [o.filled_qty for o in out.active] == [QTY]  # the whole match in one hedge


async def test_the_notional_cap_fires_at_once(pair) -> None:
    pool, fa, fb = pair
    await fa.market(symbol=SYMBOL, price="50000", book_level_notional="100")
    await fb.market(symbol=SYMBOL, min_qty="0.005")
    req = request("mu-capusd", cap_usd="50", cap_s=5, min_qty="0.005", window_s=5)  # 0.002 x 49995 = 100 USD
    unit = asyncio.create_task(maker_unit(pool, req, attempt=1))
    await resting(pool)
    await fa.market(symbol=SYMBOL, price="49990")
    out = await asyncio.wait_for(unit, 5)
    assert out.cap_fired and out.unhedged_max_s < 0.6 and out.unhedged_max_usd >= D("99")
    assert await held(pool, "sim-a") == QTY and await held(pool, "sim-b") == -QTY


async def test_the_active_venue_down_mid_unit_gets_the_passive_fill_flattened(pair) -> None:
    pool, fa, fb = pair
    req = request("mu-down")
    unit = asyncio.create_task(maker_unit(pool, req, attempt=1))
    await resting(pool)
    await fb.faults(outage=True)
    await fa.market(symbol=SYMBOL, price="49980")
    out = await asyncio.wait_for(unit, 8)
    await fb.faults()
    assert out.active_failed and out.maker_qty == QTY and not any(o.filled_qty for o in out.active)
    flat = [o for o in out.passive if o.client_order_id in req.flatten_ids]
    assert flat and flat[0].filled_qty == QTY and flat[0].reduce_only and flat[0].side == Side.SELL
    assert req.hedge_ids[0] in out.sent_ids  # possibly sent: reported
    assert req.hedge_ids[1] not in out.sent_ids  # no second hedge beside one that may still land
    assert out.unhedged_max_s < 3.0
    assert await held(pool, "sim-a") == 0 and await held(pool, "sim-b") == 0
    await once_each(fa)


async def test_a_retried_attempt_sends_nothing_twice(pair) -> None:
    """The worker died after the quote filled and before its hedge answered: the retry finds the
    quote, skips the hedge id that may have been in flight and hedges under the next one; run
    again, it finds everything and sends nothing."""
    pool, fa, fb = pair
    req = request("mu-retry")
    await pool.get("sim-a").place_limit_order(SYMBOL, Side.BUY, QTY, D("49995"), req.quote_ids[0], post_only=True)
    await fa.market(symbol=SYMBOL, price="49980")
    out = await maker_unit(pool, req, attempt=2)
    assert out.maker_qty == QTY and [o.client_order_id for o in out.active] == [req.hedge_ids[1]]
    assert req.hedge_ids[0] in out.sent_ids and req.quote_ids[1] in out.sent_ids  # skipped: possibly sent
    assert await held(pool, "sim-a") == QTY and await held(pool, "sim-b") == -QTY
    before = [len((await f.state())["orders"]) for f in (fa, fb)]
    again = await maker_unit(pool, req, attempt=3)
    assert [len((await f.state())["orders"]) for f in (fa, fb)] == before
    assert again.maker_qty == QTY and sum(o.filled_qty for o in again.active) == QTY
    assert await held(pool, "sim-a") == QTY and await held(pool, "sim-b") == -QTY
    await once_each(fa)
    await once_each(fb)


async def test_a_retried_attempt_with_the_active_venue_down_flattens_the_passive_fill_at_once(pair) -> None:
    """The worker died after the quote filled; the retry finds the active venue down. It must not
    wait for that venue (each retry raising again left a chaos trade's fill naked for a whole
    75 s partition): the passive fill is flattened on the venue that answers, the hedges reported as
    possibly sent (the workflow looks them up), active_failed says why."""
    pool, fa, fb = pair
    req = request("mu-retry-down")
    await pool.get("sim-a").place_limit_order(SYMBOL, Side.BUY, QTY, D("49995"), req.quote_ids[0], post_only=True)
    await fa.market(symbol=SYMBOL, price="49980")
    await fb.faults(outage=True)
    try:
        t0 = time.monotonic()
        out = await asyncio.wait_for(maker_unit(pool, req, attempt=2), 15)
        assert time.monotonic() - t0 < 10
    finally:
        await fb.faults()
    assert out.active_failed and "retried" in out.active_failed
    assert await held(pool, "sim-a") == 0 and await held(pool, "sim-b") == 0
    assert all(h in out.sent_ids for h in req.hedge_ids)
    await once_each(fa)


async def test_a_quote_on_a_venue_gone_dark_is_cancelled_by_the_venue_before_it_can_fill_unseen(pair) -> None:
    """The passive venue goes dark (a partition) while the quote rests, and the price later runs
    through the quote. Before the dead-man's switch, the quote filled there unseen and the active
    leg stayed unhedged for the whole partition (51.6 s in a chaos run). Now the refreshes stop with
    the reads, the venue cancels the quote about DEAD_MAN_MS later, and nothing fills unseen; once
    the venue answers, the retried attempt finds the quote cancelled and the rest goes taker."""
    from activities.maker_unit import DEAD_MAN_MS, DEAD_MAN_REFRESH_S
    from venues.errors import VenueError

    pool, fa, fb = pair
    req = request("mu-dark", window_s=2.5)
    unit = asyncio.create_task(maker_unit(pool, req, attempt=1))
    await resting(pool)
    await asyncio.sleep(0.4)  # a few reads: the switch armed and refreshed
    await fa.faults(outage=True)
    try:
        await asyncio.sleep(DEAD_MAN_MS / 1000 + DEAD_MAN_REFRESH_S + 0.3)
        await fa.market(symbol=SYMBOL, price="49980")  # through the bid: a resting quote would fill now
        state = await fa.state()
        assert sum(D(p["positionAmt"]) for p in state["positions"]) == 0, "the quote filled unseen"
        assert [o["status"] for o in state["orders"]] == ["CANCELED"]  # by the venue itself
        with pytest.raises(VenueError):  # the unit cannot read or cancel its quote: it raises
            await asyncio.wait_for(unit, 8)
    finally:
        await fa.faults()
    await fa.market(symbol=SYMBOL, price="50000")
    out = await asyncio.wait_for(maker_unit(pool, req, attempt=2), 8)  # the retry, the venue back
    assert out.maker_qty == 0 and out.fell_back
    assert await held(pool, "sim-a") == QTY and await held(pool, "sim-b") == -QTY
    await once_each(fa)
    await once_each(fb)


async def test_a_hedge_on_a_venue_executing_late_is_cancelled_not_doubled(pair) -> None:
    """The active venue accepts market orders and executes them 2.5 s late. The hedge gets no
    final answer within HEDGE_TIMEOUT_S: before, a second hedge went out under the next id and the
    passive fill was flattened, then both hedges executed (a chaos trade: twice the fill short,
    naked 3 s). Now the slow hedge is cancelled before it executes and the passive fill is
    flattened: nothing lands late, both venues stay flat."""
    pool, fa, fb = pair
    await fb.faults(execute_late_ms=2500)
    req = request("mu-late")
    unit = asyncio.create_task(maker_unit(pool, req, attempt=1))
    await resting(pool)
    await fa.market(symbol=SYMBOL, price="49980")
    out = await asyncio.wait_for(unit, 8)
    await asyncio.sleep(2.7)  # anything accepted has executed by now
    await fb.faults()
    assert out.active_failed and out.maker_qty == QTY
    assert await held(pool, "sim-b") == 0, "a late hedge executed"
    assert await held(pool, "sim-a") == 0
    assert out.unhedged_max_s < 2.0
    assert [o.status for o in out.active] == ["canceled"] and out.active[0].filled_qty == 0
    await once_each(fa)
    await once_each(fb)


async def test_a_hedge_answered_5xx_and_not_at_the_venue_is_sent_again_at_once(pair) -> None:
    """The active venue answers the hedge 502 without executing it. The gateway then looks the id
    up until its validity window has passed (6 s here) before it trusts "not found". The unit does
    not wait for that. The cancel finds no such order, so the hedge goes once more at once under the
    next id. (A chaos trade waited for the window and was naked 6.6 s.)"""
    pool, fa, fb = pair
    req = request("mu-5xx")
    unit = asyncio.create_task(maker_unit(pool, req, attempt=1))
    await resting(pool)
    await fb.faults(error_rate=1.0)  # every request to the active venue: 502, nothing executed
    await fa.market(symbol=SYMBOL, price="49980")
    await asyncio.sleep(0.35)
    await fb.faults()
    out = await asyncio.wait_for(unit, 8)
    assert out.active_failed is None and out.maker_qty == QTY
    assert [o.client_order_id for o in out.active if o.filled_qty] == [req.hedge_ids[1]]
    assert await held(pool, "sim-a") == QTY and await held(pool, "sim-b") == -QTY
    assert out.unhedged_max_s < 2.0
    await once_each(fa)
    await once_each(fb)


async def test_a_hedge_rest_below_the_active_minimum_comes_off_the_passive_leg(pair) -> None:
    """The hedge fills 90 % and its 0.001 rest is below the active venue's minimum (0.005), so no
    hedge can match it. Before, the unit ended with the passive leg 0.001 ahead (a chaos trade was
    naked 5.6 s until its close). Now that rest comes off the passive leg, reduce-only."""
    pool, fa, fb = pair
    await fb.market(symbol=SYMBOL, min_qty="0.005")
    await fb.faults(partial_fill_ratio=0.9)
    req = request("mu-rest")
    unit = asyncio.create_task(maker_unit(pool, req, attempt=1))
    await resting(pool)
    await fa.market(symbol=SYMBOL, price="49980")
    out = await asyncio.wait_for(unit, 8)
    await fb.faults()
    assert out.active_failed is None
    assert await held(pool, "sim-a") == -await held(pool, "sim-b") == D("0.009")
    assert any(o.client_order_id in req.flatten_ids and o.filled_qty == D("0.001") for o in out.passive)
    await once_each(fa)
    await once_each(fb)


async def test_a_closing_unit_waits_for_a_hedge_the_venue_executes_late(pair) -> None:
    """A closing (reduce-only) unit whose active venue executes 2.5 s late: its hedge is not
    cancelled (two reduce-only orders cannot flip a leg; a cancelled one left the leg to the close
    loop, itself late: a chaos close was naked 3.2 s). It executes, and both legs end closed."""
    pool, fa, fb = pair
    await pool.get("sim-a").place_market_order(SYMBOL, Side.BUY, QTY, "muclosea0", ref_price=D("50000"))
    await pool.get("sim-b").place_market_order(SYMBOL, Side.SELL, QTY, "muclosebb0", ref_price=D("50000"))
    await fb.faults(execute_late_ms=2500)
    req = request("mu-late-close", closing=True)
    unit = asyncio.create_task(maker_unit(pool, req, attempt=1))
    await resting(pool)
    await fa.market(symbol=SYMBOL, price="50020")  # bid 50015 crosses the ask quote 50005
    out = await asyncio.wait_for(unit, 10)
    await fb.faults()
    assert out.active_failed is None and out.maker_qty == QTY
    assert await held(pool, "sim-a") == 0 and await held(pool, "sim-b") == 0
    await once_each(fa)
    await once_each(fb)
