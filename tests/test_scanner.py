"""ScannerWorkflow end to end: real dev server, simulator processes, in-process worker."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections import Counter
from decimal import Decimal

import pytest
import pytest_asyncio
from scanner_harness import (
    pin_spread,
    scanner_params,
    start_scanner,
    start_worker_process,
    status,
    stop_worker_process,
    trades_for,
    worker_env,
)
from trade_harness import settings_for, start_sims, wait_for

from control.scanner import halt
from control.trades import TradeRefused, open_trade
from messages.trade import CloseRequest, TradeStatus
from workers.worker import run_worker


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scan-sims")
    venues = start_sims(tmp, ["sim-a", "sim-b", "sim-c"])
    yield venues
    for s in venues.values():
        s.stop()


@pytest.fixture(autouse=True)
def clear_faults(sims):
    yield
    for s in sims.values():
        s.faults()


@pytest_asyncio.fixture(scope="module")
async def scan(temporal_env, sims, tmp_path_factory):
    """ONE in-process worker for the module on its own task queue (each test uses its own
    symbols); its ledger lives in tmp so that incidents of other tests never gate it."""
    client = await temporal_env.client()
    settings = settings_for(sims)
    task_queue = f"test-scanner-{uuid.uuid4().hex[:8]}"
    settings.temporal.task_queue = task_queue
    settings.state_dir = tmp_path_factory.mktemp("scan-state")
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                          quiet=True, graceful_shutdown_timeout=2))
    try:
        yield client, settings, task_queue
    finally:
        await asyncio.gather(*_CLOSING, return_exceptions=True)
        _CLOSING.clear()
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)


_CLOSING: list[asyncio.Task] = []  # closes still running; the module's worker waits for them


async def _close_all(client, ids, wait: bool = False):
    """Signal ``close`` to every trade; wait for them to end now, or (default) in the background
    while the next test runs — the ``scan`` fixture waits for them before its worker stops."""
    for wf_id in ids:
        h = client.get_workflow_handle(wf_id, result_type=TradeStatus)
        with contextlib.suppress(Exception):
            await h.signal("close", CloseRequest(reason="test done"))

    async def one(wf_id):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.get_workflow_handle(wf_id, result_type=TradeStatus).result(), 60)

    task = asyncio.ensure_future(asyncio.gather(*(one(i) for i in ids)))
    if wait:
        await task
    else:
        _CLOSING.append(task)


async def test_exposure_and_daily_limits_hold(scan, sims):
    syms = ["S026/USDT:USDT", "S027/USDT:USDT", "S028/USDT:USDT"]
    for s in syms:
        pin_spread(sims, s, "sim-a", "sim-b")
    client, settings, task_queue = scan
    # first in the module: no other trade is open yet. One trade's notional per venue: the second and third must be refused EXPOSURE_LIMIT
    h = await start_scanner(client, task_queue, scanner_params(
        settings, syms, max_venue_notional_usd=Decimal("1000")))
    ids = []
    try:
        await wait_for(lambda: _has_reason(h, "EXPOSURE_LIMIT"), timeout=30, what="EXPOSURE_LIMIT")
        await asyncio.sleep(1)
        ids = [w.id for s in syms for w in await trades_for(client, s, task_queue)]
        assert len(ids) == 1, ids
        await h.terminate()
        # a fresh scanner allowed one trade a day: today's trade already used it
        h = await start_scanner(client, task_queue, scanner_params(settings, syms, max_trades_per_day=1))
        st = await wait_for(lambda: _has_reason(h, "DAILY_LIMIT"), timeout=30, what="DAILY_LIMIT")
        assert st.trades_started_total == 0
        assert len([w for s in syms for w in await trades_for(client, s, task_queue)]) == 1
    finally:
        await h.terminate()
        await _close_all(client, ids)


async def test_one_trade_per_opportunity_across_continue_as_new(scan, sims):
    sym = "S021/USDT:USDT"
    pin_spread(sims, sym, "sim-a", "sim-b")
    client, settings, task_queue = scan
    # continue-as-new after every cycle: the carried state and the deterministic id keep it to one
    h = await start_scanner(client, task_queue, scanner_params(settings, [sym], cycles_per_run=1))
    try:
        t = await wait_for(lambda: trades_for(client, sym, task_queue), timeout=30, what="a trade on the pinned spread")
        st = await wait_for(lambda: _cycles_at_least(h, 3), timeout=30, what="more cycles")
        trades = await trades_for(client, sym, task_queue)
        assert [w.id for w in trades] == [t[0].id], trades
        assert trades[0].id.startswith("trade-S021USDT-sim-a-sim-b-s")
        assert st.runs >= 3  # it did continue-as-new
        assert st.trades_started_total + sum(1 for x in st.trades_started if x.outcome == "existing") >= 1
        # the status carries the edge decomposition and the reason of the rejections
        assert st.counts_by_reason.get("SYMBOL_BUSY", 0) >= 1
        row = next(r for r in st.candidates if r.symbol == sym and r.long_venue == "sim-a"
                   and r.short_venue == "sim-b")
        e = row.edge
        assert e.gross_bps > 0 and e.fees_bps == Decimal("20") and e.net_bps == (
            e.gross_bps - e.fees_bps - e.slippage_bps - e.buffer_bps)
        assert st.api_calls_last_cycle >= 3  # one bulk funding call per venue (+ books when booked)
    finally:
        await h.terminate()
        await _close_all(client, [w.id for w in await trades_for(client, sym, task_queue)])


async def _cycles_at_least(h, n):
    st = await status(h)
    return st if st.cycles >= n else None


async def test_unhealthy_venue_skipped_then_back(scan, sims):
    sym = "S022/USDT:USDT"
    pin_spread(sims, sym, "sim-a", "sim-c", other_price="120")  # sim-b's pairs: PRICE_DIVERGENCE
    sims["sim-c"].faults(outage=True)
    client, settings, task_queue = scan
    h = await start_scanner(client, task_queue, scanner_params(
        settings, [sym], unhealthy_after_failures=2, unhealthy_cooldown_s=2))
    try:
        st = await wait_for(lambda: _venue_state(h, "sim-c", unhealthy=True), timeout=30, what="sim-c unhealthy")
        await wait_for(lambda: _has_reason(h, "VENUE_UNHEALTHY"), timeout=10, what="VENUE_UNHEALTHY counted")
        assert not await trades_for(client, sym, task_queue)
        sims["sim-c"].faults()
        st = await wait_for(lambda: _venue_state(h, "sim-c", unhealthy=False), timeout=30, what="sim-c back")
        assert st.venues["sim-c"].failures == 0
        t = await wait_for(lambda: trades_for(client, sym, task_queue), timeout=30, what="trade after recovery")
        assert t[0].id.startswith("trade-S022USDT-sim-a-sim-c-")
    finally:
        await h.terminate()
        await _close_all(client, [w.id for w in await trades_for(client, sym, task_queue)])


async def _venue_state(h, venue, unhealthy):
    st = await status(h)
    v = st.venues.get(venue)
    return st if v is not None and (v.unhealthy_until_ms is not None) == unhealthy and st.cycles > 0 else None


async def _has_reason(h, reason):
    st = await status(h)
    return st if st.counts_by_reason.get(reason, 0) > 0 else None


async def test_halt_stops_new_trades_and_close_all_flattens(scan, sims):
    a, b = "S023/USDT:USDT", "S024/USDT:USDT"
    pin_spread(sims, a, "sim-b", "sim-c")
    client, settings, task_queue = scan
    h = await start_scanner(client, task_queue, scanner_params(settings, [a, b]), wf_id="scanner")
    try:
        first = (await wait_for(lambda: trades_for(client, a, task_queue), timeout=30, what="trade on a"))[0].id
        await wait_for(lambda: _trade_state(client, first, "holding"), timeout=30, what="holding")
        await halt(client, settings, close_all=False, reason="test halt")
        pin_spread(sims, b, "sim-b", "sim-c")
        st = await wait_for(lambda: _has_reason(h, "HALTED"), timeout=15, what="HALTED rejections")
        assert st.halted
        with pytest.raises(TradeRefused, match="halted"):
            await open_trade(client, settings, "S025/USDT:USDT", "sim-a", "sim-b", Decimal("100"))
        await asyncio.sleep(1)
        assert not await trades_for(client, b, task_queue)
        # the open trade keeps running while halted; --close-all flattens it
        assert (await _trade_state(client, first, "holding")) is not None
        closed = await halt(client, settings, close_all=True, reason="test close-all")
        assert first in closed
        final = await asyncio.wait_for(client.get_workflow_handle(first, result_type=TradeStatus).result(), 60)
        assert final.state == "closed"
        for s in sims.values():
            assert s.position_qty(a) == 0
        await h.signal("unhalt")
        t = await wait_for(lambda: trades_for(client, b, task_queue), timeout=30, what="trade on b after resume")
        assert t
    finally:
        await h.terminate()
        await _close_all(client, [w.id for w in await trades_for(client, a, task_queue) + await trades_for(client, b, task_queue)])


async def _trade_state(client, wf_id, *states):
    st = await client.get_workflow_handle(wf_id).query("status", result_type=TradeStatus)
    return st if st.state in states else None


async def test_open_incident_blocks_opening(scan, sims):
    """While reconciliation has an unresolved incident in the ledger the scanner opens nothing
    (INCIDENT_OPEN); once it is resolved, trading resumes."""
    from ledger import Ledger

    sym = "S029/USDT:USDT"
    client, settings, task_queue = scan
    ledger = await asyncio.to_thread(Ledger.for_settings, settings)
    key = f"test-incident-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(ledger.record_incident, key, "orphan_position", "test", venue="sim-a", symbol=sym,
                            qty=Decimal("1"))
    pin_spread(sims, sym, "sim-a", "sim-c")
    h = await start_scanner(client, task_queue, scanner_params(settings, [sym]))
    try:
        st = await wait_for(lambda: _has_reason(h, "INCIDENT_OPEN"), timeout=30, what="INCIDENT_OPEN")
        assert st.open_incidents and st.open_incidents >= 1
        await wait_for(lambda: _cycles_at_least(h, st.cycles + 1), timeout=15, what="another cycle")
        assert not await trades_for(client, sym, task_queue)
        assert await asyncio.to_thread(ledger.resolve_incident, key, "test resolved")
        t = await wait_for(lambda: trades_for(client, sym, task_queue), timeout=30, what="trade once resolved")
        assert t[0].id.startswith("trade-S029USDT-sim-a-sim-c-")
    finally:
        await asyncio.to_thread(ledger.resolve_incident, key, "test done")
        await h.terminate()
        await _close_all(client, [w.id for w in await trades_for(client, sym, task_queue)])


async def test_worker_sigkill_mid_cycle_starts_one_trade_per_opportunity(temporal_env, sims, tmp_path):
    """The worker is a real `python -m hedgeflow worker` process, SIGKILLed while a cycle is in
    flight: the scanner has just started the trade (its start activity may not have reported
    back) and the trade's orders hang in the venues (latency fault). After a restart there is
    exactly one TradeWorkflow for the opportunity and one order per client id on the venues."""
    sym = "S019/USDT:USDT"
    client = await temporal_env.client()
    task_queue = f"test-scan-kill-{uuid.uuid4().hex[:8]}"
    settings = settings_for(sims)
    env = worker_env(sims, temporal_env.address, task_queue, tmp_path / "state")
    log = tmp_path / "worker.log"
    pin_spread(sims, sym, "sim-a", "sim-b")
    for name in ("sim-a", "sim-b"):
        sims[name].faults(latency_ms=800)  # funding, books and the trade's orders are all slow
    proc = start_worker_process(env, log)
    h = await start_scanner(client, task_queue, scanner_params(settings, [sym], cycles_per_run=2))
    try:
        first = await wait_for(lambda: trades_for(client, sym, task_queue), timeout=40, interval=0.05,
                               what="the scanner's first trade")
        proc.send_signal(signal.SIGKILL)  # mid-cycle: start reported or not, orders in flight
        proc.wait(10)
        await asyncio.sleep(1)  # in-flight orders land with nobody listening
        for s in sims.values():
            s.faults()
        proc = start_worker_process(env, log)
        trade = client.get_workflow_handle(first[0].id, result_type=TradeStatus)
        st = await wait_for(lambda: _trade_state_h(trade, "holding"), timeout=60, what="holding after restart")
        after = (await status(h)).cycles
        await wait_for(lambda: _cycles_at_least(h, after + 2), timeout=30, what="cycles after restart")
        trades = await trades_for(client, sym, task_queue)
        assert [w.id for w in trades] == [first[0].id], [w.id for w in trades]  # one per opportunity id
        assert trades[0].id.startswith("trade-S019USDT-sim-a-sim-b-s")
        scanned = await status(h)
        assert {t.trade_id for t in scanned.trades_started} == {first[0].id}
        for s, leg in zip((sims["sim-a"], sims["sim-b"]), st.legs, strict=True):
            mine = [o for o in s.orders() if o.get("unified_symbol") == sym or o.get("symbol") == "S019USDT"]
            counts = Counter(o["clientOrderId"] for o in mine)
            assert counts and all(c == 1 for c in counts.values()), counts
            assert set(counts) == set(leg.client_order_ids)
        assert sims["sim-a"].position_qty(sym) == st.target_qty
        assert sims["sim-b"].position_qty(sym) == -st.target_qty
    finally:
        for s in sims.values():
            s.faults()
        await h.terminate()
        # closing is tested elsewhere; ending the trade without code keeps this test short (its
        # positions stay on this module's simulators, which stop with it)
        for w in await trades_for(client, sym, task_queue):
            with contextlib.suppress(Exception):
                await client.get_workflow_handle(w.id).terminate("test done")
        stop_worker_process(proc)


async def _trade_state_h(handle, *states):
    st = await handle.query("status", result_type=TradeStatus)
    return st if st.state in states else None


async def test_started_trade_carries_the_chosen_style(scan, sims):
    """scanner.styles allows maker_first: with maker fees below taker fees it is the cheaper
    style, the candidate row shows it, and the trade the scanner starts has it in its input."""
    from messages.trade import TradeParams

    sym = "S030/USDT:USDT"
    pin_spread(sims, sym, "sim-a", "sim-b", other_price="120")  # sim-c's pairs: PRICE_DIVERGENCE
    client, settings, task_queue = scan
    h = await start_scanner(client, task_queue, scanner_params(settings, [sym], styles=["taker", "maker_first"]))
    try:
        t = await wait_for(lambda: trades_for(client, sym, task_queue), timeout=30, what="a trade on the pinned spread")
        started = (await client.get_workflow_handle(t[0].id).fetch_history()).events[0]
        payloads = started.workflow_execution_started_event_attributes.input.payloads
        (params,) = await client.data_converter.decode([payloads[0]], [TradeParams])
        assert params.style == "maker_first" and params.opened_by == "scanner"
        st = await wait_for(lambda: _started_shown(h, t[0].id), timeout=10, what="the start in the status")
        assert next(x for x in st.trades_started if x.trade_id == t[0].id).style == "maker_first"
        row = next(r for r in st.candidates if r.trade_id == t[0].id)
        e = row.edge
        assert e.style == "maker_first" and 0 < e.maker_fees_bps < e.fees_bps < Decimal("20")
    finally:
        await h.terminate()
        # the style's orders are tested elsewhere; ending the trade without code keeps this short
        for w in await trades_for(client, sym, task_queue):
            with contextlib.suppress(Exception):
                await client.get_workflow_handle(w.id).terminate("test done")


async def _started_shown(h, trade_id):
    st = await status(h)
    return st if any(t.trade_id == trade_id for t in st.trades_started) else None
