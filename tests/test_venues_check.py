"""``hedgeflow venues check`` against real simulator processes (binance dialect), the CLI run as a
subprocess with ``HEDGEFLOW__VENUES``: all good → exit 0 and one row per venue; a wrong key, a
skewed venue clock, a closed port → exit 1 with one clear line naming the venue, no traceback,
no secret printed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workers.proc import free_port
from workers.simproc import SimProcess

ROOT = Path(__file__).resolve().parents[1]
WRONG_KEY = "wrong-key-Q7xZ31"
SYMBOL = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("venues-check")
    started = {}
    try:
        for name in ("sim-a", "sim-b"):
            started[name] = SimProcess(name, free_port(), tmp / f"{name}.sqlite").start()
        yield started
    finally:
        for s in started.values():
            s.stop()


def _venue(sim: SimProcess, **extra) -> dict:
    return {"name": sim.name, "kind": "sim", "base_url": sim.url, **extra}


def _check(venues: list[dict], tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")}
    environ.update(HEDGEFLOW__VENUES=json.dumps(venues), HEDGEFLOW_CONFIG="", HEDGEFLOW__METRICS_PORT="0",
                   HEDGEFLOW__STATE_DIR=str(tmp_path / "state"), PYTHONUNBUFFERED="1", **env)
    return subprocess.run([sys.executable, "-m", "hedgeflow", "venues", "check", *args], cwd=ROOT, env=environ,
                          input="", capture_output=True, text=True, timeout=120)


def _problem_lines(res: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    return [ln for ln in res.stderr.splitlines() if ln.strip()]


def test_all_good_exits_0_and_shows_every_venue(sims, tmp_path):
    res = _check([_venue(s) for s in sims.values()], tmp_path, HEDGEFLOW__SCANNER__SYMBOLS=json.dumps([SYMBOL]))
    assert res.returncode == 0, res.stdout + res.stderr
    assert _problem_lines(res) == []
    rows = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.startswith("sim-")}
    assert set(rows) == {"sim-a", "sim-b"}, res.stdout
    for row in rows.values():
        assert "valid" in row and "one-way" in row and SYMBOL in row, row
    assert "all venues ok" in res.stdout
    assert "capabilities:" in res.stdout and "newClientOrderId" in res.stdout


def test_json_report(sims, tmp_path):
    res = _check([_venue(sims["sim-a"])], tmp_path, "--json", HEDGEFLOW__SCANNER__SYMBOLS=json.dumps([SYMBOL]))
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)
    assert data["ok"] is True and data["problems"] == []
    (v,) = data["venues"]
    assert v["venue"] == "sim-a" and v["kind"] == "sim" and v["reachable"] is True
    assert (v["keys"], v["trading"], v["withdrawal"]) == ("valid", "yes", "no")
    assert v["position_mode"] == "one-way" and v["margin_mode"] in ("cross", "unknown")
    assert abs(v["clock_offset_ms"]) < 1000
    assert v["fee_source"] == "venue" and v["taker_fee"] is not None
    (m,) = v["minimums"]
    assert m["symbol"] == SYMBOL and m["listed"] is True and m["min_qty"] is not None
    assert v["capabilities"]["family"] == "binance"
    assert "hedgeflow-demo-secret" not in res.stdout  # the (demo) secret never appears


def test_a_wrong_key_is_one_line_naming_the_venue_and_keys(sims, tmp_path):
    res = _check([_venue(sims["sim-a"]), _venue(sims["sim-b"], api_key=WRONG_KEY)], tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = _problem_lines(res)
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("sim-b:") and "keys" in lines[0], lines
    assert "HEDGEFLOW_VENUE_SIM_B_API_KEY" in lines[0]
    assert WRONG_KEY not in res.stdout + res.stderr  # a secret, even a wrong one


def test_clock_skew_is_reported_with_the_measured_offset(sims, tmp_path):
    sim = sims["sim-a"]
    sim.faults(clock_skew_ms=5000)
    try:
        res = _check([_venue(sim)], tmp_path, "--json")
    finally:
        sim.faults()  # {}: clears every fault
    assert res.returncode == 1, res.stdout + res.stderr
    lines = _problem_lines(res)
    skew = [ln for ln in lines if ln.startswith("sim-a:") and "clock skew" in ln]
    assert len(skew) == 1, lines
    measured = int(re.search(r"clock skew (\d+) ms", skew[0]).group(1))
    assert 4500 <= measured <= 5500, skew[0]
    assert "ahead" in skew[0]
    (v,) = json.loads(res.stdout)["venues"]
    assert -5500 <= v["clock_offset_ms"] <= -4500  # local − venue: the venue is ahead


def test_an_unreachable_venue_is_one_line_without_a_traceback(sims, tmp_path):
    closed = free_port()  # nothing listens there
    dead = {"name": "sim-dead", "kind": "sim", "base_url": f"http://127.0.0.1:{closed}"}
    res = _check([_venue(sims["sim-a"]), dead], tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = _problem_lines(res)
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("sim-dead:") and "unreachable" in lines[0] and str(closed) in lines[0], lines
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("sim-")]
    assert any(r.startswith("sim-a") and "valid" in r for r in rows), res.stdout
    assert any(r.startswith("sim-dead") and "unreachable" in r for r in rows), res.stdout


@pytest.fixture(scope="module")
def bybit_sim(tmp_path_factory):
    sim = SimProcess("sim-y", free_port(), tmp_path_factory.mktemp("venues-check-bybit") / "sim-y.sqlite",
                     "--dialect", "bybit").start()
    yield sim
    sim.stop()


def test_a_bybit_dialect_venue_reads_its_key_permissions(bybit_sim, tmp_path):
    res = _check([_venue(bybit_sim, dialect="bybit")], tmp_path, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    (v,) = json.loads(res.stdout)["venues"]
    assert (v["family"], v["keys"], v["trading"], v["withdrawal"]) == ("bybit", "valid", "yes", "no")
    assert v["permissions_source"] == "/v5/user/query-api"  # the venue's own answer, not assumed
    assert v["position_mode"] == "one-way" and v["capabilities"]["client_id"].endswith("(`orderLinkId`)")
    res = _check([_venue(bybit_sim, dialect="bybit", api_key=WRONG_KEY)], tmp_path)
    assert res.returncode == 1
    (line,) = _problem_lines(res)
    assert line.startswith("sim-y:") and "keys" in line and WRONG_KEY not in res.stdout + res.stderr
