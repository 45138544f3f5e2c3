"""One trade per (venue, symbol), held by a real lease (real dev server, simulators, ledger,
worker): two TradeWorkflows started at the same moment on the same symbol and venues, past the
client-side visibility check → exactly one trades, the other is refused before any order."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from trade_harness import settings_for, start_sims

from control.trades import params_from_settings
from messages.trade import CloseRequest, TradeStatus
from workers.worker import run_worker
from workflows.trade import TradeWorkflow
from workflows.visibility import search_attributes_for

SYM = "S033/USDT:USDT"


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    venues = start_sims(tmp_path_factory.mktemp("lease"), ["sim-a", "sim-b"])
    yield venues
    for s in venues.values():
        s.stop()


async def test_two_concurrent_opens_make_exactly_one_trade(temporal_env, task_queue, sims):
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.task_queue = task_queue
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                            quiet=True, graceful_shutdown_timeout=2))
    try:
        ps = [params_from_settings(settings, SYM, "sim-a", "sim-b", Decimal("1000"), f"trade-race-{uuid.uuid4().hex[:8]}")
              for _ in range(2)]
        hs = await asyncio.gather(*(client.start_workflow(TradeWorkflow.run, args=[p, None], id=p.trade_id,
                                                          task_queue=task_queue, search_attributes=search_attributes_for(p))
                                    for p in ps))

        async def settled(h):
            while True:
                st = await h.query(TradeWorkflow.status)
                if st.state in ("holding", "aborted", "closed"):
                    return st
                await asyncio.sleep(0.05)

        states = await asyncio.wait_for(asyncio.gather(*(settled(h) for h in hs)), 60)
        assert sorted(s.state for s in states) == ["aborted", "holding"], [s.abort_reason for s in states]
        loser = next(s for s in states if s.state == "aborted")
        assert loser.abort_reason.split(":")[0] in ("LEASE_HELD", "POSITION_EXISTS")
        assert not any(leg.client_order_ids for leg in loser.legs), "the refused trade sent nothing"
        winner = next(h for h, s in zip(hs, states, strict=True) if s.state == "holding")
        qty = next(s for s in states if s.state == "holding").target_qty
        assert sims["sim-a"].position_qty(SYM) == qty and sims["sim-b"].position_qty(SYM) == -qty
        await winner.signal(TradeWorkflow.close, CloseRequest(reason="done"))
        final = await client.get_workflow_handle(winner.id, result_type=TradeStatus).result()
        assert final.state == "closed" and all(s.position_qty(SYM) == 0 for s in sims.values())
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
