"""The dead-man's switch for resting orders (issue 15), through the gateway against an in-process
simulator of every dialect with real ccxt over HTTP: the arm reaches the venue in its own dialect
(Binance countdownCancelAll, OKX cancel-all-after, Bybit disconnected-cancel-all, Hyperliquid
scheduleCancel) at least at the venue's minimum; a countdown nobody refreshes cancels the resting
quote on the venue's side while its API is down (an outage: the refreshes cannot arrive, the
timer and the matching engine run on); a refreshed one keeps it; out-of-range values are refused
as each venue refuses them. ``/_sim/state`` is the venue's truth.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest

from domain.ids import client_order_id
from tests.simproc import in_process_sim
from tests.test_gateway_dialects import DIALECTS, Admin, sim_options, venue
from venues import dead_man
from venues.errors import VenueError
from venues.gateway import Gateway
from venues.models import OrderStatus
from venues.sim.dead_man import ALL

SYM = "BTC/USDT:USDT"
SLOW_TICK = 600_000  # ms: only a pin ticks the price path
MIN_MS = {"binance": 1000, "bybit": 3000, "okx": 10_000, "hyperliquid": 6000}


@pytest.fixture(scope="module", params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
async def handle(dialect: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator:
    async with in_process_sim(tmp_path_factory.mktemp(f"dm-{dialect}"), name=f"dm-{dialect}", seed=5,
                              tick_ms=SLOW_TICK, **sim_options(dialect)) as h:
        yield h


@pytest.fixture(scope="module")
async def admin(handle) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as http:
        yield Admin(handle.url, http)


@pytest.fixture(scope="module")
async def gw(dialect: str, handle) -> AsyncIterator[Gateway]:
    g = Gateway(venue(dialect, handle.url))
    yield g
    await g.close()


@pytest.fixture(autouse=True)
async def _clean(admin: Admin, gw: Gateway, handle) -> AsyncIterator[None]:
    await admin.faults()
    await admin.market(price="50000", funding_rate=None, book_level_notional=None)
    yield
    await admin.faults()
    handle.sim.dead_man.stop()
    for o in await gw.open_orders(SYM):
        await gw._call("cancel_order", o.venue_order_id, SYM)


_n = 0


def new_cid() -> str:
    global _n
    _n += 1
    return client_order_id(f"dm-{time.time_ns()}-{_n}", "long", "q0n0")


async def quote(gw: Gateway) -> str:
    cid = new_cid()
    r = await gw.place_limit_order(SYM, "buy", Decimal("0.01"), Decimal("49900"), cid, post_only=True)
    assert r.status is OrderStatus.NEW
    return cid


async def test_arm_reaches_the_venue_at_its_minimum(gw: Gateway, handle, dialect: str) -> None:
    before = handle.sim.now_ms()
    armed = await dead_man.arm(gw, SYM, 500)
    assert armed == MIN_MS[dialect]
    deadlines = handle.sim.dead_man.deadlines
    key = "BTCUSDT" if dialect == "binance" else ALL
    assert list(deadlines) == [key]
    assert before + armed - 1500 <= deadlines[key] <= handle.sim.now_ms() + armed + 1000  # the venue's own clock
    assert gw.adapter.dead_man_scope == ("symbol" if dialect == "binance" else "account")


async def test_an_unrefreshed_switch_cancels_the_quote_during_an_outage(gw: Gateway, admin: Admin, handle,
                                                                        dialect: str) -> None:
    cid = await quote(gw)
    await dead_man.arm(gw, SYM, 1000)
    if dialect != "binance":  # the same timer, shortened (the venue's own minimum is 3-10 s)
        handle.sim.dead_man.arm(handle.sim, ALL, 600)
    await admin.faults(outage=True)
    with pytest.raises(VenueError):  # the API is down: no refresh can arrive
        await dead_man.arm(gw, SYM, 1000)
    await asyncio.sleep(1.3 if dialect == "binance" else 0.9)
    (row,) = await admin.orders(gw.adapter.venue_client_id(cid))
    assert row["status"] == "CANCELED"  # by the venue, while we could not reach it
    await admin.faults(outage=False)
    got = await gw.get_order(SYM, cid)
    assert got is not None and got.status is OrderStatus.CANCELED and got.filled_qty == 0
    assert handle.sim.dead_man.fired[-1][2] == 1


async def test_a_refreshed_switch_keeps_the_quote(gw: Gateway, handle, dialect: str) -> None:
    cid = await quote(gw)

    async def refresh() -> None:
        await dead_man.arm(gw, SYM, 1000)
        if dialect != "binance":  # shortened as above, after the venue's own refresh arrived
            handle.sim.dead_man.arm(handle.sim, ALL, 900)

    for _ in range(4):  # 1.2 s and more in all, refreshed every 0.3 s (and the arm's own time)
        await refresh()
        await asyncio.sleep(0.3)
    got = await gw.get_order(SYM, cid)
    assert got is not None and got.status is OrderStatus.NEW
    await asyncio.sleep(1.3)  # no refresh any more
    got = await gw.get_order(SYM, cid)
    assert got is not None and got.status is OrderStatus.CANCELED


async def test_out_of_range_countdowns_are_refused(gw: Gateway, handle, dialect: str) -> None:
    ad = gw.adapter
    m = await gw.market(SYM)
    bad = {"binance": -1, "okx": 5000, "bybit": 1000, "hyperliquid": 1000}[dialect]
    with pytest.raises(VenueError):
        await ad.arm_dead_man(gw._call, m.venue_symbol, bad)
    assert handle.sim.dead_man.deadlines == {}
