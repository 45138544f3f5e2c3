"""``hedgeflow backtest`` end to end, as a subprocess, on a slice of the shared funding file: the
CONTRACT's JSON keys, per-trade funding against an independent recomputation from the CSV to the
cent, the plot, sweeps (one row per combination, in worker processes) and refusals."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from datetime import datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "funding" / "binance_bybit_okx_2023-01_2024-06.csv"
CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"
SLICE = ["--from", "2023-01-01T00:00:00Z", "--to", "2023-03-31T23:59:59Z"]
TRADE_KEYS = {"symbol", "long_venue", "short_venue", "opened_at", "closed_at", "qty", "notional_usd", "funding_usd",
              "fees_usd", "slippage_usd", "net_usd", "exit_reason", "entry_edge"}
TOTAL_KEYS = {"trades", "funding_usd", "fees_usd", "slippage_usd", "net_usd", "sharpe", "max_drawdown_usd"}
TOP_KEYS = {"trades", "totals", "hindsight_bound_usd", "wall_s"}

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/funding is not beside the repo")


def backtest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hedgeflow", "backtest", "--data", str(DATA), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={"PATH": "/usr/bin:/bin"})


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def csv_rows() -> list[tuple[int, str, str, D, D]]:
    """(time ms, venue, symbol, rate, mark) with the csv module, marks carried forward."""
    out, last_mark = [], {}
    with DATA.open(newline="") as f:
        for row in csv.DictReader(f):
            key = (row["venue"], row["symbol"])
            if row["mark_price"]:
                last_mark[key] = D(row["mark_price"])
            out.append((ms(row["time"]), row["venue"], row["symbol"], D(row["funding_rate"]), last_mark[key]))
    return out


def funding_from_csv(trade: dict, rows: list | None = None) -> D:
    """Independent of the code under test: the CONTRACT's rule (the long pays qty × mark × rate at
    each settlement after opening and up to closing, the short receives)."""
    qty, t0 = D(trade["qty"]), ms(trade["opened_at"])
    t1 = ms(trade["closed_at"]) if trade["closed_at"] else float("inf")
    total = D(0)
    for t, venue, symbol, rate, mark in rows if rows is not None else csv_rows():
        if symbol == trade["symbol"] and venue in (trade["long_venue"], trade["short_venue"]) and t0 < t <= t1:
            amount = qty * mark * rate
            total += -amount if venue == trade["long_venue"] else amount
    return total


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    from hedgeflow.cli import main

    code = main(["backtest", "--data", str(DATA), "--no-progress", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_issues_command_on_the_whole_file_funding_to_the_cent(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HEDGEFLOW_CONFIG", raising=False)
    out = tmp_path / "bt.json"
    code, _, err = in_process(capsys, "--json", str(out))  # the issue's command, in this process
    assert code == 0, err
    res = json.loads(out.read_text())
    rows = csv_rows()
    assert res["trades"] and res["wall_s"] < 60
    for t in res["trades"]:
        assert float(funding_from_csv(t, rows).quantize(D("0.01"))) == t["funding_usd"], t
    assert res["hindsight_bound_usd"] == 330.99  # all three venues settle 8-hourly: the same-instant sum


def test_backtest_json_keys_funding_to_the_cent_and_plot(tmp_path):
    out, png = tmp_path / "bt.json", tmp_path / "bt.png"
    # a longer horizon opens more trades on this data (the default 24 h opens two in this quarter)
    p = backtest(*SLICE, "--set", "horizon_h=72", "--json", str(out), "--plot", str(png))
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert TOP_KEYS <= set(res) and TOTAL_KEYS <= set(res["totals"])
    contract = CONTRACT.read_text() if CONTRACT.exists() else ""
    for key in TRADE_KEYS | TOTAL_KEYS | TOP_KEYS:  # the names the CONTRACT fixes
        assert not contract or f"`{key}`" in contract, key
    trades = res["trades"]
    assert len(trades) >= 5 and res["totals"]["trades"] == len(trades)
    rows = csv_rows()
    for t in trades:
        assert TRADE_KEYS <= set(t)
        assert ms("2023-01-01T00:00:00Z") <= ms(t["opened_at"]) <= ms("2023-04-01T00:00:00Z")
        assert float(funding_from_csv(t, rows).quantize(D("0.01"))) == t["funding_usd"], t
        assert abs(t["net_usd"] - (t["funding_usd"] - t["fees_usd"] - t["slippage_usd"] + t["basis_usd"])) < 0.015
    tot = res["totals"]
    assert abs(tot["funding_usd"] - sum(t["funding_usd"] for t in trades)) < 0.01 * len(trades)
    assert res["hindsight_bound_usd"] > tot["funding_usd"] > 0
    # the printed tables and the measured time
    assert "totals (USD)" in p.stdout and "hindsight bound" in p.stdout
    assert re.search(r"wall time\s+│\s+[\d.]+ s", p.stdout)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_sweep_prints_one_row_per_combination_from_worker_processes(tmp_path):
    out = tmp_path / "sweep.json"
    p = backtest(*SLICE, "--sweep", "min_spread_bps=1,5", "--sweep", "horizon_h=24,72", "--json", str(out))
    assert p.returncode == 0, p.stderr
    rows = json.loads(out.read_text())["sweep"]
    assert [(r["min_spread_bps"], r["horizon_h"]) for r in rows] == [("1", "24"), ("1", "72"), ("5", "24"), ("5", "72")]
    for r in rows:
        assert {"trades", "net_usd", "sharpe", "max_drawdown_usd"} <= set(r)
    by = {(r["min_spread_bps"], r["horizon_h"]): r for r in rows}
    assert by[("1", "72")]["trades"] > by[("1", "24")]["trades"] > 0  # a longer horizon pays more costs
    assert by[("5", "72")]["trades"] <= by[("1", "72")]["trades"]  # a stricter spread opens no more
    assert "sweep: 4 combinations" in p.stdout and "2 process(es)" in p.stdout
    assert p.stdout.count("│ 1 ") + p.stdout.count("│ 5 ") >= 4


def test_sweep_runs_in_worker_processes():
    from hedgeflow.commands import backtest as bt

    seen = []

    class Spy(bt.ProcessPoolExecutor):  # the pool the command uses, with its worker count
        def __init__(self, *a, **kw):
            seen.append(kw.get("max_workers"))
            super().__init__(*a, **kw)

    from config import load_settings
    from domain.replay_data import read_rows

    rows = [r for r in read_rows(DATA) if r.t_ms < ms("2023-02-01T00:00:00Z")]
    settings = load_settings(profile="replay", environ={})
    jobs = [({"horizon_h": h}, bt.params_for(settings, [("horizon_h", h)], ["binance", "bybit", "okx"]), None, None)
            for h in ("24", "72")]
    orig, bt.ProcessPoolExecutor = bt.ProcessPoolExecutor, Spy
    try:
        out = bt.run_sweep(rows, jobs, 2)
    finally:
        bt.ProcessPoolExecutor = orig
    assert seen == [2] and [r["horizon_h"] for r in out] == ["24", "72"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]  # noqa: E731
    assert strip(out) == strip(bt.run_sweep(rows, jobs, 1))  # the same figures in one process


def test_bad_arguments_are_refused_with_exit_2(capsys):
    code, _, err = in_process(capsys, "--set", "no_such_setting=1")
    assert code == 2 and "unknown setting 'no_such_setting'" in err
    code, _, err = in_process(capsys, "--set", "horizon_h=-1")
    assert code == 2 and "horizon_h" in err
    code, _, err = in_process(capsys, "--from", "2030-01-01T00:00:00Z")
    assert code == 2 and "no rows" in err
    code, _, err = in_process(capsys, "--plot", "x.html")
    assert code == 2 and ".png" in err


def test_a_replay_time_scale_left_in_the_environment_does_not_shrink_the_backtests_durations(monkeypatch):
    """Virtual time is venue time: ``HEDGEFLOW__SCANNER__TIME_SCALE`` (set by a replay's ``up``)
    must not divide the backtest's cycle, lead, staleness or cooldowns."""
    from config import load_settings
    from hedgeflow.commands.backtest import params_for

    plain = params_for(load_settings(None, profile="replay"), [], ["binance", "bybit"])
    monkeypatch.setenv("HEDGEFLOW__SCANNER__TIME_SCALE", "3600")
    scaled = load_settings(None, profile="replay")
    assert scaled.scanner.time_scale == 3600
    got = params_for(scaled, [], ["binance", "bybit"])
    assert (got.cycle_ms, got.edge.min_settlement_lead_ms, got.edge.stale_after_ms, got.edge.hour_ms) == \
        (plain.cycle_ms, plain.edge.min_settlement_lead_ms, plain.edge.stale_after_ms, plain.edge.hour_ms)
    assert got.limits.symbol_cooldown_ms == plain.limits.symbol_cooldown_ms
