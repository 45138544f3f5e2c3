"""Benchmark of one scan cycle: N synthetic symbols × V simulated venues over loopback.

``python -m lab.bench_scan [--symbols 300] [--venues 3] [--cycles 5]`` starts the
simulators as subprocesses, then runs the scanner's cycle I/O and arithmetic (one bulk funding
call per venue, ranking every pair, books for the top candidates) exactly as the activities
do, and prints wall time and API calls per cycle. HTTP requests are counted at ccxt's
transport (``Exchange.fetch``), so the figure is what the venues actually received.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workers.proc import free_port
from workers.simproc import SimProcess

ROOT = Path(__file__).resolve().parents[1]


def _start_sim(name: str, port: int, symbols: int, tmp: Path, seed: int) -> SimProcess:
    """A simulator with ``symbols`` symbols; it keeps this process's environment."""
    sim = SimProcess(name, port, tmp / f"{name}.sqlite", "--seed", str(seed), "--symbols", str(symbols),
                     "--funding-interval", "60", "--weight-limit", "1000000",
                     log_file=tmp / f"{name}.log", cwd=ROOT, clean_env=False)
    return sim.start(timeout=30)


async def _cycles(urls: dict[str, str], symbols: int, cycles: int) -> dict[str, Any]:
    import json

    from activities.scanner import fetch_books, scan_venues
    from config import load_settings
    from messages.scanner import BookKey, BooksRequest, ScannerParams
    from venues.pool import GatewayPool

    venues = [{"name": n, "kind": "sim", "base_url": u} for n, u in urls.items()]
    settings = load_settings(environ={"HEDGEFLOW__VENUES": json.dumps(venues), "HEDGEFLOW__METRICS_PORT": "0"})
    params = ScannerParams.from_settings(settings)
    http = {"n": 0}
    async with GatewayPool(settings) as pool:
        for name in urls:
            ex = pool.get(name).exchange
            orig = ex.fetch

            async def counted(*a: Any, _orig: Any = orig, **k: Any) -> Any:
                http["n"] += 1
                return await _orig(*a, **k)

            ex.fetch = counted
        # warm-up: markets (once per gateway) and the interval table (hourly) are not per-cycle
        # costs; reported apart as the first cycle
        t_first = time.perf_counter()
        await scan_venues(pool, params, list(urls))
        first_s, first_calls = time.perf_counter() - t_first, http["n"]
        walls, calls, books_calls, pairs, accepted = [], [], [], 0, 0
        for _ in range(cycles):
            http["n"] = 0
            t0 = time.perf_counter()
            scan = await scan_venues(pool, params, list(urls))
            picked, seen = [], set()
            for e in scan.accepted:
                if e.symbol not in seen and len(picked) < params.top_n_books:
                    seen.add(e.symbol)
                    picked.append(e)
            keys = sorted({(v, e.symbol) for e in picked for v in (e.long_venue, e.short_venue)})
            if keys:
                await fetch_books(pool, BooksRequest(items=[BookKey(venue=v, symbol=s) for v, s in keys],
                                                     depth=params.book_depth))
            walls.append(time.perf_counter() - t0)
            calls.append(http["n"])
            books_calls.append(len(keys))
            pairs, accepted = scan.pairs, len(scan.accepted)
    walls.sort()
    return {
        "symbols": symbols,
        "venues": len(urls),
        "cycles": cycles,
        "wall_s_median": round(walls[len(walls) // 2], 4),
        "wall_s_max": round(walls[-1], 4),
        "api_calls_per_cycle": max(calls),
        "funding_calls_per_cycle": len(urls),
        "book_calls_per_cycle": max(books_calls),
        "first_cycle_s": round(first_s, 4),
        "first_cycle_api_calls": first_calls,  # per venue: markets, interval table, funding (no books)
        "pairs_evaluated": pairs,
        "candidates_accepted": accepted,
    }


def bench_scan_cycle(symbols: int = 300, venues: int = 3, cycles: int = 5) -> dict[str, Any]:
    """Start ``venues`` simulators with ``symbols`` symbols each, time ``cycles`` scan cycles."""
    sims: list[SimProcess] = []
    with tempfile.TemporaryDirectory(prefix="hf-bench-") as d:
        tmp = Path(d)
        try:
            urls = {}
            for i in range(venues):
                name = f"sim-{chr(ord('a') + i)}"
                sim = _start_sim(name, free_port(), symbols, tmp, seed=i + 1)
                sims.append(sim)
                urls[name] = sim.url
            return asyncio.run(_cycles(urls, symbols, cycles))
        finally:
            for sim in sims:  # all at once, then wait for each
                sim.child.send_signal(signal.SIGTERM)
            for sim in sims:
                sim.stop(timeout=10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.bench_scan", description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--venues", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=5)
    a = ap.parse_args(argv)
    r = bench_scan_cycle(a.symbols, a.venues, a.cycles)
    width = max(len(k) for k in r)
    print("scan cycle benchmark (loopback simulators)")
    for k, v in r.items():
        print(f"  {k:<{width}}  {v}")
    target = "met" if r["wall_s_median"] < 1 and r["api_calls_per_cycle"] == r["funding_calls_per_cycle"] + r[
        "book_calls_per_cycle"] else "NOT met"
    print(f"  target (<1 s, one funding call per venue + books for top candidates): {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
