"""Notifications never gate trading (real dev server, simulators over HTTP, real ccxt, the real
worker): with ``alerts.webhook_url`` pointing at a port that refuses connections, a trade
opens to ``holding`` and an emergency close is flat as fast as with no webhook at all."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from trade_harness import settings_for, start_sims, wait_for

from control.trades import open_trade
from messages.trade import CloseRequest, TradeStatus
from workers.proc import free_port
from workers.worker import run_worker
from workflows.trade import TradeWorkflow


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    venues = start_sims(tmp_path_factory.mktemp("sims"), ["sim-a", "sim-b"])
    yield venues
    for s in venues.values():
        s.stop()


async def _round_trip(temporal_env, task_queue, sims, symbol: str, webhook: str | None) -> tuple[float, float]:
    """Seconds from start to holding, and from emergency close to both venues flat."""
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.task_queue = task_queue
    if webhook:
        from pydantic import SecretStr

        settings.alerts.webhook_url = SecretStr(webhook)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                            quiet=True, graceful_shutdown_timeout=2))
    try:
        t0 = time.monotonic()
        wf_id = await open_trade(client, settings, symbol, "sim-a", "sim-b", Decimal("1000"))
        h = client.get_workflow_handle(wf_id, result_type=TradeStatus)

        async def holding():
            return (await h.query(TradeWorkflow.status)).state == "holding"

        await wait_for(holding, timeout=60, interval=0.05, what="holding")
        opened = time.monotonic() - t0
        t1 = time.monotonic()
        await h.signal(TradeWorkflow.emergency_close, CloseRequest(reason="test"))
        await wait_for(lambda: all(s.position_qty(symbol) == 0 for s in sims.values()), timeout=60,
                       interval=0.05, what="flat")
        flat = time.monotonic() - t1
        await h.result()
        return opened, flat
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


async def test_dead_webhook_does_not_slow_trading(temporal_env, task_queue, sims):
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: connections are refused
    base_open, base_flat = await _round_trip(temporal_env, task_queue + "-a", sims, "S036/USDT:USDT", None)
    dead_open, dead_flat = await _round_trip(temporal_env, task_queue + "-b", sims, "S037/USDT:USDT", dead)
    print(f"open→holding {base_open:.2f}s vs {dead_open:.2f}s; emergency→flat {base_flat:.2f}s vs {dead_flat:.2f}s")
    # "as fast": within a few seconds of the run without a webhook, far below one alert's
    # retry budget (20 attempts, minutes)
    assert dead_open < base_open + 3 and dead_flat < base_flat + 3
