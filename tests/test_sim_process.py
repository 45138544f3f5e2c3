"""``python -m venues.sim`` as a real subprocess: CLI, signals, persistence across restarts."""

from __future__ import annotations

import signal
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import ccxt.async_support as ccxt
import pytest

from tests.simproc import sim_client
from workers.proc import free_port
from workers.simproc import SimProcess, spawn_sim

REPO = Path(__file__).resolve().parent.parent

BTC = "BTC/USDT:USDT"


async def test_restart_keeps_state(tmp_path) -> None:
    state = tmp_path / "sim-r.sqlite"
    port = free_port()
    p = SimProcess("sim-r", port, state, "--funding-interval", "3600").start()
    try:
        async with sim_client(p.url) as c:
            await c.set_leverage(5, BTC)
            p.admin("/_sim/market", {"symbol": BTC, "price": "40000", "funding_rate": "0.0002"})
            o = await c.create_order(BTC, "market", "buy", 0.05, params={"newClientOrderId": "keep-1"})
            await c.create_order(BTC, "limit", "buy", 0.01, 30000, params={"newClientOrderId": "rest-1"})
            p.admin("/_sim/settle", {})
            before = p.admin("/_sim/state")
    finally:
        p.kill()  # SIGKILL: nothing gets flushed on the way out; write-through must have done it
    assert p.proc.returncode == -signal.SIGKILL
    p2 = SimProcess("sim-r", port, state, "--funding-interval", "3600").start()
    try:
        after = p2.admin("/_sim/state")
        assert after["balances"]["USDT"]["wallet"] == before["balances"]["USDT"]["wallet"]
        assert after["positions"] == before["positions"]
        assert [x["orderId"] for x in after["orders"]] == [x["orderId"] for x in before["orders"]]
        assert after["income"] == before["income"]
        assert any(i["incomeType"] == "FUNDING_FEE" and D(i["income"]) == D("-0.4") for i in after["income"])
        async with sim_client(p2.url) as c:
            got = await c.fetch_order(None, BTC, params={"clientOrderId": "keep-1"})
            assert got["id"] == o["id"] and got["filled"] == 0.05
            assert [x["clientOrderId"] for x in await c.fetch_open_orders(BTC)] == ["rest-1"]
            pos = (await c.fetch_positions([BTC]))[0]
            assert pos["leverage"] == 5 and pos["contracts"] == 0.05 and pos["markPrice"] == 40000  # pin kept
            n = await c.create_order(BTC, "market", "sell", 0.05, params={"reduceOnly": True})
            assert int(n["id"]) > int(o["id"])
        assert p2.stop() == 0  # SIGTERM stops cleanly
    finally:
        p2.kill()


async def test_cli_line_env_credentials(tmp_path) -> None:
    env = {"HEDGEFLOW_SIM_API_KEY": "k-env", "HEDGEFLOW_SIM_API_SECRET": "s-env"}
    with spawn_sim("sim-env", tmp_path / "e.sqlite", env=env) as p:
        async with sim_client(p.url, api_key="k-env", secret="s-env") as good, sim_client(p.url) as demo:
            assert (await good.fetch_balance())["USDT"]["total"] == 100000
            with pytest.raises(ccxt.AuthenticationError):
                await demo.fetch_balance()
    out = p.log_file.read_text()
    assert out.splitlines()[0] == f"sim sim-env listening on {p.url}"
    assert p.proc.returncode == 0


def test_help_and_bad_args(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "venues.sim", "--help"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and "--funding-interval" in r.stdout and "--replay" in r.stdout
    r = subprocess.run([sys.executable, "-m", "venues.sim", "--name", "x", "--port", "1", "--state",
                        str(tmp_path / "x.sqlite"), "--replay", str(tmp_path / "missing.csv")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr


def test_build_parser_reuses_given_parser() -> None:
    import argparse

    from venues.sim import DEFAULT_API_KEY, build_parser, options_from_args

    parent = argparse.ArgumentParser(prog="hedgeflow")
    sub = parent.add_subparsers(dest="cmd")
    build_parser(sub.add_parser("sim"))
    args = parent.parse_args(["sim", "--name", "sim-a", "--port", "8701"])
    opts = options_from_args(args)
    # no --funding-interval: the dialect's own (Binance 8 h), resolved when the venue starts
    assert opts.funding_interval is None and opts.dialect == "binance" and opts.api_key == DEFAULT_API_KEY
    assert opts.state_path.endswith(".hedgeflow/sim-sim-a.sqlite")
    from venues.sim.dialects import get

    assert get("binance").funding_interval_s == 28800 and get("hyperliquid").funding_interval_s == 3600
