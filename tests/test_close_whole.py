"""lifecycle-v9: a whole-position close and its rests in one activity (``activities/close_whole.py``),
against a real simulator over HTTP (unmodified ccxt): a book that fills half of each order is
closed to flat in that one call, each rest under the next of the workflow's ids; a venue that fills
in full gets no rest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest

from activities.close_whole import close_whole
from domain.ids import client_order_id
from messages.trade import PlaceOrderRequest
from tests.simproc import in_process_sim
from tests.test_gateway import Admin, venue
from venues.models import Side
from venues.pool import GatewayPool

SYMBOL = "BTC/USDT:USDT"
_n = 0


@pytest.fixture(scope="module")
async def sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[GatewayPool, Admin]]:
    async with in_process_sim(tmp_path_factory.mktemp("whole"), name="sim-w") as a, aiohttp.ClientSession() as http:
        pool = GatewayPool([venue(a.url, name="sim-w")])
        yield pool, Admin(a.url, http)
        await pool.close()


async def held(pool: GatewayPool) -> Decimal:
    return sum((p.qty for p in await pool.get("sim-w").positions([SYMBOL])), Decimal(0))


async def _long(pool: GatewayPool, admin: Admin, qty: Decimal) -> tuple[str, PlaceOrderRequest]:
    global _n
    _n += 1
    trade = f"wholetest-{_n}-{id(pool)}"
    await admin.faults()
    await pool.get("sim-w").place_market_order(SYMBOL, Side.BUY, qty, client_order_id(trade, "long", "o"))
    req = PlaceOrderRequest(venue="sim-w", symbol=SYMBOL, side=Side.SELL, qty=qty, reduce_only=True, resend_fresh=True,
                            client_order_id=client_order_id(trade, "long", "c1"),
                            rest_ids=[client_order_id(trade, "long", f"c1r{k}") for k in range(1, 13)])
    return trade, req


def _place(pool: GatewayPool):
    async def place(req: PlaceOrderRequest):
        return await pool.get(req.venue).place_market_order(req.symbol, req.side, req.qty, req.client_order_id,
                                                            reduce_only=True, wait_window=not req.resend_fresh,
                                                            whole=req.resend_fresh)
    return place


async def test_a_thin_book_is_closed_to_flat_in_one_call(sim) -> None:
    pool, admin = sim
    qty = Decimal("0.064")  # 64 lots of 0.001: half of each order fills, so seven orders
    _, req = await _long(pool, admin, qty)
    await admin.faults(partial_fill_ratio=0.5)
    out = await close_whole(pool, req, _place(pool))
    assert out.order.filled_qty < qty and len(out.rest) > 3, out  # more rests than v5-v8's lone flatten had
    assert out.rest_sent_ids == req.rest_ids[:len(out.rest)], out
    assert [o.client_order_id for o in out.rest] == out.rest_sent_ids
    assert out.order.filled_qty + sum(o.filled_qty for o in out.rest) == qty
    assert await held(pool) == 0


async def test_a_full_fill_sends_no_rest(sim) -> None:
    pool, admin = sim
    _, req = await _long(pool, admin, Decimal("0.01"))
    out = await close_whole(pool, req, _place(pool))
    assert out.order.filled_qty == Decimal("0.01") and out.rest == [] and out.rest_sent_ids == []
    assert await held(pool) == 0


async def test_a_part_of_the_position_rests_to_that_part_only(sim) -> None:
    """A follower's excess (half of what it holds), not the whole position: the rests close that part."""
    pool, admin = sim
    _, req = await _long(pool, admin, Decimal("0.064"))
    req = req.model_copy(update={"qty": Decimal("0.032"), "resend_fresh": False})
    await admin.faults(partial_fill_ratio=0.5)
    out = await close_whole(pool, req, _place(pool))
    assert out.rest and out.order.filled_qty + sum(o.filled_qty for o in out.rest) == Decimal("0.032"), out
    await admin.faults()
    assert await held(pool) == Decimal("0.032")
