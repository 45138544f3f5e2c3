"""`hedgeflow up` with the scanner, as an operator runs it (free ports, state dir in tmp):
the demo profile starts trades by itself within a minute; a replay prints its report once
the replayed data is over."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import sys
import threading
import time
from pathlib import Path

import replay_slice

from workers.client import connect
from workers.proc import Child

ROOT = Path(__file__).resolve().parent.parent


class Up:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.child = Child([sys.executable, "-m", "hedgeflow", *args], name="hedgeflow up", cwd=ROOT, env=env,
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

    def wait_for(self, needle: str, timeout_s: float) -> str:
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
        raise AssertionError(f"{needle!r} not seen; output:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        self.child.stop(15)


def _env(tmp_path: Path, alloc_ports, names: list[str], extra: str = "",
         dialects: dict[str, str] | None = None) -> tuple[dict[str, str], Path, str]:
    port, ui_port, metrics, *vports = alloc_ports(3 + len(names))
    cfg = tmp_path / "hedgeflow.yaml"
    cfg.write_text(extra + "venues:\n" + "".join(
        f"  - {{name: {n}, kind: sim, port: {p}, seed: {i + 1}, funding_interval_s: 60, "
        f"dialect: {(dialects or {}).get(n, 'binance')}}}\n"
        for i, (n, p) in enumerate(zip(names, vports, strict=True))))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEDGEFLOW", "TEMPORAL_"))}
    env.update(HEDGEFLOW__TEMPORAL__ADDRESS=f"127.0.0.1:{port}", HEDGEFLOW__TEMPORAL__UI_PORT=str(ui_port),
               HEDGEFLOW__METRICS_PORT=str(metrics), PYTHONUNBUFFERED="1")
    return env, cfg, f"127.0.0.1:{port}"


async def _trades(address: str) -> list[str]:
    client = await connect(address, "default")
    return [w.id async for w in client.list_workflows("WorkflowType = 'TradeWorkflow'")]


async def test_demo_up_starts_trades_by_itself_within_a_minute(tmp_path, alloc_ports):
    """The demo profile's four venues, one per dialect (config.settings.demo_venues, on free
    ports): the scanner opens trades by itself, within a minute, across dialects and venues. The
    demo's three symbols allow three trades at once (one per symbol and venue), and the demo hold
    outlasts the minute, so the first trades cover three or four of the venues (which ones follows
    the spreads); the test waits up to the minute for all four and requires at least three."""
    from config.settings import demo_venues

    dialects = {v["name"]: v["dialect"] for v in demo_venues()}
    env, cfg, address = _env(tmp_path, alloc_ports, list(dialects), dialects=dialects)
    up = Up(["--config", str(cfg), "up", "--state-dir", str(tmp_path / "state")], env)
    try:
        up.wait_for("scanner: workflow 'scanner' running", 90)
        t0 = time.monotonic()
        trades: list[str] = []
        seen: set[str] = set()  # trade ids ever seen running (a trade may end within the minute)
        def covered() -> set[str]:
            return {v for t in seen for v in re.findall(r"sim-[a-d]", t)}

        # until all four, or three once the first 20 s are over (the hold outlasts the minute)
        while time.monotonic() - t0 < 60 and covered() != set(dialects) and not (
                len(covered()) >= 3 and time.monotonic() - t0 > 20):
            trades = await _trades(address)
            seen.update(trades)
            await asyncio.sleep(1)
        assert seen, "the demo scanner started no trade within a minute; worker log:\n" + (
            (tmp_path / "state/logs/worker.log").read_text()[-3000:])
        assert all(t.startswith("trade-") for t in seen)
        cross = [t for t in seen if len({dialects[v] for v in re.findall(r"sim-[a-d]", t)}) == 2]
        assert cross, f"no trade across two dialects: {sorted(seen)}"
        legs = {v for t in seen for v in re.findall(r"sim-[a-d]", t)}
        assert len(legs) >= 3, f"within a minute the trades touched only {sorted(legs)}: {sorted(seen)}"
    finally:
        up.stop()
    assert up.proc.returncode == 0


async def test_replay_up_prints_its_report_when_the_data_ends(tmp_path, alloc_ports):
    data = tmp_path / "slice.csv"
    replay_slice.write(data, "2023-01-12T00:00:00Z", "2023-01-14T00:00:00Z")
    env, cfg, _ = _env(tmp_path, alloc_ports, ["binance", "bybit", "okx"])
    env["HEDGEFLOW__TRADE__MONITOR_INTERVAL_S"] = "1"
    up = Up(["--config", str(cfg), "up", "--profile", "replay", "--data", str(data), "--speed", "57600",
             "--state-dir", str(tmp_path / "state")], env)
    try:
        up.wait_for("replay: data ends at about", 90)
        up.wait_for("replay over: report", 60)
        net = up.wait_for("net PnL", 10)
        bound = up.wait_for("hindsight bound", 10)
        assert "= funding − fees − slippage" in net
        assert float(bound.split()[2]) > 0
    finally:
        up.stop()
