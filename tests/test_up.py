"""``hedgeflow up`` end to end: real dev server, real simulators, a real worker, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import WorkflowExecutionStatus

from config.settings import VenueConfig
from venues.gateway import Gateway
from venues.models import Side
from workers.client import connect
from workers.proc import Child

REPO = Path(__file__).resolve().parent.parent
READY = "press Ctrl-C to stop"


class Up:
    """One ``hedgeflow up`` process with its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.child = Child([sys.executable, "-m", "hedgeflow", *args], name="hedgeflow up", cwd=REPO, env=env,
                           pipe_output=True).spawn()
        self.proc = self.child.proc  # the Popen: its stdout is read line by line below
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, needle: str, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} not seen; output so far:\n" + "\n".join(self.lines))

    def drain(self, timeout_s: float = 2.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                return
            self.lines.append(line)

    def pids(self) -> set[int]:
        return {int(p) for line in self.lines for p in re.findall(r"\(pid (\d+)", line)}

    def kill(self) -> None:
        self.child.stop(15)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def up_env(tmp_path, alloc_ports):
    port, ui_port, metrics, a, b, c = alloc_ports(6)
    cfg = tmp_path / "hedgeflow.yaml"
    cfg.write_text(
        "venues:\n"
        + "".join(
            f"  - {{name: sim-{n}, kind: sim, port: {p}, seed: {i + 1}, funding_interval_s: 3600}}\n"
            for i, (n, p) in enumerate(zip("abc", (a, b, c), strict=True))
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEDGEFLOW", "TEMPORAL_"))}
    env.update(
        HEDGEFLOW__TEMPORAL__ADDRESS=f"127.0.0.1:{port}",
        HEDGEFLOW__TEMPORAL__UI_PORT=str(ui_port),
        HEDGEFLOW__METRICS_PORT=str(metrics),
        PYTHONUNBUFFERED="1",
    )
    return {
        "cfg": cfg, "env": env, "state": tmp_path / "state", "address": f"127.0.0.1:{port}",
        "ui_port": ui_port, "metrics": metrics, "sims": {"sim-a": a, "sim-b": b, "sim-c": c},
    }


def _start(up_env) -> Up:
    up = Up(["--config", str(up_env["cfg"]), "up", "--no-scanner", "--state-dir", str(up_env["state"])],
            up_env["env"])
    up.wait_for(READY)
    return up


def _stop(up: Up) -> float:
    t0 = time.monotonic()
    up.proc.send_signal(signal.SIGINT)
    code = up.proc.wait(15)
    took = time.monotonic() - t0
    up.drain()
    assert code == 0, "\n".join(up.lines)
    return took


async def test_up_starts_everything_stops_on_sigint_and_resumes(up_env):
    up = _start(up_env)
    try:
        out = "\n".join(up.lines)
        assert f"Temporal frontend  {up_env['address']}" in out
        assert f"http://127.0.0.1:{up_env['ui_port']}" in out
        assert f"http://127.0.0.1:{up_env['metrics']}/metrics" in out
        assert "scanner: skipped (--no-scanner)" in out
        for name, port in up_env["sims"].items():
            assert re.search(rf"venue {name}\s+http://127.0.0.1:{port}", out)
            assert "USDT" in _get_json(f"http://127.0.0.1:{port}/_sim/state")["balances"]
        assert len(up.pids()) == 5  # dev server, 3 sims, worker
        assert all(_alive(p) for p in up.pids())
        assert "temporal_" in await asyncio.to_thread(_get_text, f"http://127.0.0.1:{up_env['metrics']}/metrics")

        # the worker polls the hedgeflow queue
        client = await connect(up_env["address"])
        tq = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace="default", task_queue=TaskQueue(name="hedgeflow"),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
        assert tq.pollers, "worker is not polling the hedgeflow task queue"

        # state to survive a restart: a position on sim-a and a workflow nobody serves
        venue = VenueConfig(name="sim-a", kind="sim", port=up_env["sims"]["sim-a"])
        async with Gateway(venue) as gw:
            res = await gw.place_market_order("BTC/USDT:USDT", Side.BUY, Decimal("0.01"), "hfuptest1")
            assert res.filled_qty == Decimal("0.01")
        parked = await client.start_workflow(
            "ParkedWorkflow", id=f"parked-{uuid.uuid4().hex[:8]}", task_queue=f"parked-{uuid.uuid4().hex[:6]}")
        before = _get_json(f"http://127.0.0.1:{up_env['sims']['sim-a']}/_sim/state")

        # a child that dies is restarted
        line = next(ln for ln in up.lines if "started simulator sim-b" in ln)
        os.kill(int(re.search(r"pid (\d+)", line).group(1)), signal.SIGKILL)
        up.wait_for("simulator sim-b ready again", 30)
        assert "sim-b" == _get_json(f"http://127.0.0.1:{up_env['sims']['sim-b']}/_sim/state")["name"]
        pids = up.pids()
    except BaseException:
        up.kill()
        raise

    took = _stop(up)
    assert took < 10, f"stopping took {took:.1f} s"
    assert not [p for p in pids if _alive(p)], "children left running after SIGINT"
    out = "\n".join(up.lines)
    assert out.index("stopped worker") < out.index("stopped simulator") < out.index("stopped Temporal dev server")
    for port in (*up_env["sims"].values(), int(up_env["address"].rsplit(":", 1)[1])):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still served"

    # second run on the same state dir resumes: venue accounts and Temporal history intact
    up2 = _start(up_env)
    try:
        after = _get_json(f"http://127.0.0.1:{up_env['sims']['sim-a']}/_sim/state")
        assert [o["clientOrderId"] for o in after["orders"]] == [o["clientOrderId"] for o in before["orders"]]
        assert "hfuptest1" in [o["clientOrderId"] for o in after["orders"]]
        assert [(p["symbol"], p["positionAmt"]) for p in after["positions"]] == \
            [(p["symbol"], p["positionAmt"]) for p in before["positions"]]
        assert after["balances"]["USDT"]["wallet"] == before["balances"]["USDT"]["wallet"]
        client = await connect(up_env["address"])
        desc = await client.get_workflow_handle(parked.id).describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
        await client.get_workflow_handle(parked.id).terminate("test done")
    finally:
        if up2.proc.poll() is None:
            _stop(up2)


def test_up_refuses_live_without_confirmation(up_env):
    res = subprocess.run(
        [sys.executable, "-m", "hedgeflow", "--config", str(up_env["cfg"]), "up", "--profile", "live",
         "--state-dir", str(up_env["state"])],
        cwd=REPO, env=up_env["env"], capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 2, res.stderr
    assert "--i-understand-this-is-live" in res.stderr
    assert not up_env["state"].exists() or not (up_env["state"] / "temporal.sqlite").exists()


def test_up_names_a_taken_port(up_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", up_env["ui_port"]))
        s.listen()
        res = subprocess.run(
            [sys.executable, "-m", "hedgeflow", "--config", str(up_env["cfg"]), "up", "--no-scanner",
             "--state-dir", str(up_env["state"])],
            cwd=REPO, env=up_env["env"], capture_output=True, text=True, timeout=60,
        )
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"port {up_env['ui_port']} (Temporal Web UI) is already in use" in res.stderr
    assert "HEDGEFLOW__TEMPORAL__UI_PORT" in res.stderr
