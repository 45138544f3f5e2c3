"""The venue request budget (venues/budget.py): pure timing with a fake clock where possible, and
the gateway hook over real HTTP: a waiting order goes before every waiting read, the rate is the
venue's share across workers, and ccxt's own cost per request is what is spent."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from domain.ids import client_order_id
from tests.simproc import in_process_sim
from tests.test_gateway import venue
from venues.budget import VenueBudget
from venues.gateway import Gateway
from venues.models import Side


async def test_an_order_waiting_goes_before_every_waiting_read():
    b = VenueBudget(20)  # 20 units/s, burst 20
    await b.acquire(20, "read")  # the burst spent: everything below waits
    order_done: list[float] = []
    reads_done: list[float] = []
    t0 = time.monotonic()

    async def read():
        await b.acquire(5, "read")
        reads_done.append(time.monotonic() - t0)

    async def order():
        await asyncio.sleep(0.01)  # arrives after the reads queued
        await b.acquire(1, "order")
        order_done.append(time.monotonic() - t0)

    await asyncio.gather(*(read() for _ in range(4)), order())
    assert order_done[0] < min(reads_done[1:]), (order_done, reads_done)  # at most the read being served first
    assert order_done[0] < 0.4


async def test_the_rate_is_the_share_of_the_venue_across_workers():
    b = VenueBudget(40)
    b.set_workers(2)
    assert b.effective_rate == 20 and b.capacity == 20
    await b.acquire(20)  # the burst
    t0 = time.monotonic()
    for _ in range(4):
        await b.acquire(5)  # 20 units at 20/s: about a second
    took = time.monotonic() - t0
    assert 0.85 < took < 1.5, took
    b.set_workers(0)
    assert b.share == 1.0


async def test_a_cancelled_waiter_does_not_hold_the_line():
    b = VenueBudget(10)
    await b.acquire(10)
    waiter = asyncio.create_task(b.acquire(10, "order"))
    await asyncio.sleep(0.01)
    waiter.cancel()
    t0 = time.monotonic()
    await b.acquire(1, "read")
    assert time.monotonic() - t0 < 0.5  # one unit's wait, not the cancelled order's ten


def test_bad_rate_is_refused():
    with pytest.raises(ValueError):
        VenueBudget(0)


async def test_the_gateway_spends_ccxt_costs_in_the_lane_of_its_method(tmp_path):
    """Real ccxt over HTTP: a position read is spent in the read lane at Binance's weight (5), an
    order and its look-up in the order lane."""
    async with in_process_sim(tmp_path, name="budget") as sim, Gateway(venue(sim.url)) as gw:
        await gw.markets()
        before = dict(gw.budget.served)
        await gw.positions(["BTC/USDT:USDT"])
        assert gw.budget.served["read"] > before["read"]  # ccxt's cost of that endpoint
        assert gw.budget.served["order"] == before["order"]
        after_read = gw.budget.served["read"]
        cid = client_order_id(f"budget-{time.time_ns()}", "long", "o")
        await gw.place_market_order("BTC/USDT:USDT", Side.BUY, Decimal("0.002"), cid, ref_price=Decimal(60000))
        assert gw.budget.served["order"] > before["order"]
        assert gw.budget.served["read"] == after_read  # the order's own look-ups counted as order work
        await gw.place_market_order("BTC/USDT:USDT", Side.SELL, Decimal("0.002"),
                                    client_order_id(cid, "long", "c1"), reduce_only=True, ref_price=Decimal(60000))


async def test_each_worker_takes_its_share_of_the_venue_as_workers_join_and_leave(temporal_env, task_queue,
                                                                                  monkeypatch):
    """Two workers (distinct identities, as two processes have) poll the trade task queue on the
    real dev server: each takes half of every venue's rate; alone again, the whole."""
    from temporalio import activity
    from temporalio.worker import Worker

    from venues.pool import GatewayPool
    from workers import budget_share
    from workers.client import connect

    monkeypatch.setattr(budget_share, "SHARE_REFRESH_S", 0.2)

    @activity.defn(name="noop")
    async def noop() -> None:
        return None

    pool = GatewayPool([venue("http://127.0.0.1:9", name="sim-share", requests_per_second=40)])
    clients = [await connect(temporal_env.address, temporal_env.namespace) for _ in range(2)]
    workers = [Worker(c, task_queue=task_queue, activities=[noop], identity=f"w{i}@test") for i, c in enumerate(clients)]
    keep = asyncio.create_task(budget_share.keep_share(clients[0], task_queue, pool))
    try:
        async with workers[0]:
            async with workers[1]:
                await _until(lambda: pool.get("sim-share").budget.effective_rate == 20)
            # the second worker stopped: Temporal lists it until POLLER_SEEN_S; then the whole rate
            monkeypatch.setattr(budget_share, "POLLER_SEEN_S", 0.5)
            await _until(lambda: pool.get("sim-share").budget.effective_rate == 40, timeout=20)
    finally:
        keep.cancel()
        await pool.close()


async def _until(pred, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_request_dearer_than_the_burst_is_charged_in_full():
    """A weight-30 income read on a worker whose share is 20/s waits for a full burst and is then
    charged all 30 (the budget runs 10 in debt): over time the venue sees the rate, never more.
    Charging only the burst (20) let every such read through 10 units under its weight."""
    now = [0.0]
    b = VenueBudget(40, clock=lambda: now[0])
    b.set_workers(2)  # 20/s each, burst 20
    await b.acquire(30)  # the burst was full: granted at once, 10 in debt
    assert b.served["read"] == 30
    waiter = asyncio.create_task(b.acquire(1))
    await asyncio.sleep(0.02)
    assert not waiter.done()  # in debt: nothing more until the debt is paid
    now[0] = 0.5  # 10 units refilled: the debt is paid, not yet a unit more
    b._wake.set()
    await asyncio.sleep(0.02)
    assert not waiter.done()
    now[0] = 0.56  # 1.2 units
    b._wake.set()
    await asyncio.wait_for(waiter, 1)
