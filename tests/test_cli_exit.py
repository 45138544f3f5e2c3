"""The command line exits cleanly, always (issue 14): every read command that connects a Temporal
client, run as a real process against the session's dev server, exits 0 with no "Fatal Python
error" — before the fix about one run in twenty (one in seven on a loaded machine) aborted at
interpreter exit with "PyGILState_Release: thread state ... must be current when releasing /
Python runtime state: finalizing", exit 134 (``workers.client.owned_runtime`` says why).

Also here, on the same stack: ``status --watch`` redraws until Ctrl-C and then exits 0, and
``trade show`` prints a readable view (``--json``: the status object).

``HEDGEFLOW_TEST_EXIT_RUNS`` (default 16: two of each command, to keep ``make test`` under its
15 minutes) is the number of CLI processes, spread evenly over the read commands,
``HEDGEFLOW_TEST_EXIT_PARALLEL`` (4) how many run at once: a run costs ~2-3 s of CPU (imports), so
16 take ~12-30 s on two cores; set 400 for 50 runs of each command.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import pytest_asyncio
from trade_harness import (
    ROOT,
    TEST_API_KEY,
    TEST_API_SECRET,
    TEST_VENUE_RPS,
    settings_for,
    start_sims,
    wait_for,
)

from control.trades import open_trade, trade_status
from workers.worker import run_worker

RUNS = int(os.environ.get("HEDGEFLOW_TEST_EXIT_RUNS", "16"))
PARALLEL = int(os.environ.get("HEDGEFLOW_TEST_EXIT_PARALLEL", "4"))
SYMBOL = "S027/USDT:USDT"


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    venues = start_sims(tmp_path_factory.mktemp("cli-exit-sims"), ["sim-a", "sim-b"])
    yield venues
    for s in venues.values():
        s.stop()


class Stack:
    def __init__(self, settings, sims, trade_id: str) -> None:
        self.settings, self.sims, self.trade_id = settings, sims, trade_id

    def env(self) -> dict[str, str]:
        venues = [{"name": s.name, "kind": "sim", "base_url": s.url, "requests_per_second": TEST_VENUE_RPS,
                   "api_key": TEST_API_KEY, "api_secret": TEST_API_SECRET} for s in self.sims.values()]
        return {**os.environ, "HEDGEFLOW__VENUES": json.dumps(venues), "HEDGEFLOW__METRICS_PORT": "0",
                "TEMPORAL_ADDRESS": self.settings.temporal.address,
                "HEDGEFLOW__TEMPORAL__TASK_QUEUE": self.settings.temporal.task_queue,
                "HEDGEFLOW__STATE_DIR": str(self.settings.state_dir),
                "HEDGEFLOW__LEDGER__URL": self.settings.ledger_url(), "HEDGEFLOW_CONFIG": ""}

    def cli(self, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
        """One CLI process; one that hangs is sent SIGABRT after ``timeout`` (faulthandler then
        prints every thread's stack to its stderr, which the failure shows)."""
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "hedgeflow", *args]
        with subprocess.Popen(cmd, cwd=ROOT, env={**self.env(), "PYTHONFAULTHANDLER": "1"}, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)
                out, err = proc.communicate(timeout=10)
                err = f"HUNG for {timeout:g} s; stacks:\n{err}"
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err), time.monotonic() - t0


@pytest_asyncio.fixture(scope="module")
async def stack(temporal_env, sims):
    client = await temporal_env.client()
    # monitor every 5 s, not 0.5: the trade then stays in its first run for the whole module (a
    # trade that continued as new makes `hedgeflow report` wait for its end: see the module's note)
    settings = settings_for(sims, monitor_interval_s=5)
    settings.temporal.address = temporal_env.address
    settings.temporal.task_queue = "cli-exit-" + os.urandom(4).hex()
    for s in sims.values():
        s.market(SYMBOL, price="100", funding_rate="0.0001")
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop_event=stop, quiet=True, graceful_shutdown_timeout=2,
                                          on_ready=lambda w: ready.set()))
    await asyncio.wait_for(ready.wait(), 30)
    trade_id = await open_trade(client, settings, SYMBOL, "sim-a", "sim-b", Decimal("500"))

    seen: list = []

    async def holding():
        st = await trade_status(client, trade_id)
        seen[:] = [st.state, [e.what for e in st.events[-4:]]]
        return st.state == "holding"

    try:
        await wait_for(holding, timeout=60, what="the trade holding")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the trade: {seen}") from None
    yield Stack(settings, sims, trade_id)
    await client.get_workflow_handle(trade_id).signal("close", {"reason": "test done"})
    await asyncio.wait_for(client.get_workflow_handle(trade_id).result(), 30)
    stop.set()
    await asyncio.wait_for(task, 30)


