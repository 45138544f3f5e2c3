"""Helpers for scanner tests: a scanner started with explicit params, a spread pinned on sims."""

from __future__ import annotations

import uuid
from decimal import Decimal

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from messages.scanner import ScannerParams, ScannerStatus


def pin_spread(sims, symbol: str, long: str, short: str, low="-0.001", high="0.002", price="100",
               other_price: str | None = None) -> None:
    """Make ``short`` pay much more funding than ``long`` on ``symbol``; same mark on both (the
    other venues get ``other_price``, e.g. far off so that their pairs are rejected)."""
    for name, sim in sims.items():
        rate = low if name == long else high if name == short else "0.0001"
        p = price if name in (long, short) else (other_price or price)
        sim.market(symbol, price=p, funding_rate=rate)


def scanner_params(settings, symbols: list[str], **kw) -> ScannerParams:
    base = ScannerParams.from_settings(settings).model_copy(update=dict(
        cycle_s=0.5, horizon_h=Decimal("24"), min_settlement_lead_s=0, stale_after_s=30,
        max_open_trades=100, max_venue_notional_usd=Decimal("1000000"), max_total_notional_usd=Decimal("1000000"),
        max_trades_per_day=1000, symbol_cooldown_s=3600, symbols=symbols, notional_usd=Decimal("1000"),
    ))
    return base.model_copy(update=kw)


async def start_scanner(client: Client, task_queue: str, params: ScannerParams, wf_id: str | None = None):
    wf_id = wf_id or f"scanner-test-{uuid.uuid4().hex[:8]}"
    return await client.start_workflow(
        "ScannerWorkflow", args=[params, None], id=wf_id, task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
    )


async def status(handle) -> ScannerStatus:
    return await handle.query("status", result_type=ScannerStatus)


async def trades_for(client: Client, symbol: str, task_queue: str) -> list:
    q = f"WorkflowType = 'TradeWorkflow' AND Symbol = '{symbol}' AND TaskQueue = '{task_queue}'"
    return [w async for w in client.list_workflows(q)]


# --- a worker as its own process (`python -m hedgeflow worker`), as in tests/test_trade_crash.py
def worker_env(sims, address: str, task_queue: str, state_dir, **extra: str) -> dict[str, str]:
    import json
    import os

    from trade_harness import TEST_API_KEY, TEST_API_SECRET, TEST_VENUE_RPS

    venues = [{"name": s.name, "kind": "sim", "base_url": s.url, "requests_per_second": TEST_VENUE_RPS}
              for s in sims.values()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")}
    env.update(
        TEMPORAL_ADDRESS=address,
        HEDGEFLOW__VENUES=json.dumps(venues),
        HEDGEFLOW__METRICS_PORT="0",
        HEDGEFLOW__STATE_DIR=str(state_dir),  # its own ledger: incidents of other tests do not gate it
        HEDGEFLOW__TEMPORAL__TASK_QUEUE=task_queue,
        HEDGEFLOW__TRADE__MONITOR_INTERVAL_S="0.5",
        HEDGEFLOW__TRADE__VERIFY_TIMEOUT_S="5",
        HEDGEFLOW__TRADE__EXIT_SPREAD_BPS="-1000000",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    for s in sims.values():
        prefix = f"HEDGEFLOW_VENUE_{s.name.upper().replace('-', '_')}"
        env[f"{prefix}_API_KEY"] = TEST_API_KEY
        env[f"{prefix}_API_SECRET"] = TEST_API_SECRET
    return env


def start_worker_process(env: dict[str, str], log):
    """``hedgeflow worker`` as a child (a ``workers.proc.Child``), once it logged "worker ready"."""
    import sys

    from trade_harness import ROOT

    from workers.proc import Child, ChildExited, ChildNotReady

    proc = Child([sys.executable, "-m", "hedgeflow", "worker"], name="worker", cwd=ROOT, env=env,
                 log_file=log).spawn()
    try:
        return proc.wait_ready(log_line="worker ready", timeout=60)
    except ChildExited:
        raise RuntimeError(f"worker exited: {log.read_text()[-3000:]}") from None
    except ChildNotReady:
        proc.kill()
        raise RuntimeError(f"worker not ready: {log.read_text()[-3000:]}") from None


def stop_worker_process(proc) -> None:
    """SIGTERM, SIGKILL after 20 s."""
    proc.stop(20)
