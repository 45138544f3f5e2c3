"""Liquidation handling against the simulator's liquidation engine (real dev server, simulators
over HTTP with small wallets, real ccxt, the real worker): the mark is driven to within 10 %
of the long leg's liquidation price → both legs are reduced (with hysteresis); then within
5 % → both are closed, before the venue liquidates anything."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from trade_harness import settings_for, start_sims, wait_for

from control.trades import open_trade
from messages.trade import CloseRequest, TradeStatus
from workers.worker import run_worker
from workflows.trade import TradeWorkflow

SYM = "S032/USDT:USDT"


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    venues = start_sims(tmp_path_factory.mktemp("liq"), ["sim-a", "sim-b"], ["--balance", "700"])
    yield venues
    for s in venues.values():
        s.stop()


def liq_price(sim, symbol: str) -> Decimal | None:
    vs = symbol.split(":")[0].replace("/", "")
    for p in sim.state()["positions"]:
        if p.get("symbol") in (symbol, vs) and p.get("liquidationPrice") not in (None, "", "0"):
            return Decimal(str(p["liquidationPrice"]))
    return None


async def test_reduce_near_liquidation_then_close(temporal_env, task_queue, sims):
    client = await temporal_env.client()
    settings = settings_for(sims, reduce_cooldown_s=1)
    settings.temporal.task_queue = task_queue
    settings.limits.leverage = 5
    for s in sims.values():
        s.market(SYM, price="100", funding_rate="0")
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                            quiet=True, graceful_shutdown_timeout=2))
    try:
        wf_id = await open_trade(client, settings, SYM, "sim-a", "sim-b", Decimal("2500"))
        h = client.get_workflow_handle(wf_id, result_type=TradeStatus)

        async def state_is(*states):
            st = await h.query(TradeWorkflow.status)
            return st if st.state in states else None

        st = await wait_for(lambda: state_is("holding"), timeout=60, what="holding")
        qty = st.target_qty
        liq = liq_price(sims["sim-a"], SYM)
        assert liq is not None and liq > 0, "the simulator reports the long leg's liquidation price"

        # 8 % above the liquidation price: reduce
        sims["sim-a"].market(SYM, price=str((liq * Decimal("1.08")).quantize(Decimal("0.01"))))
        st = await wait_for(lambda: _reduced(h, qty), timeout=30, what="a reduction")
        assert st.state == "holding" and st.leg("long").filled_qty == st.leg("short").filled_qty < qty
        assert sims["sim-a"].position_qty(SYM) == -sims["sim-b"].position_qty(SYM)

        # 4 % above the (new) liquidation price: close both
        liq2 = liq_price(sims["sim-a"], SYM)
        assert liq2 is not None and liq2 < liq, "halving a cross-margin position moves liquidation away"
        sims["sim-a"].market(SYM, price=str((liq2 * Decimal("1.04")).quantize(Decimal("0.01"))))
        final = await h.result()
        assert final.state == "closed" and final.close_reason == "LIQUIDATION_RISK" and final.emergency
        assert all(s.position_qty(SYM) == 0 for s in sims.values())
        assert not sims["sim-a"].state().get("liquidations"), "closed before the venue liquidated"
    finally:
        try:  # never leave a trade running on the shared dev server (the symbol would stay busy)
            await client.get_workflow_handle(wf_id).signal(TradeWorkflow.emergency_close, CloseRequest(reason="test end"))
        except Exception:  # noqa: BLE001 - already ended
            pass
        stop.set()
        await asyncio.wait_for(worker, 30)


async def _reduced(h, qty):
    """The reduction filled on both legs (not merely decided)."""
    st = await h.query(TradeWorkflow.status)
    long, short = st.leg("long").filled_qty, st.leg("short").filled_qty
    return st if st.reductions >= 1 and long == short < qty else None
