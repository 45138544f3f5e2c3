"""A trade across two wire dialects (issue 11): long on a Binance-dialect simulator, short on a
Bybit-dialect one, same symbol, each reached by its own unmodified ccxt class over HTTP. Real dev
server, two simulator processes, the real worker. Open → hold → a funding settlement on both
venues → cancel → flat; the realised PnL equals the two simulators' wallet change to the cent,
with the funding each venue paid or credited counted once (Bybit reports a settlement as a
positive fee when paid, Binance as negative income)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from temporalio.client import WorkflowExecutionStatus
from trade_harness import settings_for, start_sims, wait_for

from control.trades import open_trade
from messages.trade import CloseRequest
from workers.worker import run_worker
from workflows.trade import TradeWorkflow

SYM = "S038/USDT:USDT"
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    venues = start_sims(tmp_path_factory.mktemp("xdialect"), ["sim-a", "sim-b"], ["--symbols", "45"],
                        dialects={"sim-b": "bybit"})
    yield venues
    for s in venues.values():
        s.stop()


async def test_binance_long_bybit_short_open_hold_cancel_flat(temporal_env, task_queue, sims):
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.task_queue = task_queue
    a, b = sims["sim-a"], sims["sim-b"]
    assert b.state()["dialect"] == "bybit"
    wallets = {n: s.wallet() for n, s in sims.items()}
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                            quiet=True, graceful_shutdown_timeout=2))
    wf_id = None
    try:
        wf_id = await open_trade(client, settings, SYM, "sim-a", "sim-b", Decimal("1000"))
        h = client.get_workflow_handle(wf_id)

        async def holding():
            st = await h.query(TradeWorkflow.status)
            assert st.state not in ("aborted", "closed"), st.events[-6:]
            return st if st.state == "holding" else None

        st = await wait_for(holding, timeout=60, what="holding")
        assert a.position_qty(SYM) == st.target_qty == -b.position_qty(SYM) > 0
        for s in sims.values():  # one funding settlement on each venue while the pair is held
            s.admin("/_sim/settle", {})
        await h.cancel()

        async def ended():
            d = await h.describe()
            return d if d.status != WorkflowExecutionStatus.RUNNING else None

        d = await wait_for(ended, timeout=60, what="the trade to end")
        assert d.status == WorkflowExecutionStatus.CANCELED
        final = await h.query(TradeWorkflow.status)
        assert final.state == "closed" and a.position_qty(SYM) == 0 == b.position_qty(SYM), final.events[-6:]
        change = sum((s.wallet() - wallets[n] for n, s in sims.items()), Decimal(0))
        assert final.realized_pnl_usd is not None
        assert final.realized_pnl_usd.quantize(CENT) == change.quantize(CENT), (final.realized_pnl_usd, change)
        assert final.funding_collected_usd != 0  # both settlements were counted
        print(f"binance long / bybit short: PnL {final.realized_pnl_usd} = wallets {change}, "
              f"funding {final.funding_collected_usd}")
    finally:
        if wf_id is not None:
            try:
                await client.get_workflow_handle(wf_id).signal(TradeWorkflow.emergency_close,
                                                               CloseRequest(reason="test end"))
            except Exception:  # noqa: BLE001 - already ended
                pass
        stop.set()
        await asyncio.wait_for(worker, 30)
