"""monitor-v1: a holding trade's tick is ONE activity (``monitor_read``) reading both venues'
position and snapshot, each venue's answer or error on its own; monitor-v2: a local activity.

* the workflow (the real TradeWorkflow on the session's dev server, faked activities): every tick
  of the hold is one local ``monitor_read``, no per-venue ``get_positions`` / ``market_snapshot``;
* the activity against two real simulator children over HTTP: many trades' ticks at once cost
  each venue one position read and one funding read (the shared reads), and a venue in outage
  is reported as that venue's error while the other venue's answer is served.

(A venue that fails leaves only its own leg unjudged: tests/test_trade_branches.py, e.g.
``test_unreadable_venue_does_not_blind_the_other_legs_liquidation_check``, now through this activity.)
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import ActivityEnvironment

from activities.monitor import POSITIONS_MAX_AGE_S
from activities.trade import TradeActivities
from config import load_settings
from config.settings import DEMO_API_KEY, DEMO_API_SECRET
from messages.monitor import MonitorReadRequest
from messages.trade import CloseRequest
from tests.test_shared_reads import weight_of
from tests.test_trade_branches import HISTORIES, bench  # noqa: F401 - the fixture
from venues.pool import GatewayPool
from workers.proc import free_port
from workers.simproc import SimProcess
from workflows.trade import TradeWorkflow


def scheduled(history) -> list[str]:
    """The activity types of the history's activities, in order: normal ones as scheduled, local
    ones (monitor-v2's read) as their markers record them, ``local:<type>``."""
    out = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            out.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and (kind := local_activity_type(e)):
            out.append(f"local:{kind}")
    return out


def local_activity_type(event) -> str | None:
    """The activity type a local activity's marker records (None for other markers)."""
    a = event.marker_recorded_event_attributes
    if a.marker_name != "core_local_activity" or "data" not in a.details:
        return None
    return json.loads(a.details["data"].payloads[0].data).get("activity_type")


def tick_events(history) -> list[int]:
    """History events between consecutive monitor reads of the hold (one tick each)."""
    at = [i for i, e in enumerate(history.events)
          if (e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and local_activity_type(e) == "monitor_read")
          or (e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
              and e.activity_task_scheduled_event_attributes.activity_type.name == "monitor_read")]
    return [b - a for a, b in zip(at, at[1:], strict=False)]


async def test_a_holding_trade_ticks_with_one_local_activity(bench):  # noqa: F811
    """monitor-v2: each tick is one local activity (a marker), no activity task through the server,
    one workflow task: a quiet tick costs 6 history events (timer started and fired, workflow task
    scheduled, started and completed, the marker), where monitor-v1's cost 11."""
    h = await bench.start()  # a tick every 0.1 s
    await bench.until(h, lambda s: s.state == "holding")
    reads0 = {n: v.reads for n, v in bench.fakes.v.items()}

    def ticks() -> int:
        return min(v.reads - reads0[n] for n, v in bench.fakes.v.items())

    for _ in range(400):  # a few ticks (0.1 s apart on an idle machine)
        if ticks() >= 4:
            break
        await asyncio.sleep(0.05)
    await h.signal(TradeWorkflow.close, CloseRequest(reason="done"))
    st = await h.result()
    assert st.state == "closed" and bench.flat()
    history = await h.fetch_history()
    kinds = scheduled(history)
    assert ticks() >= 4 and kinds.count("local:monitor_read") >= 4, (ticks(), kinds)
    first, last = kinds.index("local:monitor_read"), len(kinds) - 1 - kinds[::-1].index("local:monitor_read")
    assert set(kinds[first:last + 1]) == {"local:monitor_read"}, kinds  # the hold: nothing but one read a tick
    assert "monitor_read" not in kinds and "market_snapshot" not in kinds, kinds
    per_tick = tick_events(history)
    assert per_tick and min(per_tick) == 6, per_tick  # a quiet tick: 6 events (monitor-v1: 11)
    if os.environ.get("HEDGEFLOW_RECORD_HISTORIES"):
        (HISTORIES / "trade_monitor_local_read_v8.json").write_text(history.to_json())


# --- the activity against real simulators --------------------------------------------------------
@pytest.fixture(scope="module")
async def sims(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, SimProcess]]:
    d: Path = tmp_path_factory.mktemp("monitor")
    out = {n: SimProcess(n, free_port(), d / f"{n}.sqlite", "--symbols", "30", "--api-key", DEMO_API_KEY,
                         "--api-secret", DEMO_API_SECRET) for n in ("sim-m1", "sim-m2")}
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in out.values()))
    try:
        yield out
    finally:
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in out.values()))


