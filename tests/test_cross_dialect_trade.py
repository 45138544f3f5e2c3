"""Trades across two wire dialects (issue 11), each venue reached by its own unmodified ccxt class
over HTTP: real dev server, two simulator processes per pair, the real worker. Open → hold → a
funding settlement on both venues → cancel → flat; the realised PnL equals the two simulators'
wallet change to the cent, every settlement counted once.

* Binance long / Bybit short, same symbol (Bybit reports a settlement as a positive fee when
  paid, Binance as negative income).
* OKX long (sizes in contracts of ctVal) / Hyperliquid short (coins to its szDecimals, a
  USDC-margined perpetual): one symbol above the gateway, the USDT-margined ``S039/USDT:USDT``,
  which Hyperliquid's ``S039/USDC:USDC`` answers to (:mod:`venues.symbols`), with USDC configured
  at 0.9990 USD (``settle_usd_rate``): the PnL in USD is the wallets' change at each venue's rate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
from temporalio.client import WorkflowExecutionStatus
from trade_harness import settings_for, start_sims, wait_for

from control.trades import open_trade
from domain.ids import client_order_id
from messages.trade import CloseRequest, TradeStatus
from venues.gateway import Gateway
from workers.worker import run_worker
from workflows.trade import TradeWorkflow

CENT = Decimal("0.01")


def _pair(tmp_path_factory, tag: str, dialects: dict[str, str]):
    venues = start_sims(tmp_path_factory.mktemp(tag), list(dialects), ["--symbols", "45"], dialects=dialects)
    yield venues
    for s in venues.values():
        s.stop()


@pytest.fixture(scope="module")
def binance_bybit(tmp_path_factory):
    yield from _pair(tmp_path_factory, "xdialect", {"sim-a": "binance", "sim-b": "bybit"})


@pytest.fixture(scope="module")
def okx_hyperliquid(tmp_path_factory):
    yield from _pair(tmp_path_factory, "xdialect-okx-hl", {"sim-c": "okx", "sim-d": "hyperliquid"})


async def trade_open_hold_cancel(temporal_env, task_queue, sims, sym: str,
                                 while_holding: Callable[[object, TradeStatus], Awaitable[None]] | None = None,
                                 usd_rates: dict[str, Decimal] | None = None, **overrides) -> TradeStatus:
    """Long on the first venue of ``sims``, short on the second; returns the final status after
    the checks every pair shares (flat, Canceled, PnL = wallets to the cent at each venue's
    ``settle_usd_rate``, funding counted)."""
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.task_queue = task_queue
    rates = {n: Decimal(1) for n in sims} | (usd_rates or {})
    for n, rate in rates.items():
        settings.venue(n).settle_usd_rate = rate
    (ln, long_sim), (sn, short_sim) = sims.items()
    for s in sims.values():
        assert s.state()["dialect"] == s.dialect
    wallets = {n: s.wallet() for n, s in sims.items()}
    stop = asyncio.Event()
    ready = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                            quiet=True, graceful_shutdown_timeout=2, on_ready=lambda w: ready.set()))
    wf_id = None
    try:
        await asyncio.wait_for(ready.wait(), 60)  # polling: a trade started now runs its first task here
        wf_id = await open_trade(client, settings, sym, ln, sn, Decimal("1000"), **overrides)
        h = client.get_workflow_handle(wf_id)

        async def holding():
            st = await h.query(TradeWorkflow.status)
            assert st.state not in ("aborted", "closed"), st.events[-6:]
            return st if st.state == "holding" else None

        st = await wait_for(holding, timeout=60, what="holding")
        assert long_sim.position_qty(sym) == st.target_qty == -short_sim.position_qty(sym) > 0
        if while_holding is not None:
            await while_holding(settings, st)
        for s in sims.values():  # one funding settlement on each venue while the pair is held
            s.admin("/_sim/settle", {})
        await h.cancel()

        async def ended():
            desc = await h.describe()
            return desc if desc.status != WorkflowExecutionStatus.RUNNING else None

        desc = await wait_for(ended, timeout=60, what="the trade to end")
        assert desc.status == WorkflowExecutionStatus.CANCELED
        final = await h.query(TradeWorkflow.status)
        assert final.state == "closed" and long_sim.position_qty(sym) == 0 == short_sim.position_qty(sym), \
            final.events[-6:]
        change = sum(((s.wallet() - wallets[n]) * rates[n] for n, s in sims.items()), Decimal(0))
        assert final.realized_pnl_usd is not None
        assert final.realized_pnl_usd.quantize(CENT) == change.quantize(CENT), (final.realized_pnl_usd, change)
        assert final.funding_collected_usd != 0  # both settlements were counted
        print(f"{long_sim.dialect} long / {short_sim.dialect} short: PnL {final.realized_pnl_usd} = wallets {change}, "
              f"funding {final.funding_collected_usd}")
        return final
    finally:
        if wf_id is not None:
            try:  # never leave a trade running on the shared dev server
                await client.get_workflow_handle(wf_id).signal(TradeWorkflow.emergency_close,
                                                               CloseRequest(reason="test end"))
            except Exception:  # noqa: BLE001 - already ended
                pass
        stop.set()
        await asyncio.wait_for(worker, 30)


async def test_binance_long_bybit_short_open_hold_cancel_flat(temporal_env, task_queue, binance_bybit):
    await trade_open_hold_cancel(temporal_env, task_queue, binance_bybit, "S038/USDT:USDT")


async def test_okx_long_hyperliquid_short_open_hold_cancel_flat(temporal_env, task_queue, okx_hyperliquid):
    sym = "S039/USDT:USDT"

    async def equal_in_base_units(settings, st: TradeStatus) -> None:
        """OKX contracts × ctVal = the Hyperliquid size = target, as each venue's ccxt reads them,
        and both gateways report the position, the market and its funding under our one name."""
        okx, hl = Gateway(settings.venue("sim-c")), Gateway(settings.venue("sim-d"))
        try:
            (o,) = await okx.exchange.fetch_positions([sym])
            (h,) = await hl.exchange.fetch_positions(["S039/USDC:USDC"])  # the venue's own name
            assert [p.symbol for p in await hl.positions()] == [sym] == [p.symbol for p in await okx.positions()]
            assert sym in await hl.markets() and sym in await hl.funding_rates()
        finally:
            await okx.close()
            await hl.close()
        contracts, ct_val = Decimal(str(o["contracts"])), Decimal(str(o["contractSize"]))
        hl_size = Decimal(str(h["contracts"])) * (1 if h["side"] == "long" else -1)
        assert contracts * ct_val == st.target_qty == -hl_size, (contracts, ct_val, hl_size)

    # USDC at 0.9990 USD: the Hyperliquid leg's fees, funding and PnL are converted at that rate
    final = await trade_open_hold_cancel(temporal_env, task_queue, okx_hyperliquid, sym, equal_in_base_units,
                                         usd_rates={"sim-d": Decimal("0.9990")})
    hl_leg = next(leg for leg in final.legs if leg.venue == "sim-d")
    assert hl_leg.realized_pnl != 0 and final.realized_pnl_usd != sum(leg.realized_pnl for leg in final.legs)


async def test_maker_first_binance_long_bybit_short_quotes_hedges_and_closes_to_the_cent(
        temporal_env, task_queue, binance_bybit, caplog):
    """Issue 15 through the real workflow, worker and both dialects' ccxt: Bybit's taker fee is the
    costlier (0.055 %), so its short quotes post-only and each maker fill is hedged on Binance by
    taker; the cancel's graceful close quotes again. PnL = both wallets' change to the cent."""
    sym = "S040/USDT:USDT"
    caplog.set_level(logging.INFO, logger="hedgeflow.control")
    final = await trade_open_hold_cancel(temporal_env, task_queue, binance_bybit, sym, style="maker_first",
                                         taker_fees={"sim-a": Decimal("0.0005"), "sim-b": Decimal("0.00055")},
                                         maker_window_s=2)
    short = next(leg for leg in final.legs if leg.venue == "sim-b")
    assert any("hfSq0n" in c for c in short.client_order_ids), short.client_order_ids  # quoted post-only
    assert any("maker unit 0:" in e.what for e in final.events)
    # the worker runs on the client that started the trade: its first task ran there, eagerly (issue 12)
    assert any("eagerly" in r.getMessage() for r in caplog.records if r.name == "hedgeflow.control")



async def test_sliced_with_a_piece_refused_flattens_it_and_closes_the_rest_hedged(temporal_env, task_queue,
                                                                                  binance_bybit):
    """Issue 15, against the simulators: a sliced entry (4 pieces) whose second piece is refused on
    Bybit. That piece's Binance leg is flattened in its own step, the first piece (hedged) closes as a
    pair, the trade ends aborted (leg_failed), both venues flat, no client id executed twice."""
    sym = "S041/USDT:USDT"
    sims = binance_bybit
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.task_queue = task_queue
    a, b = sims["sim-a"], sims["sim-b"]
    stop, ready = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                            quiet=True, graceful_shutdown_timeout=2, on_ready=lambda w: ready.set()))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        wf_id = await open_trade(client, settings, sym, "sim-a", "sim-b", Decimal("1000"), style="sliced",
                                 slices=4, slice_interval_s=0.8)
        h = client.get_workflow_handle(wf_id, result_type=TradeStatus)
        await wait_for(lambda: a.position_qty(sym) > 0, timeout=30, what="the first piece")
        b.admin("/_sim/faults", {"reject_orders": 1})  # the next piece's Bybit leg is refused
        final = await asyncio.wait_for(h.result(), 60)
        assert final.state == "aborted" and final.abort_reason and "leg_failed" in final.abort_reason.lower(), \
            final.events[-8:]
        assert a.position_qty(sym) == 0 == b.position_qty(sym)
        assert any("piece 2 of 4 failed" in e.what for e in final.events), [e.what for e in final.events]
        for s in (a, b):
            executed = [o["clientOrderId"] for o in s.orders() if Decimal(str(o["executedQty"])) > 0]
            assert len(executed) == len(set(executed)), executed
        assert client_order_id(final.trade_id, "long", "lfp1") in final.leg("long").client_order_ids  # the lone piece's flatten id
    finally:
        b.admin("/_sim/faults", {})
        stop.set()
        await asyncio.wait_for(worker, 30)
