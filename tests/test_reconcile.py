"""Reconciliation without false alarms, against real simulators, a real dev server and a worker:

* a trade started between the positions read and the trades list is not an orphan (both
  interleavings are played by calling the pieces of ``Reconciler.run`` in order);
* a flatten that fills only partly is retried with a fresh deterministic client id until the
  venue is flat (never resending an id the venue already has), bounded per run;
* the scanner's risk book counts a trade it cannot query at its notional (memo, else the
  request's fallback), never at $0.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from decimal import Decimal

import pytest
import pytest_asyncio
from ops_helpers import eventually
from pydantic import SecretStr
from temporalio.common import WorkflowIDReusePolicy
from trade_harness import settings_for, start_sims, wait_for

from activities.reconcile import Reconciler, incident_key
from control import trades as control_trades
from control.trades import open_trade, params_from_settings, read_risk_book
from domain.ids import client_order_id
from ledger import Ledger
from messages.scanner import RiskBookRequest
from messages.trade import CloseRequest, TradeStatus
from telemetry.alerts import Notifier
from venues.pool import GatewayPool
from workers.worker import run_worker
from workflows.trade import TradeWorkflow
from workflows.visibility import search_attributes_for

_syms = itertools.count(1)


def sym() -> str:
    return f"S{next(_syms):03d}/USDT:USDT"  # the test sims list S001..S040


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    venues = start_sims(tmp_path_factory.mktemp("rec-sims"), ["sim-a", "sim-b"])
    yield venues
    for s in venues.values():
        s.stop()


class Env:
    def __init__(self, client, settings, sims, ledger, pool):
        self.client, self.settings, self.sims, self.ledger, self.pool = client, settings, sims, ledger, pool

    def reconciler(self, **kw) -> Reconciler:
        return Reconciler(self.settings, self.pool, self.ledger, Notifier.from_settings(self.settings),
                          control_trades, **{"settle_s": 0.3, **kw})

    async def open(self, symbol: str, notional: str = "1000"):
        wf_id = await open_trade(self.client, self.settings, symbol, "sim-a", "sim-b", Decimal(notional))
        return self.client.get_workflow_handle(wf_id, result_type=TradeStatus)

    async def holding(self, h) -> TradeStatus:
        async def check():
            st = await h.query("status", result_type=TradeStatus)
            return st if st.state == "holding" else None

        return await wait_for(check, timeout=40, what="holding")

    async def visible(self, wf_id: str) -> None:
        q = f"WorkflowId = '{wf_id}'"
        await eventually(lambda: _any(self.client.list_workflows(q)), timeout=15)


async def _any(it) -> bool:
    async for _ in it:
        return True
    return False


@pytest_asyncio.fixture(scope="module")
async def env(temporal_env, sims, tmp_path_factory):
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.address = temporal_env.address
    settings.temporal.task_queue = "rec-" + os.urandom(4).hex()
    settings.metrics_port = 0
    settings.ledger.url = SecretStr(f"sqlite:///{tmp_path_factory.mktemp('rec-ledger')}/ledger.sqlite")
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop_event=stop, quiet=True, graceful_shutdown_timeout=2,
                                          on_ready=lambda w: ready.set()))
    await asyncio.wait_for(ready.wait(), 30)
    async with GatewayPool(settings) as pool:
        yield Env(client, settings, sims, Ledger.for_settings(settings), pool)
    stop.set()
    await asyncio.wait_for(task, 30)


def _pairs(found, symbol: str) -> set[tuple[str, str]]:
    return {k for k in found if k[1] == symbol}


async def test_trade_started_between_the_two_reads_is_not_an_orphan(env: Env):
    rec = env.reconciler()
    # the scheme's order: positions, then (the trade starts and fills), then the trades list
    s1 = sym()
    t0 = int(time.time() * 1000)
    positions, _ = await rec.read_positions()
    h1 = await env.open(s1)
    await env.holding(h1)
    await env.visible(h1.id)
    view = await rec.read_trades(env.client, t0)
    assert not _pairs(rec.compare(positions, view), s1), "a trade newer than the positions read is busy"
    # the same pictures without the start-time rule would disagree: the second look settles it
    old_view = control_trades.expected_positions(env.client, env.settings.temporal.task_queue)
    suspects = rec.compare(positions, type(view)(*await old_view))
    assert _pairs(suspects, s1) == {("sim-a", s1), ("sim-b", s1)}
    assert {d.kind for k, d in suspects.items() if k[1] == s1} == {"position_mismatch"}
    confirmed, undecided = await rec.confirm(env.client, suspects, t0)
    assert not [d for d in confirmed if d.symbol == s1] and not undecided

    # the old order: trades listed first, then the trade starts, then positions are read
    s2 = sym()
    t0 = int(time.time() * 1000)
    view = await rec.read_trades(env.client, t0)
    h2 = await env.open(s2)
    await env.holding(h2)
    positions, _ = await rec.read_positions()
    suspects = rec.compare(positions, view)
    assert {d.kind for k, d in suspects.items() if k[1] == s2} == {"orphan"}  # the old false alarm
    confirmed, _ = await rec.confirm(env.client, suspects, t0)
    assert not [d for d in confirmed if d.symbol == s2]

    # a whole pass: nothing on either symbol, no incident, no alert
    report = await rec.run(env.client)
    assert not [d for d in report.discrepancies if d.symbol in (s1, s2)], report.discrepancies
    assert "orphan_found" not in report.alerts
    for h in (h1, h2):
        await h.signal("close", CloseRequest(reason="test done"))
    for h in (h1, h2):
        assert (await h.result()).state == "closed"


async def test_partly_filled_flatten_is_retried_with_fresh_ids_until_flat(env: Env):
    s = sym()
    h = await env.open(s)
    st = await env.holding(h)
    await h.terminate(reason="test: leave an orphan")
    a, b = env.sims["sim-a"], env.sims["sim-b"]
    assert a.position_qty(s) == st.target_qty > 0

    rec = env.reconciler(flatten_sends=2)
    report = await rec.run(env.client)
    orphans = {d.venue: d for d in report.discrepancies if d.kind == "orphan" and d.symbol == s}
    assert set(orphans) == {"sim-a", "sim-b"}
    key_a, key_b = incident_key(orphans["sim-a"]), incident_key(orphans["sim-b"])
    inc = orphans["sim-a"].incident_id
    cids = [client_order_id(f"orphan-sim-a-{s}-{inc}", "long", f"f{n}") for n in range(1, 5)]

    a.faults(partial_fill_ratio=0.5)  # every market order fills half
    try:
        report = await rec.run(env.client, flatten=[key_a])
    finally:
        a.faults()  # reset
    left = a.position_qty(s)
    assert 0 < left < st.target_qty / 2, left  # two halves of halves: partly flat
    assert key_a not in report.flattened and "flatten_incomplete" in report.alerts
    d = next(d for d in report.discrepancies if d.venue == "sim-a" and d.symbol == s)
    assert "2 order(s) sent" in d.detail and cids[0] in d.detail and cids[1] in d.detail
    assert [o["clientOrderId"] for o in a.orders(cids)] == cids[:2]  # bounded: two sends this run
    assert env.ledger.open_incident_count() >= 2

    report = await rec.run(env.client, flatten=[key_a, key_b])
    assert set(report.flattened) == {key_a, key_b}, [x.detail for x in report.discrepancies]
    assert a.position_qty(s) == 0 and b.position_qty(s) == 0
    sent = sorted(o["clientOrderId"] for o in a.orders(cids))
    assert sent == sorted(cids[:3]), "f1 and f2 were not resent; f3 closed the rest"
    d = next(d for d in report.discrepancies if d.venue == "sim-a" and d.symbol == s)
    assert "2 earlier attempt(s) not resent" in d.detail and "flat" in d.detail
    report = await rec.run(env.client)
    assert not [d for d in report.discrepancies if d.symbol == s]


async def test_unqueryable_trade_counts_at_its_notional(env: Env):
    # a task queue no worker polls: the trades are Running in visibility but cannot answer a query
    settings = env.settings.model_copy(deep=True)
    settings.temporal.task_queue = "rec-noworker-" + os.urandom(4).hex()
    s1, s2 = sym(), sym()
    with_memo = await open_trade(env.client, settings, s1, "sim-a", "sim-b", Decimal("1234"))
    params = params_from_settings(settings, s2, "sim-a", "sim-b", Decimal("777"), f"legacy-{os.urandom(3).hex()}")
    legacy = await env.client.start_workflow(  # started the old way: no memo
        TradeWorkflow.run, args=[params, None], id=params.trade_id, task_queue=settings.temporal.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, search_attributes=search_attributes_for(params),
    )
    try:
        await env.visible(with_memo)
        await env.visible(legacy.id)
        now = int(time.time() * 1000)
        req = RiskBookRequest(day_start_ms=now - now % 86_400_000, cooldown_since_ms=now,
                              fallback_notional_usd=Decimal("500"))
        book = await read_risk_book(env.client, req, {}, settings.temporal.task_queue)
        by_id = {t.trade_id: t for t in book.open_trades}
        assert by_id[with_memo].notional_usd == Decimal("1234")
        assert by_id[with_memo].symbol == s1 and by_id[with_memo].long_venue == "sim-a"
        assert by_id[legacy.id].notional_usd == Decimal("500")  # no memo: the scanner's notional
    finally:
        for wf in (with_memo, legacy.id):
            await env.client.get_workflow_handle(wf).terminate(reason="test done")