async def test_monitor_read_one_request_per_venue_and_each_venue_on_its_own(sims: dict[str, SimProcess]):
    venues = ",".join(f'{{"name": "{n}", "kind": "sim", "base_url": "{s.url}", "requests_per_second": 1000}}'
                      for n, s in sims.items())
    settings = load_settings(environ={"HEDGEFLOW__VENUES": f"[{venues}]"})  # shared reads on (the default)
    env = ActivityEnvironment()
    a, b = sims
    async with GatewayPool(settings) as pool, aiohttp.ClientSession() as http:
        acts = TradeActivities(settings, pool)
        for n in sims:  # markets, intervals, connections warm: what follows is the reads alone
            await pool.get(n).positions(None)
            await pool.get(n).funding_rates()
        symbols = sorted(s for s in await pool.get(a).markets() if s.startswith("S"))[:20]

        async def ticks() -> list:
            return await asyncio.gather(*(env.run(acts.monitor_read, MonitorReadRequest(symbol=s, venues=[a, b]))
                                          for s in symbols))

        got: list = []

        async def measured_on_b() -> None:
            got.extend(await ticks())

        weight_b = await weight_of(http, sims[b].url, measured_on_b)  # 20 trades' ticks at once
        assert weight_b == 5 + 10  # one positionRisk, one premiumIndex of every symbol
        for s, ans in zip(symbols, got, strict=True):
            assert [r.venue for r in ans.reads] == [a, b] and all(r.ok for r in ans.reads)
            assert all(r.position is None and r.snapshot.symbol == s and r.snapshot.funding.mark_price > 0
                       for r in ans.reads)

        async with http.post(sims[b].url + "/_sim/faults", json={"outage": True}) as r:
            assert r.status == 200
        try:
            await asyncio.sleep(pool.bounds.max_age_s + 0.1)  # b's last funding read is too old to serve
            ans = await env.run(acts.monitor_read, MonitorReadRequest(symbol=symbols[0], venues=[a, b]))
        finally:
            async with http.post(sims[b].url + "/_sim/faults", json={}) as r:
                assert r.status == 200
        ra, rb = ans.reads
        assert ra.ok and ra.snapshot.funding.mark_price > 0  # the other venue still answers
        assert not rb.ok and rb.error_type == "VenueUnavailable" and rb.snapshot is None, rb


async def test_a_tick_is_served_by_a_positions_read_begun_since_its_wait(sims: dict[str, SimProcess]):
    """monitor-v2: a tick says when its interval wait began (``positions_since_ms``); a shared
    positions read begun after that, at most ``POSITIONS_MAX_AGE_S`` before the tick asked, serves
    it at once (a local activity waiting for the next read holds a workflow task slot). A read
    begun before the wait, or too long ago, does not: the tick waits for a new one."""
    venues = ",".join(f'{{"name": "{n}", "kind": "sim", "base_url": "{s.url}", "requests_per_second": 1000}}'
                      for n, s in sims.items())
    settings = load_settings(environ={"HEDGEFLOW__VENUES": f"[{venues}]"})
    env = ActivityEnvironment()
    a, b = sims
    async with GatewayPool(settings) as pool:
        acts = TradeActivities(settings, pool)
        sym = sorted(s for s in await pool.get(a).markets() if s.startswith("S"))[0]
        reads = {n: pool.shared(n).position_reads for n in sims}

        async def tick(since_ms: int | None) -> None:
            ans = await env.run(acts.monitor_read, MonitorReadRequest(symbol=sym, venues=[a, b], positions_since_ms=since_ms))
            assert all(r.ok for r in ans.reads), ans

        waited_ms = int(time.time() * 1000)
        await tick(None)  # a read begun after the tick asked: one position read per venue
        n0 = {n: r.reads for n, r in reads.items()}
        await tick(waited_ms)  # the wait began before that read: served by it
        assert {n: r.reads for n, r in reads.items()} == n0
        await tick(int(time.time() * 1000))  # the wait began after it: a new read
        n1 = {n: r.reads for n, r in reads.items()}
        assert all(n1[n] == n0[n] + 1 for n in sims), (n0, n1)
        await asyncio.sleep(POSITIONS_MAX_AGE_S + 0.2)  # the last read is now too old to serve
        await tick(waited_ms)
        assert all(r.reads == n1[n] + 1 for n, r in reads.items())
