"""Upgrading the worker under running trades, with Temporal Worker Versioning and real parts:
its own dev server (drainage refreshed every second instead of every few minutes), two
simulators over HTTP, and `hedgeflow worker --build-id N` processes.

Worker 1 starts and makes itself current (`--promote`); trade A opens and holds on version 1,
trade C (a small history limit) starts on version 1, and reconcile runs there too. Worker 2
starts; `hedgeflow upgrade promote 2` makes it current. Then: A's tasks are still completed by
worker 1 (A answers its status query and keeps monitoring), a new trade B runs on version 2,
reconcile follows to version 2 at once, and C's next run after continue-as-new is on version 2.
A closes on version 1, version 1 shows drained, worker 1 stops (restarted with `--promote` it
does not take the deployment back), B and C close on version 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from trade_harness import (
    ROOT,
    TEST_API_KEY,
    TEST_API_SECRET,
    TEST_VENUE_RPS,
    settings_for,
    start_sims,
    wait_for,
)

from control.deployments import describe, workflow_version
from control.trades import open_trade
from messages.trade import CloseRequest, TradeStatus
from workers.client import connect
from workers.devserver import DevServer
from workers.proc import Child, free_ports
from workflows.reconcile import WORKFLOW_ID as RECONCILE_ID
from workflows.reconcile import ReconcileWorkflow, reconcile_params

DEPLOYMENT = "hedgeflow-upgrade-test"
QUEUE = "hedgeflow-upgrade"
#: the server's defaults (3 min grace, 3 min refresh) would keep a finished version "draining"
#: for minutes; the Temporal SDKs' own versioning tests use the same two values
FAST_DRAINAGE = [
    "--dynamic-config-value", 'matching.wv.VersionDrainageStatusVisibilityGracePeriod="2s"',
    "--dynamic-config-value", 'matching.wv.VersionDrainageStatusRefreshInterval="1s"',
]


@pytest.fixture
def sims(tmp_path):
    venues = start_sims(tmp_path, ["sim-a", "sim-b"], ["--symbols", "50"])  # S040-S042 exist (the default 40 stops short)
    yield venues
    for s in venues.values():
        s.stop()


@pytest.fixture
async def server(tmp_path):
    port, ui_port = free_ports(2)
    srv = DevServer(port=port, ui_port=ui_port, headless=True, log_file=tmp_path / "devserver.log",
                    extra_args=FAST_DRAINAGE)
    await srv.astart(timeout_s=60)
    yield srv
    await srv.astop(timeout_s=10)


def _env(sims, address: str, state_dir: Path) -> dict[str, str]:
    venues = [{"name": s.name, "kind": "sim", "base_url": s.url, "requests_per_second": TEST_VENUE_RPS}
              for s in sims.values()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")}
    env.update(TEMPORAL_ADDRESS=address, HEDGEFLOW__VENUES=json.dumps(venues), HEDGEFLOW__METRICS_PORT="0",
               HEDGEFLOW__TEMPORAL__TASK_QUEUE=QUEUE, HEDGEFLOW__TEMPORAL__ADDRESS=address,
               HEDGEFLOW__WORKER__DEPLOYMENT_NAME=DEPLOYMENT, HEDGEFLOW__STATE_DIR=str(state_dir),
               PYTHONUNBUFFERED="1")
    for s in sims.values():  # credentials reach the worker through its environment only
        prefix = f"HEDGEFLOW_VENUE_{s.name.upper().replace('-', '_')}"
        env[f"{prefix}_API_KEY"], env[f"{prefix}_API_SECRET"] = TEST_API_KEY, TEST_API_SECRET
    return env


def _worker(env: dict[str, str], build: str, log: Path, *extra: str) -> Child:
    cmd = [sys.executable, "-m", "hedgeflow", "worker", "--build-id", build, "--graceful-timeout", "5", *extra]
    return Child(cmd, name=f"worker {build}", cwd=ROOT, env=env, log_file=log).spawn().wait_ready(
        log_line="worker ready", timeout=60)


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "hedgeflow", *args], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (args, out.returncode, out.stdout, out.stderr[-2000:])
    return out


async def _task_builds(client, wf_id: str, run_id: str | None = None, after: int = 0) -> list[str]:
    """The build id of every workflow task completed in a run, after event ``after``."""
    hist = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
    return [e.workflow_task_completed_event_attributes.deployment_version.build_id for e in hist.events
            if e.HasField("workflow_task_completed_event_attributes") and e.event_id > after]


async def _history_len(client, wf_id: str) -> int:
    return len((await client.get_workflow_handle(wf_id).fetch_history()).events)


async def _state(handle, state: str) -> TradeStatus | None:
    st = await handle.query("status", result_type=TradeStatus)
    return st if st.state == state else None


async def _on(client, wf_id: str, build: str) -> bool:
    v = await workflow_version(client, wf_id)
    return v.build_id == build and v.behavior == "pinned"


async def _runs(client, wf_id: str) -> list[str]:
    return [w.run_id async for w in client.list_workflows(f"WorkflowId = '{wf_id}'")]


async def test_trade_keeps_its_version_while_the_worker_is_upgraded(server, sims, tmp_path):
    lap = _Laps()
    client = await connect(server.address, "default")
    settings = settings_for(sims)
    settings.temporal.task_queue = QUEUE
    settings.reconcile.interval_s = 1
    env = _env(sims, server.address, tmp_path)
    v1 = _worker(env, "1", tmp_path / "worker1.log", "--promote")
    lap("worker 1 up and current")
    v2 = None
    try:
        assert "worker version hedgeflow-upgrade-test.1 is now current" in v1.log_tail(50)
        view = await describe(client, DEPLOYMENT)
        assert view is not None and view.current == "1", view

        # A on version 1, holding; reconcile running on version 1
        a = await open_trade(client, settings, "S040/USDT:USDT", "sim-a", "sim-b", Decimal("1000"))
        ha = client.get_workflow_handle(a, result_type=TradeStatus)
        await client.start_workflow(ReconcileWorkflow.run, reconcile_params(settings), id=RECONCILE_ID,
                                    task_queue=QUEUE, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        await wait_for(lambda: _state(ha, "holding"), timeout=30, what="trade A holding on version 1")
        assert await _on(client, a, "1")
        await wait_for(lambda: _on(client, RECONCILE_ID, "1"), timeout=10, what="reconcile on version 1")
        lap("A holding")

        # worker 2 polls but is not current: it gets nothing yet
        v2 = _worker(env, "2", tmp_path / "worker2.log")
        view = await wait_for(lambda: _version_listed(client, "2"), timeout=20, what="version 2 registered")
        assert view.current == "1" and view.version("2").status == "inactive", view
        lap("worker 2 up")

        # C starts on version 1 (its first task pins it), with a history limit it passes after
        # C_TICKS monitor ticks: well after version 2 is current, even on a loaded machine
        c = await open_trade(client, settings, "S042/USDT:USDT", "sim-a", "sim-b", Decimal("1000"),
                             history_limit=await _events_to_hold(client, a) + C_TICKS * EVENTS_PER_TICK,
                             hold_overrides={"monitor_interval_s": 2})
        await wait_for(lambda: _on(client, c, "1"), timeout=10, what="trade C pinned to version 1")
        lap("C pinned")

        # the upgrade: version 2 current; reconcile follows at once, running trades stay
        promoted = await _cli(env, "upgrade", "promote", "2", "--deployment-name", DEPLOYMENT)
        lap("promote 2 (CLI)")
        assert "hedgeflow-upgrade-test.2 is current" in promoted.stdout, promoted.stdout
        assert "reconcile moved to it" in promoted.stdout and "stay on hedgeflow-upgrade-test.1" in promoted.stdout
        assert len(await _runs(client, c)) == 1, "C continued as new before version 2 was current: raise its limit"
        mark_a = await _history_len(client, a)
        mark_r = await _history_len(client, RECONCILE_ID)
        view = await describe(client, DEPLOYMENT)
        assert view.current == "2" and view.version("1").status == "draining", view

        # a new trade goes to version 2
        b = await open_trade(client, settings, "S041/USDT:USDT", "sim-b", "sim-a", Decimal("1000"))
        hb = client.get_workflow_handle(b, result_type=TradeStatus)
        await wait_for(lambda: _state(hb, "holding"), timeout=30, what="trade B holding on version 2")
        assert await _on(client, b, "2")
        assert set(await _task_builds(client, b)) == {"2"}

        lap("B holding")
        # A still runs on version 1: it answers its query, keeps monitoring, every task on worker 1
        st = await ha.query("status", result_type=TradeStatus)
        assert st.state == "holding" and st.runs == 1
        await wait_for(lambda: _grew(client, a, mark_a, 3), timeout=15, what="trade A monitoring after the upgrade")
        assert set(await _task_builds(client, a, after=mark_a)) == {"1"}
        assert await _on(client, a, "1")
        # reconcile moved: its tasks after the promotion are worker 2's
        await wait_for(lambda: _later_builds(client, RECONCILE_ID, mark_r, "2"), timeout=15,
                       what="reconcile's tasks on version 2")
        lap("A on 1, reconcile on 2")

        # C continues as new onto version 2
        await wait_for(lambda: _run_count(client, c, 2), timeout=40, what="trade C continued as new")
        lap("C continued as new")
        runs = await _runs(client, c)  # newest first
        first, second = runs[-1], runs[-2]
        assert set(await _task_builds(client, c, run_id=first)) == {"1"}
        await wait_for(lambda: _task_builds(client, c, run_id=second), timeout=10, what="C's second run's first task")
        assert set(await _task_builds(client, c, run_id=second)) == {"2"}
        assert await _on(client, c, "2")
        lap("C continued on 2")

        # A closes on version 1; then version 1 is drained and its worker may stop
        await ha.signal("close", CloseRequest(reason="upgrade test"))
        final = await asyncio.wait_for(ha.result(), 30)
        assert final.state == "closed" and final.runs == 1
        assert set(await _task_builds(client, a)) == {"1"}
        assert sims["sim-a"].position_qty("S040/USDT:USDT") == 0 and sims["sim-b"].position_qty("S040/USDT:USDT") == 0
        await wait_for(lambda: _drained(client, "1"), timeout=30, interval=0.5, what="version 1 drained")
        lap("A closed, 1 drained")
        status = json.loads((await _cli(env, "upgrade", "status", "--json", "--deployment-name", DEPLOYMENT)).stdout)
        versions = {v["build_id"]: v for v in status["deployment"]["versions"]}
        assert status["deployment"]["current"] == "2" and versions["1"]["status"] == "drained", status
        assert set(status["trades"]) == {"2"} and sorted(status["trades"]["2"]) == sorted([b, c]), status
        assert v1.stop(20) == 0, v1.log_tail(30)
        lap("worker 1 stopped")
        # a worker of the old build that restarts with --promote does not roll the deployment back
        v1 = _worker(env, "1", tmp_path / "worker1-again.log", "--promote")
        lap("worker 1 restarted")
        assert "not promoted: hedgeflow-upgrade-test.1 was current before (now drained)" in v1.log_tail(50)
        assert (await describe(client, DEPLOYMENT)).current == "2"
        assert v1.stop(20) == 0
        lap("and stopped")

        # B and C end on version 2 with worker 1 gone
        for wf_id, sym in ((b, "S041/USDT:USDT"), (c, "S042/USDT:USDT")):
            h = client.get_workflow_handle(wf_id, result_type=TradeStatus)
            await h.signal("close", CloseRequest(reason="upgrade test"))
            assert (await asyncio.wait_for(h.result(), 30)).state == "closed"
            assert sims["sim-a"].position_qty(sym) == 0 and sims["sim-b"].position_qty(sym) == 0
        assert set(await _task_builds(client, b)) == {"2"}
        # worker 1 did A's work, worker 2 never touched A
        assert a in (tmp_path / "worker1.log").read_text() and a not in (tmp_path / "worker2.log").read_text()
        lap("B and C closed")
    finally:
        print(lap.report())
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(RECONCILE_ID).terminate("test over")
        for w in (v2, v1):
            if w is not None:
                w.stop(20)


class _Laps:
    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()
        self.laps: list[tuple[str, float]] = []

    def __call__(self, what: str) -> None:
        now = time.monotonic()
        self.laps.append((what, now - self.last))
        self.last = now

    def report(self) -> str:
        return (f"upgrade test: {time.monotonic() - self.t0:.1f} s ("
                + ", ".join(f"{w} {d:.1f}" for w, d in self.laps) + ")")


#: a monitor tick adds about 20 events (4 reads, a timer, the workflow tasks); C continues as new
#: after about 7 ticks of 2 s
EVENTS_PER_TICK, C_TICKS = 20, 7


async def _events_to_hold(client, wf_id: str) -> int:
    """How many events a trade's history held when its hold loop first looked at its length
    (its first "monitor interval" timer)."""
    converter = client.data_converter.payload_converter
    for e in (await client.get_workflow_handle(wf_id).fetch_history()).events:
        if e.HasField("timer_started_event_attributes") and e.user_metadata.HasField("summary"):
            if converter.from_payload(e.user_metadata.summary, str) == "monitor interval":
                return e.event_id
    raise AssertionError(f"{wf_id} has no monitor timer")


async def _version_listed(client, build: str):
    view = await describe(client, DEPLOYMENT)
    return view if view is not None and view.version(build) is not None else None


async def _drained(client, build: str) -> bool:
    view = await describe(client, DEPLOYMENT)
    return view.version(build).status == "drained"


async def _grew(client, wf_id: str, mark: int, tasks: int) -> bool:
    return len(await _task_builds(client, wf_id, after=mark)) >= tasks


async def _later_builds(client, wf_id: str, mark: int, build: str) -> bool:
    builds = await _task_builds(client, wf_id, after=mark)
    return bool(builds) and builds[-1] == build


async def _run_count(client, wf_id: str, n: int) -> bool:
    return len(await _runs(client, wf_id)) >= n
