"""The opening pair (``TradeActivities.place_orders``) against two real simulators (unmodified ccxt
over real HTTP): once one leg has filled and the other has no answer, the lone leg's flatten goes
out within ``OPEN_COMPANION_GRACE_S`` plus the cancel, a window short enough that a worker killed
inside it (noticed only through the 0.9 s heartbeat, then retried) still leaves the leg naked under
the 2 s bound of issue 10."""

from __future__ import annotations

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

SYMBOL = "BTC/USDT:USDT"
QTY = Decimal("0.01")


async def test_a_lone_filled_leg_is_flattened_within_0_65_s_of_its_fill(tmp_path) -> None:
    async with in_process_sim(tmp_path, name="sim-a") as a, in_process_sim(tmp_path, name="sim-b") as b, \
            aiohttp.ClientSession() as http:
        pool = GatewayPool([venue(a.url, name="sim-a"), venue(b.url, name="sim-b", timeout_ms=1500)])
        try:
            await pool.get("sim-a").markets()
            await pool.get("sim-b").markets()
            fa, fb = Admin(a.url, http), Admin(b.url, http)
            await fb.faults(latency_ms=1200)  # sim-b answers (and executes) 1.2 s late
            trade = "openpairtest"
            reqs = [PlaceOrderRequest(venue=v, symbol=SYMBOL, side=side, qty=QTY, deadline_s=2.0,
                                      client_order_id=client_order_id(trade, leg, "o"),
                                      flatten_client_order_id=client_order_id(trade, leg, "lf"),
                                      chase_client_order_id=client_order_id(trade, leg, "b1"))
                    for v, side, leg in (("sim-a", Side.BUY, "long"), ("sim-b", Side.SELL, "short"))]
            outs = await ActivityEnvironment().run(TradeActivities(None, pool).place_orders, reqs)  # type: ignore[arg-type]
            assert outs[0].flatten is not None and outs[0].flatten.filled_qty == QTY, outs
            orders = {o["clientOrderId"]: o for o in (await fa.state())["orders"]}
            opened_ns = orders[reqs[0].client_order_id]["arrived_ns"]
            flat_ns = orders[reqs[0].flatten_client_order_id]["arrived_ns"]
            assert (flat_ns - opened_ns) / 1e9 < 0.65, (flat_ns - opened_ns) / 1e9
            await fb.faults()
        finally:
            await pool.close()
