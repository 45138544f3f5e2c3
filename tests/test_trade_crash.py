"""Crash tests with real processes: a worker killed with SIGKILL mid-order, the dev server
stopped and restarted mid-hold. Nothing is mocked: the worker is `hedgeflow worker` in its own
process, the venues are simulator processes, Temporal is the dev server binary."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from trade_harness import (
    ROOT,
    TEST_API_KEY,
    TEST_API_SECRET,
    TEST_VENUE_RPS,
    settings_for,
    start_sims,
    wait_for,
)

from control.trades import open_trade
from messages.trade import CloseRequest, TradeStatus
from workers.client import connect
from workers.devserver import DevServer
from workers.proc import Child, free_ports
from workers.worker import run_worker


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash-sims")
    venues = start_sims(tmp, ["sim-a", "sim-b"])
    yield venues
    for s in venues.values():
        s.stop()


def _worker_env(sims, address: str, task_queue: str) -> dict[str, str]:
    venues = [{"name": s.name, "kind": "sim", "base_url": s.url, "requests_per_second": TEST_VENUE_RPS}
              for s in sims.values()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")}
    env.update(
        TEMPORAL_ADDRESS=address,
        HEDGEFLOW__VENUES=json.dumps(venues),
        HEDGEFLOW__METRICS_PORT="0",
        HEDGEFLOW__TEMPORAL__TASK_QUEUE=task_queue,
        PYTHONUNBUFFERED="1",
    )
    for s in sims.values():  # credentials reach the worker through its environment only
        prefix = f"HEDGEFLOW_VENUE_{s.name.upper().replace('-', '_')}"
        env[f"{prefix}_API_KEY"] = TEST_API_KEY
        env[f"{prefix}_API_SECRET"] = TEST_API_SECRET
    return env


def _start_worker(env: dict[str, str], log: Path) -> Child:
    worker = Child([sys.executable, "-m", "hedgeflow", "worker"], name="worker", cwd=ROOT, env=env, log_file=log)
    return worker.spawn().wait_ready(log_line="worker ready", timeout=60)


async def test_worker_sigkill_mid_order_completes_without_duplicates(temporal_env, task_queue, sims, tmp_path):
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.task_queue = task_queue
    env = _worker_env(sims, temporal_env.address, task_queue)
    log = tmp_path / "worker.log"
    worker = _start_worker(env, log)
    sym = "S030/USDT:USDT"
    try:
        sims["sim-a"].faults(latency_ms=2500)  # the long leg's order hangs in flight
        wf_id = await open_trade(client, settings, sym, "sim-a", "sim-b", Decimal("1000"))
        handle = client.get_workflow_handle(wf_id, result_type=TradeStatus)
        await wait_for(lambda: sims["sim-b"].orders() and sims["sim-b"].position_qty(sym) != 0, timeout=20,
                       what="short leg filled while the long leg is in flight")
        worker.kill()
        await asyncio.sleep(3)  # the in-flight order lands on the venue with nobody listening
        sims["sim-a"].faults()
        worker = _start_worker(env, log)
        st = await wait_for(lambda: _state(handle, "holding"), timeout=60, what="holding after restart")
        for s, leg in zip(sims.values(), st.legs, strict=True):
            counts = Counter(o["clientOrderId"] for o in s.orders(leg.client_order_ids))
            assert counts and all(c == 1 for c in counts.values()), counts
        assert sims["sim-a"].position_qty(sym) == st.target_qty
        assert sims["sim-b"].position_qty(sym) == -st.target_qty
        await handle.signal("close", CloseRequest(reason="done"))
        final = await handle.result()
        assert final.state == "closed"
        assert sims["sim-a"].position_qty(sym) == 0 and sims["sim-b"].position_qty(sym) == 0
    finally:
        sims["sim-a"].faults()
        worker.stop(20)
    # the API secret never reaches a log line of the worker, nor the workflow history
    text = log.read_text(errors="replace")
    assert TEST_API_SECRET not in text
    history = await handle.fetch_history()
    assert TEST_API_SECRET not in history.to_json()


async def _state(handle, *states: str) -> TradeStatus | None:
    st = await handle.query("status", result_type=TradeStatus)
    return st if st.state in states else None


async def test_dev_server_restart_mid_hold(sims, tmp_path):
    port, ui_port = free_ports(2)
    server = DevServer(port=port, ui_port=ui_port, db_file=tmp_path / "temporal.sqlite",
                       log_file=tmp_path / "devserver.log")
    await server.astart(timeout_s=60)
    settings = settings_for(sims)
    settings.temporal.address = server.address
    client = await connect(server.address, "default")
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, stop_event=stop, quiet=True,
                                            graceful_shutdown_timeout=2))
    sym = "S031/USDT:USDT"
    try:
        wf_id = await open_trade(client, settings, sym, "sim-a", "sim-b", Decimal("1000"))
        handle = client.get_workflow_handle(wf_id, result_type=TradeStatus)
        await wait_for(lambda: _state(handle, "holding"), timeout=30, what="holding")
        await server.astop(timeout_s=10)
        await asyncio.sleep(2)
        await server.astart(timeout_s=60)
        # the trade is still there and still holding; the worker picks it up again
        st = await wait_for(lambda: _state_safe(handle, "holding"), timeout=60, what="holding after restart")
        assert st.runs >= 1
        await handle.signal("close", CloseRequest(reason="after restart"))
        final = await asyncio.wait_for(handle.result(), 60)
        assert final.state == "closed"
        assert sims["sim-a"].position_qty(sym) == 0 and sims["sim-b"].position_qty(sym) == 0
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(worker, return_exceptions=True), 30)
        await server.astop(timeout_s=10)


async def _state_safe(handle, *states: str) -> TradeStatus | None:
    try:
        return await _state(handle, *states)
    except Exception:  # the server is still coming back
        return None
