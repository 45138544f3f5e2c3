"""A synthetic replay file of seven venues with mixed funding schedules (the backtest's bench),
and its checks.

    .venv/bin/python tests/test_backtest_synth.py /tmp/seven.csv [--days 365] [--symbols 3]
    .venv/bin/hedgeflow backtest --data /tmp/seven.csv --json /tmp/seven.json

Venues: ``hourly`` settles every hour (its rate is per hour), ``offset8`` every 8 h at 04/12/20
UTC, ``fourh`` every 4 h, the other four every 8 h at 00/08/16 UTC. Rates are mean-reverting
around 1e-4 per 8 h with venue-specific levels and occasional spikes; prices share one random walk
per symbol with a small per-venue basis. Seeded: the same file every time.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

H = 3_600_000
#: (name, interval hours, offset hours)
VENUES = [("hourly", 1, 0), ("offset8", 8, 4), ("fourh", 4, 0), ("v8a", 8, 0), ("v8b", 8, 0), ("v8c", 8, 0),
          ("v8d", 8, 0)]
SYMBOLS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "LTC"]
BASE = {"BTC": 30000.0, "ETH": 2000.0, "SOL": 60.0, "XRP": 0.6, "DOGE": 0.08, "ADA": 0.4, "AVAX": 20.0,
        "LINK": 8.0, "DOT": 6.0, "LTC": 80.0}
START_MS = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_synthetic(path: str | Path, days: int = 365, symbols: int = 3, seed: int = 1) -> int:
    """Write the file; returns the number of rows."""
    rng = random.Random(seed)
    syms = SYMBOLS[:symbols]
    hours = days * 24
    prices = {s: [BASE[s]] for s in syms}
    for s in syms:  # one hourly random walk per symbol, 60 % a year
        for _ in range(hours):
            prices[s].append(prices[s][-1] * math.exp(rng.gauss(0, 0.6 / math.sqrt(24 * 365))))
    rows = []
    for v, iv, off in VENUES:
        for s in syms:
            level = 1e-4 + rng.uniform(-0.6e-4, 0.8e-4)  # per 8 h
            basis = rng.uniform(-4e-4, 4e-4)
            x = level
            for h in range(off, hours + 1, iv):
                x += 0.05 * iv * (level - x) + rng.gauss(0, 0.4e-4 * math.sqrt(iv))
                spike = rng.random() < 0.002 * iv
                r8 = x + (rng.choice((-1, 1)) * rng.uniform(5e-4, 2e-3) if spike else 0.0)
                rate = r8 * iv / 8  # the venue's own interval
                mark = prices[s][h] * (1 + basis + rng.gauss(0, 1e-4))
                rows.append((START_MS + h * H, v, f"{s}/USDT:USDT", rate, mark))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    with open(path, "w") as f:
        f.write("time,venue,symbol,funding_rate,mark_price\n")
        for t, v, s, rate, mark in rows:
            f.write(f"{iso(t)},{v},{s},{rate:.8f},{mark:.6g}\n")
    return len(rows)


def test_synthetic_file_has_the_mixed_schedules(tmp_path):
    from domain.backtest_model import load_series
    from domain.replay_data import read_rows

    p = tmp_path / "seven.csv"
    n = write_synthetic(p, days=3, symbols=2)
    series = load_series(read_rows(p))
    assert n == sum(len(s.times) for s in series.values())
    assert {v for v, _ in series} == {v for v, _, _ in VENUES}
    hourly = series[("hourly", "BTC/USDT:USDT")]
    assert hourly.interval_after(0) == H and len(hourly.times) == 3 * 24 + 1
    offset = series[("offset8", "BTC/USDT:USDT")]
    assert [datetime.fromtimestamp(t / 1000, UTC).hour for t in offset.times[:3]] == [4, 12, 20]
    assert offset.interval_after(0) == 8 * H and series[("fourh", "BTC/USDT:USDT")].interval_after(0) == 4 * H


def test_a_year_of_seven_venues_runs_in_under_a_minute(tmp_path, capsys, monkeypatch):
    """The performance target, measured by the command itself (the figure is printed)."""
    import json
    import re

    from hedgeflow.cli import main

    monkeypatch.delenv("HEDGEFLOW_CONFIG", raising=False)
    p, out = tmp_path / "seven.csv", tmp_path / "seven.json"
    assert write_synthetic(p, days=365, symbols=3) == 49_293
    t0 = time.perf_counter()
    code = main(["backtest", "--data", str(p), "--json", str(out), "--rows", "0", "--no-progress"])
    wall = time.perf_counter() - t0
    printed = capsys.readouterr().out
    assert code == 0
    res = json.loads(out.read_text())
    with capsys.disabled():
        print(f"\na year of 7 venues x 3 symbols: {res['wall_s']} s in the backtest, {wall:.1f} s the command")
    assert re.search(r"wall time\s+│\s+[\d.]+ s", printed)
    assert res["totals"]["trades"] > 100 and res["cycles"] > 8760
    assert res["wall_s"] <= 60 and wall <= 60


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="write the synthetic seven-venue replay file")
    ap.add_argument("out")
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--symbols", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = write_synthetic(a.out, a.days, a.symbols, a.seed)
    print(f"{a.out}: {rows} rows, {len(VENUES)} venues, {a.symbols} symbols, {a.days} days "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
