"""A trade across OKX contracts and Hyperliquid size decimals (issue 11): long on an OKX-dialect
simulator (sizes in contracts of ctVal), short on a Hyperliquid-dialect one (sizes in coins to its
szDecimals, a USDC-margined perpetual), one symbol above the gateway: the USDT-margined
``S039/USDT:USDT``, which Hyperliquid's ``S039/USDC:USDC`` answers to (:mod:`venues.symbols`).
Real dev server, two simulator processes, the real worker, each venue reached by its own unmodified
ccxt class. Open → hold → a funding settlement on both venues → cancel → flat; the realised PnL
equals the two simulators' wallet change to the cent (USDC taken 1:1 as USD)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from temporalio.client import WorkflowExecutionStatus
from trade_harness import settings_for, start_sims, wait_for

from control.trades import open_trade
from messages.trade import CloseRequest
from venues.gateway import Gateway
from workers.worker import run_worker
from workflows.trade import TradeWorkflow

SYM = "S039/USDT:USDT"
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    venues = start_sims(tmp_path_factory.mktemp("xdialect-okx-hl"), ["sim-c", "sim-d"], ["--symbols", "45"],
                        dialects={"sim-c": "okx", "sim-d": "hyperliquid"})
    yield venues
    for s in venues.values():
        s.stop()


async def wire_sizes(settings) -> tuple[Decimal, Decimal, Decimal]:
    """(OKX contracts, OKX ctVal, Hyperliquid size) of the held pair, as each venue's ccxt reads
    them, and the gateways' own positions, under our one name."""
    okx, hl = Gateway(settings.venue("sim-c")), Gateway(settings.venue("sim-d"))
    try:
        (o,) = await okx.exchange.fetch_positions([SYM])
        (h,) = await hl.exchange.fetch_positions(["S039/USDC:USDC"])  # the venue's own name
        assert [p.symbol for p in await hl.positions()] == [SYM] == [p.symbol for p in await okx.positions()]
        assert SYM in await hl.markets() and SYM in await hl.funding_rates()
        return (Decimal(str(o["contracts"])), Decimal(str(o["contractSize"])),
                Decimal(str(h["contracts"])) * (1 if h["side"] == "long" else -1))
    finally:
        await okx.close()
        await hl.close()


async def test_okx_long_hyperliquid_short_open_hold_cancel_flat(temporal_env, task_queue, sims):
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.task_queue = task_queue
    c, d = sims["sim-c"], sims["sim-d"]
    assert c.state()["dialect"] == "okx" and d.state()["dialect"] == "hyperliquid"
    wallets = {n: s.wallet() for n, s in sims.items()}
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                            quiet=True, graceful_shutdown_timeout=2))
    wf_id = None
    try:
        wf_id = await open_trade(client, settings, SYM, "sim-c", "sim-d", Decimal("1000"))
        h = client.get_workflow_handle(wf_id)

        async def holding():
            st = await h.query(TradeWorkflow.status)
            assert st.state not in ("aborted", "closed"), st.events[-6:]
            return st if st.state == "holding" else None

        st = await wait_for(holding, timeout=60, what="holding")
        assert c.position_qty(SYM) == st.target_qty == -d.position_qty(SYM) > 0
        contracts, ct_val, hl_size = await wire_sizes(settings)
        assert contracts * ct_val == st.target_qty == -hl_size, (contracts, ct_val, hl_size)  # equal in base units
        for s in sims.values():  # one funding settlement on each venue while the pair is held
            s.admin("/_sim/settle", {})
        await h.cancel()

        async def ended():
            desc = await h.describe()
            return desc if desc.status != WorkflowExecutionStatus.RUNNING else None

        desc = await wait_for(ended, timeout=60, what="the trade to end")
        assert desc.status == WorkflowExecutionStatus.CANCELED
        final = await h.query(TradeWorkflow.status)
        assert final.state == "closed" and c.position_qty(SYM) == 0 == d.position_qty(SYM), final.events[-6:]
        change = sum((s.wallet() - wallets[n] for n, s in sims.items()), Decimal(0))
        assert final.realized_pnl_usd is not None
        assert final.realized_pnl_usd.quantize(CENT) == change.quantize(CENT), (final.realized_pnl_usd, change)
        assert final.funding_collected_usd != 0  # both settlements were counted
        print(f"okx long / hyperliquid short: PnL {final.realized_pnl_usd} = wallets {change}, "
              f"funding {final.funding_collected_usd}, {contracts} contracts x {ct_val} = {-hl_size}")
    finally:
        if wf_id is not None:
            try:
                await client.get_workflow_handle(wf_id).signal(TradeWorkflow.emergency_close,
                                                               CloseRequest(reason="test end"))
            except Exception:  # noqa: BLE001 - already ended
                pass
        stop.set()
        await asyncio.wait_for(worker, 30)
