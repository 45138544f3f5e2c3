"""``hedgeflow bench [--quick] [--json FILE]``: measure leg skew, open-to-hedged latency,
orphan exposure, a plain asyncio + ccxt baseline, the scanner cycle and a concurrency run."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path

HELP = (
    "benchmark: leg skew, open-to-hedged, orphan exposure vs a plain asyncio+ccxt baseline, scanner "
    "cycle and N holding trades on N workers at the production limiter; starts its own dev server, simulators "
    "and workers"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="reduced set: 30 opens, 10 single-leg failures, 50 holding trades for 20 s (< 5 min)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    p.add_argument("--opens", type=int, metavar="N", help="sequential opens measured (default 200; quick 30)")
    p.add_argument("--orphans", type=int, metavar="N", help="single-leg failures measured (default 50; quick 10)")
    p.add_argument("--concurrent", type=int, metavar="N", help="holding trades (default 200; quick 50)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes the holding trades run on (default 1)")
    p.add_argument("--hold-venue-rps", type=float, metavar="N",
                   help="client-side limit per venue while the trades hold (default 40: the production "
                   "limiter, Binance's 2,400 weight a minute); the opens run at --venue-rps")
    p.add_argument("--window", type=float, metavar="SECONDS", help="concurrency measuring window (default 60; quick 20)")
    p.add_argument("--monitor-interval", type=float, metavar="SECONDS", help="hold monitor interval (default 10)")
    p.add_argument("--notional", type=Decimal, metavar="USD", help="notional per trade (default 200)")
    p.add_argument("--venue-rps", type=float, metavar="N",
                   help="client-side request rate limit per venue for worker and baseline (default 1000: "
                   "the loopback simulators have no limit worth modelling)")
    p.add_argument("--no-scan", action="store_true", help="skip the scanner cycle benchmark")


def run(args: argparse.Namespace) -> int:
    from hedgeflow.cli import CliError
    from lab.bench import BenchConfig, format_table, run_bench
    from lab.bench_execution import format_execution

    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    for attr, name in (("opens", "opens"), ("orphans", "orphans"), ("concurrent", "concurrent"),
                       ("window_s", "window"), ("monitor_interval_s", "monitor_interval"),
                       ("notional", "notional"), ("venue_rps", "venue_rps"), ("workers", "workers"),
                       ("hold_venue_rps", "hold_venue_rps")):
        value = getattr(args, name)
        if value is not None:
            if value <= 0:
                raise CliError(f"--{name.replace('_', '-')} must be > 0", 2)
            setattr(cfg, attr, value)
    if args.no_scan:
        cfg.scan = False
    try:
        result = asyncio.run(run_bench(cfg))
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise CliError(f"bench failed: {exc}", 1) from None
    print(format_table(result))
    print("\n" + format_execution(result["execution"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nfigures written to {args.json}", file=sys.stderr)
    return 0
