"""Operations end to end: ledger written by the trade workflow's activities (PostgreSQL when
reachable, else SQLite), PnL equal to the simulators' balance change to the cent, the worker's
metrics endpoint, alerts at a webhook, and reconciliation of an orphan left by a terminated
trade (``hedgeflow reconcile`` and ``ReconcileWorkflow``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest
import pytest_asyncio
from ops_helpers import WebhookReceiver, eventually, fresh_pg_database, pg_admin_url, sample, scrape
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment
from trade_harness import (
    ROOT,
    TEST_API_KEY,
    TEST_API_SECRET,
    TEST_VENUE_RPS,
    settings_for,
    start_sims,
    wait_for,
)

from activities.ledger import LedgerActivities
from control.trades import open_trade
from ledger import Ledger
from messages.trade import CloseRequest, ReconcileParams, TradeRecord, TradeStatus
from venues.pool import GatewayPool
from workers.proc import free_port
from workers.worker import run_worker
from workflows.reconcile import ReconcileWorkflow

CENT = Decimal("0.01")
_syms = itertools.count(1)


def sym() -> str:
    return f"S{30 + next(_syms):03d}/USDT:USDT"  # the test sims list S001..S040


@pytest.fixture(scope="module")
def ledger_url(tmp_path_factory):
    admin, _reason = pg_admin_url()
    if admin is None:
        yield f"sqlite:///{tmp_path_factory.mktemp('ledger')}/ledger.sqlite"
        return
    with fresh_pg_database(admin) as url:
        yield url


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    venues = start_sims(tmp_path_factory.mktemp("ops-sims"), ["sim-a", "sim-b"])
    yield venues
    for s in venues.values():
        s.stop()


class Ops:
    def __init__(self, client, settings, sims, hook, metrics_port, ledger):
        self.client, self.settings, self.sims, self.hook = client, settings, sims, hook
        self.metrics_port, self.ledger = metrics_port, ledger

    async def open(self, symbol: str, notional: str = "1000"):
        wf_id = await open_trade(self.client, self.settings, symbol, "sim-a", "sim-b", Decimal(notional))
        return self.client.get_workflow_handle(wf_id, result_type=TradeStatus)

    async def holding(self, h):
        async def check():
            st = await h.query("status", result_type=TradeStatus)
            return st if st.state == "holding" else None

        return await wait_for(check, timeout=40, what="holding")

    def cli_env(self) -> dict[str, str]:
        venues = [{"name": s.name, "kind": "sim", "base_url": s.url, "requests_per_second": TEST_VENUE_RPS, "api_key": TEST_API_KEY,
                   "api_secret": TEST_API_SECRET} for s in self.sims.values()]
        return {**os.environ, "HEDGEFLOW__VENUES": json.dumps(venues), "HEDGEFLOW__METRICS_PORT": "0",
                "TEMPORAL_ADDRESS": self.settings.temporal.address,
                "HEDGEFLOW__TEMPORAL__TASK_QUEUE": self.settings.temporal.task_queue,
                "HEDGEFLOW__LEDGER__URL": self.settings.ledger_url(),
                "HEDGEFLOW__ALERTS__WEBHOOK_URL": self.hook.url, "HEDGEFLOW_CONFIG": ""}

    async def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "hedgeflow", *args], cwd=ROOT, env=self.cli_env(),
            input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=60,
        )


@pytest_asyncio.fixture(scope="module")
async def ops(temporal_env, sims, ledger_url):
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.address = temporal_env.address
    settings.temporal.task_queue = "ops-" + os.urandom(4).hex()
    settings.metrics_port = free_port()
    settings.ledger.url = SecretStr(ledger_url)
    hook = WebhookReceiver()
    await hook.start()
    settings.alerts.webhook_url = SecretStr(hook.url)
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop_event=stop, quiet=True, graceful_shutdown_timeout=2,
                                          on_ready=lambda w: ready.set()))
    await asyncio.wait_for(ready.wait(), 30)
    yield Ops(client, settings, sims, hook, settings.metrics_port, Ledger.for_settings(settings))
    stop.set()
    await asyncio.wait_for(task, 30)
    await hook.stop()


async def test_pnl_equals_simulator_balance_change_and_metrics_move(ops: Ops):
    before_text = scrape(ops.metrics_port)
    assert "temporal_" in before_text, "the Temporal SDK's own metrics are served on the same endpoint"
    opened_before = sample(before_text, "hedgeflow_trades_opened_total")
    wallets_before = {n: s.wallet() for n, s in ops.sims.items()}
    rates = [("-0.0005", "0.0010"), ("0.0002", "0.0007"), ("-0.0001", "0.0003")]
    symbols = [sym() for _ in rates]
    for s, (ra, rb) in zip(symbols, rates, strict=True):
        ops.sims["sim-a"].market(s, price="100", funding_rate=ra)
        ops.sims["sim-b"].market(s, price="100", funding_rate=rb)
    handles = [await ops.open(s, n) for s, n in zip(symbols, ("1000", "700", "1500"), strict=True)]
    await asyncio.gather(*(ops.holding(h) for h in handles))
    for _ in range(2):  # two funding settlements while holding
        for v in ops.sims.values():
            for s in symbols:
                v.settle(s)
    for h in handles:
        await h.signal("close", CloseRequest(reason="test done"))
    finals = [await h.result() for h in handles]
    wallet_change = sum(ops.sims[n].wallet() - wallets_before[n] for n in ops.sims)

    for f in finals:
        assert f.state == "closed" and f.funding_collected_usd != 0
        row = await eventually(lambda f=f: (t := ops.ledger.trade(f.trade_id)) is not None and t.state == "closed" and t)
        assert row.realized_pnl_usd == f.realized_pnl_usd
        # the ledger's own fills and funding give the same PnL
        assert ops.ledger.pnl(f.trade_id).total.quantize(CENT) == f.realized_pnl_usd.quantize(CENT)
        assert len(ops.ledger.orders(f.trade_id)) == len(f.legs[0].client_order_ids) + len(f.legs[1].client_order_ids)
    ledger_total = sum(ops.ledger.pnl(f.trade_id).total for f in finals)
    assert ledger_total.quantize(CENT) == wallet_change.quantize(CENT), (ledger_total, wallet_change)
    print(f"\nPnL over {len(finals)} trades: ledger {ledger_total:.6f}, simulators {wallet_change:.6f}")

    # a retried record_trade writes nothing twice
    counts = ops.ledger.counts()
    async with GatewayPool(ops.settings) as pool:
        acts = LedgerActivities(ops.settings, pool)
        for _ in range(2):
            await ActivityEnvironment().run(acts.record_trade, TradeRecord(event="closed", status=finals[0]))
    assert ops.ledger.counts() == counts

    text = scrape(ops.metrics_port)
    assert sample(text, "hedgeflow_trades_opened_total") - opened_before == 3
    assert sample(text, "hedgeflow_trades_closed_total") >= 3
    assert sample(text, "hedgeflow_leg_skew_seconds_count") >= 3
    assert sample(text, "hedgeflow_open_to_hedged_seconds_count") >= 3
    assert sample(text, "hedgeflow_hedge_gap_ratio_count") >= 3
    assert sample(text, "hedgeflow_trades", state="closed") >= 3
    assert sample(text, "hedgeflow_realized_pnl_usd") == pytest.approx(float(sum(f.realized_pnl_usd for f in finals)), abs=0.01)
    assert sample(text, "hedgeflow_funding_collected_usd") != 0
    assert sample(text, "hedgeflow_fees_usd") > 0
    assert sample(text, "hedgeflow_venue_requests_total", venue="sim-a") > sample(
        before_text, "hedgeflow_venue_requests_total", venue="sim-a") if "hedgeflow_venue_requests_total{" in before_text else True
    assert sample(text, "hedgeflow_venue_requests_total", venue="sim-b") > 0


async def test_emergency_close_alert_reaches_the_webhook(ops: Ops):
    before = sample(scrape(ops.metrics_port), "hedgeflow_emergency_closes_total")
    ops.hook.fail_next = 1  # the first delivery fails: the activity retries it
    s = sym()
    h = await ops.open(s)
    await ops.holding(h)
    await h.signal("emergency_close", CloseRequest(reason="operator test"))
    final = await h.result()
    assert final.state == "closed"
    texts = await eventually(lambda: [t for t in ops.hook.texts() if "EMERGENCY CLOSE" in t and s in t])
    assert "operator test" in texts[0]
    assert ops.hook.bodies and all(set(b) == {"text"} for b in ops.hook.bodies)  # Slack payloads
    await eventually(lambda: sample(scrape(ops.metrics_port), "hedgeflow_emergency_closes_total") == before + 1)
    assert ops.ledger.trade(final.trade_id).emergency is True


async def test_reconcile_finds_orphan_of_terminated_trade_and_flattens_it(ops: Ops):
    s = sym()
    h = await ops.open(s)
    st = await ops.holding(h)
    await h.terminate(reason="test: terminate runs no code")
    assert ops.sims["sim-a"].position_qty(s) == st.target_qty  # the positions stay behind

    # the timer workflow finds it
    rh = await ops.client.start_workflow(
        ReconcileWorkflow.run, ReconcileParams(interval_s=1), id=f"reconcile-{ops.settings.temporal.task_queue}",
        task_queue=ops.settings.temporal.task_queue,
    )

    async def orphans_seen():
        last = (await rh.query("status")).get("last")
        return last and {d["venue"] for d in last["discrepancies"] if d["kind"] == "orphan" and d["symbol"] == s}

    assert await eventually(orphans_seen, timeout=30) == {"sim-a", "sim-b"}
    await rh.terminate(reason="test done")
    assert ops.ledger.open_incident_count() >= 2
    async with GatewayPool(ops.settings) as pool:  # what the scanner asks before opening
        assert await ActivityEnvironment().run(LedgerActivities(ops.settings, pool).open_incidents) >= 2
    await eventually(lambda: [t for t in ops.hook.texts() if "Orphan position found" in t and s in t])

    r = await ops.cli("reconcile")
    assert r.returncode == 3, r.stderr
    assert "[orphan]" in r.stdout and s in r.stdout
    r = await ops.cli("reconcile", "--flatten-orphans")  # stdin is not a terminal: refuses
    assert r.returncode == 2 and "--yes" in r.stderr
    assert ops.sims["sim-a"].position_qty(s) == st.target_qty
    r = await ops.cli("reconcile", "--flatten-orphans", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "flattened" in r.stdout
    assert ops.sims["sim-a"].position_qty(s) == 0 and ops.sims["sim-b"].position_qty(s) == 0
    assert ops.ledger.open_incident_count() == 0
    r = await ops.cli("status")
    assert r.returncode == 0, r.stderr
    assert "PNL" in r.stdout and "sim-a" in r.stdout and "INCIDENTS (0 open)" in r.stdout
    print("\n" + r.stdout)
