"""The close of a holding trade under venue changes the chaos plan makes, through the real
workflow and worker against two simulators over HTTP: it must end closed and flat, its PnL the
wallets' change to the cent, no client id executed twice.

A venue's quantity step grows while a trade holds (issue 10, Deliver 6; the chaos plan's
"qty step ×10"). The workflow sized with the step it read before its first order (0.1 here); the
venue now trades in steps of 1.0, so what a leg holds (25.7) is no multiple of it.

* Both venues' step grows: the whole-position closes round down to 25, and 0.7 is left on each
  leg, below the new minimum. Before the fix the gateway refused every close of that dust
  (``OrderBelowMinimum``, nothing sent) and the trade never ended. A reduce-only close of a whole
  position is now rounded *up* to the step: the venue executes no more than is held.
* The follower's step grows and its leader fills in part (a thin book): the follower's match of
  the leader's fill is refused as below its new step, and before the fix its loop asked for it
  again forever while the leader waited for that match. The follower now waits for its leader
  to be flat (a difference below the follower's step cannot be matched) and then closes whole.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from trade_harness import SimVenue, settings_for, start_sims, wait_for

from control.trades import open_trade
from messages.trade import CloseRequest, TradeStatus
from workers.worker import run_worker
from workflows.trade import TradeWorkflow

CENT = Decimal("0.01")
SYMBOLS = iter(["S012/USDT:USDT", "S019/USDT:USDT", "S027/USDT:USDT", "S022/USDT:USDT"])  # steps 0.1; one per test


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    venues = start_sims(tmp_path_factory.mktemp("stepchange"), ["sim-a", "sim-b"], ["--symbols", "30"])
    yield venues
    for s in venues.values():
        s.stop()


async def close_after(temporal_env, task_queue, sims: dict[str, SimVenue],
                      while_holding: Callable[[str, TradeStatus], None], record: str | None = None) -> TradeStatus:
    """Long on sim-a, short on sim-b; ``while_holding(symbol, status)`` changes the venues, then a
    graceful close. The trade must end closed and flat, its PnL the wallets' change to the cent,
    no client id executed twice. ``HEDGEFLOW_RECORD_HISTORIES=1`` saves the history as ``record``
    (``tests/histories/``, the replay guard of ``test_trade_workflow.py``)."""
    sym = next(SYMBOLS)
    a, b = sims["sim-a"], sims["sim-b"]
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.task_queue = task_queue
    wallets = {n: s.wallet() for n, s in sims.items()}
    stop, ready = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                            quiet=True, graceful_shutdown_timeout=2, on_ready=lambda w: ready.set()))
    wf_id = None
    try:
        await asyncio.wait_for(ready.wait(), 60)
        mark = next(Decimal(r["mark_price"]) for r in a.admin("/_sim/market") if r["symbol"] == sym)
        # 25.5 units (about 1,000 USD): no multiple of the coarser step the venues will trade in
        wf_id = await open_trade(client, settings, sym, "sim-a", "sim-b", (mark * Decimal("25.5")).quantize(Decimal(1)))
        h = client.get_workflow_handle(wf_id, result_type=TradeStatus)

        async def holding():
            st = await h.query(TradeWorkflow.status)
            assert st.state not in ("aborted", "closed"), st.events[-6:]
            return st if st.state == "holding" else None

        st = await wait_for(holding, timeout=60, what="holding")
        assert a.position_qty(sym) == st.target_qty == -b.position_qty(sym)
        assert st.target_qty % 1 != 0, st.target_qty  # no multiple of the step the venues will trade in
        while_holding(sym, st)
        await h.signal(TradeWorkflow.close, CloseRequest(reason="step test"))

        async def ended():
            desc = await h.describe()
            return desc if desc.status != WorkflowExecutionStatus.RUNNING else None

        try:
            await wait_for(ended, timeout=45, what="the trade to end")
        except AssertionError:
            st = await h.query(TradeWorkflow.status)
            raise AssertionError(f"not ended: {st.state}, long {a.position_qty(sym)}, short {b.position_qty(sym)}; "
                                 f"events: {[e.what for e in st.events[-12:]]}") from None
        final = await h.result()
        if record and os.environ.get("HEDGEFLOW_RECORD_HISTORIES"):
            (Path(__file__).parent / "histories" / f"{record}.json").write_text((await h.fetch_history()).to_json())
        assert final.state == "closed" and a.position_qty(sym) == 0 == b.position_qty(sym), final.events[-8:]
        change = sum((s.wallet() - wallets[n] for n, s in sims.items()), Decimal(0))
        assert final.realized_pnl_usd is not None
        assert final.realized_pnl_usd.quantize(CENT) == change.quantize(CENT), (final.realized_pnl_usd, change)
        for s in (a, b):
            executed = [o["clientOrderId"] for o in s.orders() if Decimal(str(o["executedQty"])) > 0]
            assert len(executed) == len(set(executed)), executed
        return final
    finally:
        for s in sims.values():
            s.faults()
        if wf_id is not None:
            try:  # never leave a trade running on the shared dev server
                await client.get_workflow_handle(wf_id).signal(TradeWorkflow.emergency_close,
                                                               CloseRequest(reason="test end"))
            except Exception:  # noqa: BLE001 - already ended
                pass
        stop.set()
        await asyncio.wait_for(worker, 30)


async def test_dust_below_a_grown_step_is_closed_by_a_whole_position_close(temporal_env, task_queue, sims) -> None:
    def coarser(sym: str, st: TradeStatus) -> None:
        for s in sims.values():
            s.market(sym, qty_step="1")

    final = await close_after(temporal_env, task_queue, sims, coarser)
    assert any("close: long on sim-a first" in e.what for e in final.events), [e.what for e in final.events]


async def test_a_follower_whose_step_grew_waits_for_its_leader_and_then_closes_whole(
        temporal_env, task_queue, sims) -> None:
    def coarser_follower_thin_leader(sym: str, st: TradeStatus) -> None:
        sims["sim-b"].market(sym, qty_step="1")  # the short leg, which follows the long one
        sims["sim-a"].faults(partial_fill_ratio=0.5)  # the leader fills half of each close

    final = await close_after(temporal_env, task_queue, sims, coarser_follower_thin_leader,
                              record="trade_close_below_step_v8")
    events = [e.what for e in final.events]
    assert any("close: long on sim-a first" in e for e in events), events
    assert any("sim-b refuses to close" in e for e in events), events  # the match below its new step


async def test_a_match_on_a_venue_that_starts_executing_late_is_re_hedged_and_booked(
        temporal_env, task_queue, sims) -> None:
    """lifecycle-v8 (the 2.6 s of the chaos runs): sim-b starts executing every order 2.5 s late just
    before the close, so the first round's match (sim-b follows) is accepted and not executed. sim-a
    re-opens the leader's fill and the match is cancelled; sim-b then leads (its close waited for
    inside the round) and sim-a follows. Every one of those fills is booked: the PnL is the wallets'
    change to the cent."""
    def late_follower(sym: str, st: TradeStatus) -> None:
        sims["sim-b"].faults(execute_late_ms=2500)

    final = await close_after(temporal_env, task_queue, sims, late_follower, record="trade_close_rehedge_v8")
    events = [e.what for e in final.events]
    assert any("accepted but not executed: long re-opened" in e for e in events), events
    assert any("u1" in c or "hfLu1" in c for c in final.leg("long").client_order_ids), final.leg("long").client_order_ids
