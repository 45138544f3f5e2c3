"""lifecycle-v9: an opening of unknown outcome chased by ``place_orders`` is watched (``activities/
lone_leg.py`` ``_watch``), against two real simulators (unmodified ccxt over real HTTP). sim-b drops
the answer to the short's opening and executes it 1.5 s late, so the order is invisible until then:
the reduce-only chase behind it is refused (nothing held yet) and, before v9, the late short stayed
naked until the close loop's next read and close (3.5 s in a chaos run at load). Now the activity
looks the opening up every 0.1 s and closes what it executed as soon as it sees it (reduce-only, id
``b1r1``)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp
from temporalio.testing import ActivityEnvironment

from activities.trade import TradeActivities
from domain.ids import client_order_id
from messages.trade import PlaceOrderRequest
from tests.simproc import in_process_sim
from tests.test_gateway import Admin, venue
from venues.models import Side
from venues.pool import GatewayPool
from workflows.lone_leg import chase_watch, opening_v9

SYMBOL = "BTC/USDT:USDT"
QTY = Decimal("0.01")


async def held(pool: GatewayPool, name: str) -> Decimal:
    return sum((p.qty for p in await pool.get(name).positions([SYMBOL])), Decimal(0))


async def test_an_opening_that_executes_late_after_its_chase_is_closed_in_the_same_step(tmp_path) -> None:
    async with in_process_sim(tmp_path, name="sim-a") as a, in_process_sim(tmp_path, name="sim-b") as b, \
            aiohttp.ClientSession() as http:
        pool = GatewayPool([venue(a.url, name="sim-a"), venue(b.url, name="sim-b", timeout_ms=800)])
        try:
            await pool.get("sim-a").markets()
            await pool.get("sim-b").markets()
            fb = Admin(b.url, http)
            await fb.faults(execute_late_ms=1500, drop_responses=1)
            trade = "chasewatchtest"
            reqs = [PlaceOrderRequest(venue=v, symbol=SYMBOL, side=side, qty=QTY, deadline_s=2.0,
                                      client_order_id=client_order_id(trade, leg, "o"),
                                      flatten_client_order_id=client_order_id(trade, leg, "lf"),
                                      chase_client_order_id=client_order_id(trade, leg, "b1"),
                                      **chase_watch(trade, leg))
                    for v, side, leg in (("sim-a", Side.BUY, "long"), ("sim-b", Side.SELL, "short"))]
            outs = await ActivityEnvironment().run(TradeActivities(None, pool).place_orders, reqs)  # type: ignore[arg-type]
            assert outs[0].flatten is not None and outs[0].flatten.filled_qty == QTY, outs
            assert outs[1].order is None and outs[1].chase_sent, outs[1]  # unknown, chased
            assert outs[1].chase_rest_sent == [client_order_id(trade, "short", "b1r1")], outs[1]
            # sim-b executes its close late too (every new order: 1.5 s): it was sent once the opening had
            # executed, and its venue holds nothing once that close has executed in its turn
            for _ in range(50):
                if await held(pool, "sim-b") == 0:
                    break
                await asyncio.sleep(0.1)
            await fb.faults()
            assert await held(pool, "sim-a") == 0
            assert await held(pool, "sim-b") == 0
        finally:
            await pool.close()


async def test_a_pair_filled_unequal_is_trimmed_in_the_same_step(tmp_path) -> None:
    """lifecycle-v9 (chaos seed 7: a worker killed between the fills and the workflow's trim left
    1.43 ≈ 499 USD naked 2.5 s): sim-a fills half of the long, so ``place_orders`` trims the short by
    the difference at once, reduce-only, under the trim id (``mo``): the pair leaves the activity
    equal."""
    async with in_process_sim(tmp_path, name="sim-a") as a, in_process_sim(tmp_path, name="sim-b") as b, \
            aiohttp.ClientSession() as http:
        pool = GatewayPool([venue(a.url, name="sim-a"), venue(b.url, name="sim-b")])
        try:
            fa = Admin(a.url, http)
            await fa.faults(partial_fill_ratio=0.5)
            qty, trade = Decimal("0.064"), "eventest"
            reqs = [PlaceOrderRequest(venue=v, symbol=SYMBOL, side=side, qty=qty, deadline_s=2.0,
                                      client_order_id=client_order_id(trade, leg, "o"),
                                      flatten_client_order_id=client_order_id(trade, leg, "lf"),
                                      chase_client_order_id=client_order_id(trade, leg, "b1"),
                                      **opening_v9(trade, leg))
                    for v, side, leg in (("sim-a", Side.BUY, "long"), ("sim-b", Side.SELL, "short"))]
            outs = await ActivityEnvironment().run(TradeActivities(None, pool).place_orders, reqs)  # type: ignore[arg-type]
            assert outs[0].order.filled_qty == Decimal("0.032") and outs[1].order.filled_qty == qty, outs
            assert outs[0].trim_sent == [] and outs[1].trim_sent[0] == client_order_id(trade, "short", "mo"), outs[1]
            assert sum(o.filled_qty for o in outs[1].trim) == Decimal("0.032"), outs[1].trim
            await fa.faults()
            assert await held(pool, "sim-a") == Decimal("0.032") and await held(pool, "sim-b") == Decimal("-0.032")
        finally:
            await pool.close()