def read_commands(trade_id: str) -> list[list[str]]:
    """Every command that connects to Temporal and changes nothing."""
    return [["trade", "list"], ["trade", "list", "--open", "--json"], ["trade", "show", trade_id],
            ["trade", "show", trade_id, "--json"], ["status"], ["status", "--json"], ["report"], ["report", "--json"]]


async def test_every_read_command_exits_cleanly_every_time(stack: Stack):
    commands = read_commands(stack.trade_id)
    plan = [commands[i % len(commands)] for i in range(max(RUNS, len(commands)))]
    t0 = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = await asyncio.gather(*(asyncio.wrap_future(pool.submit(stack.cli, *cmd)) for cmd in plan))
    wall = time.monotonic() - t0
    bad = [(cmd, r.returncode, r.stderr[-3000:]) for cmd, (r, _) in zip(plan, results, strict=True)
           if r.returncode != 0 or "Fatal Python error" in r.stderr or not r.stdout.strip()]
    durations = [d for _, d in results]
    print(f"\n{len(plan)} CLI runs ({len(commands)} read commands, {PARALLEL} at once): {wall:.1f} s wall, "
          f"per run median {statistics.median(durations):.2f} s, max {max(durations):.2f} s")
    assert not bad, f"{len(bad)} of {len(plan)} runs failed, first: {bad[0]}"


async def test_trade_show_is_readable_and_json_on_request(stack: Stack):
    (view, _), (raw, _) = await asyncio.gather(asyncio.to_thread(stack.cli, "trade", "show", stack.trade_id),
                                               asyncio.to_thread(stack.cli, "trade", "show", stack.trade_id, "--json"))
    assert view.returncode == 0 and raw.returncode == 0, (view.stderr, raw.stderr)
    st = json.loads(raw.stdout)  # --json: exactly the status query's object, as `trade show` printed before
    assert st["trade_id"] == stack.trade_id and st["state"] == "holding" and len(st["legs"]) == 2
    assert {"venue", "side", "filled_qty", "avg_price", "client_order_ids"} <= set(st["legs"][0])
    text = view.stdout
    assert text.splitlines()[0].split() == [stack.trade_id, "holding"]
    for part in ("long sim-a / short sim-b", "LEGS", "EVENTS", *st["legs"][0]["client_order_ids"]):
        assert part in text, (part, text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


async def test_status_watch_redraws_until_ctrl_c(stack: Stack):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hedgeflow", "status", "--watch", "0.5", cwd=ROOT, env=stack.env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    screens, out = 0, []
    try:
        async with asyncio.timeout(60):
            while screens < 2:  # piped: one screen after another, each headed by its time
                line = (await proc.stdout.readline()).decode()
                assert line, "status --watch ended by itself"
                out.append(line)
                screens += line.startswith("hedgeflow status · ")
    finally:
        proc.send_signal(signal.SIGINT)
    rest, err = await asyncio.wait_for(proc.communicate(), 15)
    text = "".join(out) + rest.decode()
    assert proc.returncode == 0, err.decode()[-800:]
    assert "Fatal Python error" not in err.decode()
    for title in ("VENUES", "OPEN TRADES (1)", "EXPOSURE (USD, per venue)", "PNL", "INCIDENTS (0 open)"):
        assert title in text, title
    assert stack.trade_id in text and "sim-a" in text


async def test_owned_runtime_joins_the_core_threads_it_started(temporal_env):
    from workers.client import connect, foreign_threads, owned_runtime

    before = foreign_threads()
    if before is None:
        pytest.skip("this platform lists no threads (/proc)")
    with owned_runtime():
        client = await connect(temporal_env.address, temporal_env.namespace)
        [w async for w in client.list_workflows("WorkflowType = 'NoSuchWorkflow'")]
        inside = foreign_threads()
        del client
    assert inside > before, "the scope's own runtime runs its own Tokio threads"
    assert foreign_threads() == before, "leaving the scope stops and joins them"


@pytest.mark.parametrize("core", [False, True])
def test_end_process_flushes_and_keeps_the_exit_code(core: bool):
    """With a Temporal core thread still alive (the SDK's default runtime) the process leaves by
    ``os._exit`` after flushing; without one it exits normally. Either way: the code, the output."""
    code = ("import sys\nfrom temporalio.runtime import Runtime\n"
            + ("Runtime.default()\n" if core else "")
            + "from hedgeflow.cli import _end_process\nprint('printed, not flushed yet', end='')\n"
            + "sys.stderr.write('err line')\n_end_process(3)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (3, "printed, not flushed yet", "err line")
