"""A trade held 8 venue days (issue 10): real dev server, two simulator processes over HTTP, real
ccxt, the real worker. The trade opens (long sim-a, short sim-b) and holds; then both venues'
clocks jump 8 days and a few minutes ahead (``clock_skew_ms``), so each settles the 24 funding
boundaries (8 h) it passed, and refuses our timestamps (-1021) until the gateway re-syncs. The
trade keeps holding, closes on request, and its realised PnL equals the venues' wallet change
to the cent, with every settlement counted: in the trade (read while holding, each venue's
settlement time judged on that venue's clock), and in the ledger with its 4 fills.

The skew is a whole simulator process's clock: this module starts its own two simulators."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from trade_harness import settings_for, start_sims, wait_for

from control.trades import open_trade
from ledger import Ledger
from messages.trade import CloseRequest, TradeStatus
from workers.worker import run_worker
from workflows.trade import TradeWorkflow

SYM = "S034/USDT:USDT"
VENUE_SYM = "S034USDT"
INTERVAL_S = 8 * 3600  # the simulators' funding interval, set explicitly
SKEW_MS = 8 * 24 * 3600 * 1000 + 3 * 60 * 1000  # 8 days and 3 minutes: 24 boundaries of 8 h
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    venues = start_sims(tmp_path_factory.mktemp("hold8d"), ["sim-a", "sim-b"],
                        ["--funding-interval", str(INTERVAL_S)])
    yield venues
    for s in venues.values():
        s.stop()


def funding_fees(sim) -> list[dict]:
    return [i for i in sim.state()["income"] if i["incomeType"] == "FUNDING_FEE" and i["symbol"] == VENUE_SYM]


def venue_mark(sim) -> Decimal:
    [row] = [r for r in sim.admin("/_sim/market") if r["symbol"] == SYM]
    return Decimal(row["mark_price"])


async def test_trade_held_8_venue_days(temporal_env, task_queue, sims):
    t_start = time.monotonic()
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.task_queue = task_queue
    a, b = sims["sim-a"], sims["sim-b"]
    wallets = {n: s.wallet() for n, s in sims.items()}  # before the open
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                            quiet=True, graceful_shutdown_timeout=2))
    wf_id = None
    try:
        wf_id = await open_trade(client, settings, SYM, "sim-a", "sim-b", Decimal("1000"))
        h = client.get_workflow_handle(wf_id, result_type=TradeStatus)

        async def status():
            return await h.query(TradeWorkflow.status)

        async def holding():
            st = await status()
            return st if st.state == "holding" else None

        await wait_for(holding, timeout=60, what="holding")

        async def looked():  # one monitor tick has read both venues' funding (their next settlement)
            st = await status()
            return st if st.spread_bps_8h is not None else None

        await wait_for(looked, timeout=30, what="a monitor tick before the jump")
        assert a.position_qty(SYM) > 0 > b.position_qty(SYM)
        before = {n: len(funding_fees(s)) for n, s in sims.items()}

        # both venues' clocks jump 8 days ahead: each settles every boundary it passed
        for s in sims.values():
            s.faults(clock_skew_ms=SKEW_MS)
        await wait_for(lambda: all(len(funding_fees(s)) - before[n] >= 24 for n, s in sims.items()),
                       timeout=15, what="24 settlements on each venue")
        # a new mark after the jump: a monitor tick that shows it has read both venues' positions
        # (signed: refused -1021 until the gateway re-synced its clock)
        marks = {n: (venue_mark(s) * Decimal("1.001")).quantize(Decimal("0.0001")) for n, s in sims.items()}
        for n, s in sims.items():
            s.market(SYM, price=marks[n])

        async def ticked():
            st = await status()
            seen = [leg.position.mark_price if leg.position else None for leg in st.legs]
            return st if seen == [marks["sim-a"], marks["sim-b"]] else None

        st = await wait_for(ticked, timeout=30, what="a monitor tick after the jump")
        assert st.state == "holding" and not st.emergency, st.events[-5:]

        # while holding, the trade reads its funding once a settlement passed on the venue's own clock
        def venue_total() -> Decimal:
            return sum((Decimal(r["income"]) for s in sims.values() for r in funding_fees(s)), Decimal(0))

        async def funded():
            st = await status()
            return st if st.state == "holding" and st.funding_collected_usd == venue_total() != 0 else None

        await wait_for(funded, timeout=30, what="the trade's funding read while holding")

        await h.signal(TradeWorkflow.close, CloseRequest(reason="held 8 venue days"))
        final = await asyncio.wait_for(h.result(), 60)
        assert final.state == "closed" and not final.emergency, final.events[-5:]
        assert a.position_qty(SYM) == 0 and b.position_qty(SYM) == 0

        # PnL: the venues' wallet change, to the cent
        change = sum((s.wallet() - wallets[n] for n, s in sims.items()), Decimal(0))
        assert final.realized_pnl_usd is not None
        assert final.realized_pnl_usd.quantize(CENT) == change.quantize(CENT), (final.realized_pnl_usd, change)

        # funding: every settlement the venues report for the symbol (>= 24 on each, 8 h apart)
        fees = {n: funding_fees(s) for n, s in sims.items()}
        for n, rows in fees.items():
            assert len(rows) >= 24, (n, len(rows))
            times = sorted(r["time"] for r in rows)
            assert times[-1] - times[0] >= 23 * INTERVAL_S * 1000
        venue_funding = {n: sum((Decimal(r["income"]) for r in rows), Decimal(0)) for n, rows in fees.items()}
        assert final.leg("long").funding == venue_funding["sim-a"]
        assert final.leg("short").funding == venue_funding["sim-b"]
        assert final.funding_collected_usd == sum(venue_funding.values())

        # the ledger: the 4 fills (open and close on each venue) and the same funding
        ledger = await asyncio.to_thread(Ledger.for_settings, settings)
        fills = await asyncio.to_thread(ledger.fills, final.trade_id)
        funding = await asyncio.to_thread(ledger.funding, final.trade_id)
        assert len(fills) == 4, fills
        assert {(f.venue, f.side) for f in fills} == {("sim-a", "buy"), ("sim-a", "sell"), ("sim-b", "sell"),
                                                      ("sim-b", "buy")}
        assert len(funding) == sum(len(rows) for rows in fees.values())
        assert sum((p.amount for p in funding), Decimal(0)) == final.funding_collected_usd
        print(f"8 venue days: {len(fees['sim-a'])}+{len(fees['sim-b'])} settlements, funding "
              f"{final.funding_collected_usd}, PnL {final.realized_pnl_usd} = wallets {change}; "
              f"{time.monotonic() - t_start:.1f}s")
    finally:
        if wf_id is not None:
            try:  # never leave a trade running on the shared dev server
                await client.get_workflow_handle(wf_id).signal(TradeWorkflow.emergency_close,
                                                               CloseRequest(reason="test end"))
            except Exception:  # noqa: BLE001 - already ended
                pass
        stop.set()
        await asyncio.wait_for(worker, 30)
