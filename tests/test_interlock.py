"""The live interlock on every entry point that can send an order: with a ``kind: ccxt`` venue,
``mode: live`` AND the explicit switch (``--i-understand-this-is-live``; for a worker also
``HEDGEFLOW_I_UNDERSTAND_THIS_IS_LIVE=1``) are required, and a refusal (exit 2, one line naming
what is missing) comes before anything connects. The CLI runs as a subprocess; TEMPORAL_ADDRESS
points at a listener of this test, which must see no connection from a refused command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import load_settings
from workers.worker import WorkerError, run_worker

ROOT = Path(__file__).resolve().parents[1]
FLAG = "--i-understand-this-is-live"
ENV_SWITCH = "HEDGEFLOW_I_UNDERSTAND_THIS_IS_LIVE"
CCXT_VENUE = "venues:\n  - name: binance\n    kind: ccxt\n    exchange_id: binanceusdm\n"

ENTRY_POINTS = [
    ["worker"],
    ["up", "--no-scanner"],
    ["up", "--profile", "live", "--no-scanner"],
    ["trade", "open", "--symbol", "BTC/USDT:USDT", "--long", "binance", "--short", "binance", "--notional", "10"],
    ["trade", "close", "some-trade"],
    ["reconcile", "--flatten-orphans", "--yes"],
    ["halt", "--close-all"],
    ["resume"],
    ["scanner", "resume"],
]


class Listener:
    """A TCP listener standing in for the Temporal frontend: did anybody connect?"""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def connected(self, wait: float = 0.0) -> bool:
        deadline = time.monotonic() + wait
        while True:
            try:
                conn, _ = self.sock.accept()
                conn.close()
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def _env(listener: Listener, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")}
    env.update(TEMPORAL_ADDRESS=listener.address, HEDGEFLOW_VENUE_BINANCE_API_KEY="k-123",
               HEDGEFLOW_VENUE_BINANCE_API_SECRET="s-456", HEDGEFLOW__METRICS_PORT="0",
               HEDGEFLOW__STATE_DIR=str(tmp_path / "state"), PYTHONUNBUFFERED="1", **extra)
    return env


def _config(tmp_path: Path, mode: str) -> Path:
    cfg = tmp_path / f"{mode}.yaml"
    cfg.write_text(f"mode: {mode}\n{CCXT_VENUE}")
    return cfg


def _cli(cfg: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hedgeflow", "--config", str(cfg), *args], cwd=ROOT, env=env,
                          input="", capture_output=True, text=True, timeout=60)


def _stderr_line(res: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr  # one clear error, no traceback
    return lines[0]


@pytest.mark.parametrize("args", ENTRY_POINTS, ids=lambda a: " ".join(a[:2]))
def test_every_entry_point_refuses_live_without_the_flag(args, listener, tmp_path):
    res = _cli(_config(tmp_path, "live"), args, _env(listener, tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    line = _stderr_line(res)
    assert FLAG in line and "binance" in line and "mode: live" not in line, line
    assert not listener.connected(), "refused only after connecting"
    assert not (tmp_path / "state").exists(), "up started something before refusing"


@pytest.mark.parametrize("args", [ENTRY_POINTS[0], ENTRY_POINTS[1], ENTRY_POINTS[3]], ids=lambda a: a[0])
def test_paper_mode_with_a_ccxt_venue_names_both_missing_pieces(args, listener, tmp_path):
    res = _cli(_config(tmp_path, "paper"), args, _env(listener, tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    text = res.stderr
    assert "mode: live" in text and FLAG in text, text
    assert not listener.connected()
    # the flag alone is not enough either
    res = _cli(_config(tmp_path, "paper"), [*args, FLAG], _env(listener, tmp_path))
    assert res.returncode == 2 and "mode: live" in res.stderr, res.stderr
    assert not listener.connected()


def test_env_switch_is_for_workers_only(listener, tmp_path):
    env = _env(listener, tmp_path, **{ENV_SWITCH: "1"})
    res = _cli(_config(tmp_path, "live"), ENTRY_POINTS[3], env)  # trade open: the flag, not the env var
    assert res.returncode == 2 and FLAG in _stderr_line(res), res.stderr
    assert not listener.connected()
    res = _cli(_config(tmp_path, "live"), ["worker"], _env(listener, tmp_path, **{ENV_SWITCH: "yes"}))
    assert res.returncode == 2 and ENV_SWITCH in _stderr_line(res), res.stderr  # exactly 1
    assert not listener.connected()


@pytest.mark.parametrize(("args", "extra"), [
    (["worker"], {ENV_SWITCH: "1"}),
    (["worker", FLAG], {}),
    (["trade", "open", "--symbol", "BTC/USDT:USDT", "--long", "binance", "--short", "binance",
      "--notional", "10", FLAG], {}),
], ids=["worker-env", "worker-flag", "trade-open-flag"])
def test_the_switch_and_mode_live_pass_the_interlock(args, extra, listener, tmp_path):
    """With both, the command goes on and connects (to this test's listener, which never answers)."""
    cmd = [sys.executable, "-m", "hedgeflow", "--config", str(_config(tmp_path, "live")), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(listener, tmp_path, **extra), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.connected(wait=30), "did not get past the interlock"
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "refusing" not in err, err


def test_paper_needs_nothing_and_run_worker_checks_too(monkeypatch):
    paper = load_settings(environ={})  # demo profile: simulated venues
    assert paper.live_refusal(switch=False) is None
    live = load_settings(environ={"HEDGEFLOW__MODE": "live",
                                  "HEDGEFLOW__VENUES": '[{"name": "binance", "kind": "ccxt"}]',
                                  "HEDGEFLOW_VENUE_BINANCE_API_KEY": "k", "HEDGEFLOW_VENUE_BINANCE_API_SECRET": "s"})
    assert live.live_refusal(switch=True) is None
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    import asyncio

    with pytest.raises(WorkerError, match=ENV_SWITCH):  # an in-process worker, before connecting
        asyncio.run(run_worker(live, connect_timeout=0.1))
    monkeypatch.setenv(ENV_SWITCH, "1")
    assert live.live_refusal(switch=True, env_ok=True) is None


# --- demo and testnet accounts (issue 11): play money, no switch ------------------------------------
def _venue_config(tmp_path: Path, environment: str | None, mode: str = "paper") -> Path:
    cfg = tmp_path / f"{environment or 'default'}-{mode}.yaml"
    env_line = f"    environment: {environment}\n" if environment else ""
    cfg.write_text(f"mode: {mode}\n{CCXT_VENUE}{env_line}")
    return cfg


def _ccxt_settings(environment: str | None, **env: str):
    venue = {"name": "binance", "kind": "ccxt", "exchange_id": "binanceusdm"}
    if environment:
        venue["environment"] = environment
    import json

    return load_settings(environ={"HEDGEFLOW__VENUES": json.dumps([venue]), "HEDGEFLOW_VENUE_BINANCE_API_KEY": "k",
                                  "HEDGEFLOW_VENUE_BINANCE_API_SECRET": "s", **env})


@pytest.mark.parametrize("environment", ["demo", "testnet"])
def test_demo_and_testnet_ccxt_venues_are_not_live(environment):
    s = _ccxt_settings(environment)  # mode paper: accepted, a demo account is no real money
    assert s.mode == "paper" and s.live_venues() == []
    assert s.live_refusal(switch=False) is None and s.live_refusal(switch=False, env_ok=True) is None
    live_profile = _ccxt_settings(environment, HEDGEFLOW__PROFILE="live")  # every venue a demo account
    assert live_profile.live_refusal(switch=False) is None


@pytest.mark.parametrize("environment", [None, "live"], ids=["default", "live"])
def test_a_live_ccxt_venue_still_needs_the_switch(environment):
    from config import ConfigError

    with pytest.raises(ConfigError, match="mode is 'paper'"):
        _ccxt_settings(environment)
    s = _ccxt_settings(environment, HEDGEFLOW__MODE="live")
    assert s.live_venues() == ["binance"]
    refusal = s.live_refusal(switch=False)
    assert refusal and FLAG in refusal and "binance" in refusal
    assert s.live_refusal(switch=True) is None
    # a live venue beside a demo one: still refused
    import json

    mixed = load_settings(environ={
        "HEDGEFLOW__MODE": "live", "HEDGEFLOW_VENUE_BINANCE_API_KEY": "k", "HEDGEFLOW_VENUE_BINANCE_API_SECRET": "s",
        "HEDGEFLOW_VENUE_DEMO_API_KEY": "k", "HEDGEFLOW_VENUE_DEMO_API_SECRET": "s",
        "HEDGEFLOW__VENUES": json.dumps([{"name": "binance", "kind": "ccxt"},
                                         {"name": "demo", "kind": "ccxt", "environment": "demo"}])})
    assert mixed.live_venues() == ["binance"] and FLAG in (mixed.live_refusal(switch=False) or "")


def test_the_live_profile_with_simulators_still_needs_the_switch():
    s = load_settings(environ={"HEDGEFLOW__PROFILE": "live", "HEDGEFLOW__VENUES": '[{"name": "s", "port": 9}]'})
    assert s.live_venues() == [] and FLAG in (s.live_refusal(switch=False) or "")


@pytest.mark.parametrize("args", [ENTRY_POINTS[0], ENTRY_POINTS[3]], ids=lambda a: a[0])
def test_a_demo_ccxt_venue_starts_without_the_switch(args, listener, tmp_path):
    """mode paper, no flag, no env switch: the command gets past the interlock and connects (to this
    test's listener, which never answers: no real exchange is contacted before Temporal)."""
    cmd = [sys.executable, "-m", "hedgeflow", "--config", str(_venue_config(tmp_path, "demo")), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(listener, tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.connected(wait=30), "a demo venue was refused by the interlock"
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "refusing" not in err, err


@pytest.mark.parametrize("args", [ENTRY_POINTS[0], ENTRY_POINTS[3]], ids=lambda a: a[0])
def test_an_explicitly_live_ccxt_venue_is_refused_without_the_switch(args, listener, tmp_path):
    res = _cli(_venue_config(tmp_path, "live", mode="live"), args, _env(listener, tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    line = _stderr_line(res)
    assert FLAG in line and "binance" in line, line
    assert not listener.connected()
