"""``hedgeflow chaos --trades N --seed S``: trades under random venue faults, a partition, a dead
webhook, worker SIGKILLs and a dev-server restart, with positions sampled every 100 ms; then every
invariant is checked. Exit 1 on any violation."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import get_args

from config.settings import TradeExecution

HELP = (
    "chaos run: N trades under seeded venue faults (errors, timeouts, dropped responses, late execution, "
    "failed look-ups, partial fills, rejections, outages, a symbol settling, funding interval and price "
    "changes), a partition of one venue, a dead alert webhook, worker SIGKILL + restart and a dev-server "
    "restart; checks that every trade ended, venues are flat, no order executed twice, ledger equals venues, "
    "emergencies were alerted, no run is near the history limit and no trade was naked over 2 s"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trades", type=int, default=12, metavar="N", help="number of trades (default 12)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed of the fault plan (default 1)")
    p.add_argument("--batch", type=int, default=4, metavar="N", help="trades run together per batch (default 4)")
    p.add_argument("--no-server-restart", action="store_true", help="do not restart the dev server")
    p.add_argument("--partition-s", default="30-120", metavar="LO-HI",
                   help="duration of the one-venue partition, seconds, as LO-HI or one number; 0: none "
                        "(default 30-120)")
    p.add_argument("--no-dead-webhook", action="store_true",
                   help="do not point the worker's alerts.webhook_url at a closed port")
    p.add_argument("--timeout", type=float, default=180, metavar="SECONDS",
                   help="how long trades may take to finish once faults are cleared (default 180)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="workers on the task queue (default 2, as compose runs); the SIGKILL hits the first")
    p.add_argument("--styles", default="taker,maker_first,sliced", metavar="S,S",
                   help="execution styles the trades take in turn (default taker,maker_first,sliced)")
    p.add_argument("--json", metavar="FILE", help="also write checks, per-trade figures and the event log as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print the fault plan and every trade")


def run(args: argparse.Namespace) -> int:
    from hedgeflow.cli import CliError
    from lab.chaos import ChaosConfig, format_checks, format_table, run_chaos
    from lab.chaos_faults import parse_range

    if args.trades < 1 or args.batch < 1 or args.workers < 1:
        raise CliError("--trades, --batch and --workers must be >= 1", 2)
    styles = tuple(x.strip() for x in args.styles.split(",") if x.strip())
    allowed = get_args(TradeExecution.model_fields["style"].annotation)
    if not styles or any(x not in allowed for x in styles):
        raise CliError(f"--styles: one or more of {', '.join(allowed)}, comma-separated (got {args.styles!r})", 2)
    try:
        partition = None if str(args.partition_s).strip() in ("0", "none", "") else parse_range(args.partition_s)
    except ValueError as exc:
        raise CliError(f"--partition-s: {exc}", 2) from None
    cfg = ChaosConfig(trades=args.trades, seed=args.seed, batch=args.batch,
                      server_restart=not args.no_server_restart, finish_timeout_s=args.timeout,
                      partition_s=partition, dead_webhook=not args.no_dead_webhook, workers=args.workers,
                      styles=styles)
    try:
        checks, info = asyncio.run(run_chaos(cfg))
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise CliError(f"chaos run failed: {exc}", 1) from None
    if args.verbose:
        for e in info["events"]:
            print(f"  {e}")
        for t in info["trade_lines"]:
            print(f"  {t}")
    s = info["sampler"]
    print(f"chaos: {args.trades} trades, seed {args.seed}, worker started {info['worker_starts']} times, "
          f"{info['wall_s']:g}s")
    print(f"sampler: {s['rounds']} rounds every {s['achieved_period_ms']:g} ms (target {s['target_period_ms']} ms, "
          f"clock {s['clock']}, {s['read_errors']} failed reads); history: {info['history']['runs']} runs, "
          f"longest {info['history']['longest']} events")
    print(format_table(info["trades"], info["totals"]))
    print(format_checks(checks))
    failed = [c for c in checks if not c.ok]
    bad_ids = {r["trade_id"] for r in info["trades"]
               if any(r["trade_id"] in c.detail for c in failed)}
    for tid in sorted(bad_ids):
        print(f"events of {tid}:")
        for e in info["trade_events"].get(tid, []):
            print(f"    {e}")
    print(f"chaos: {'FAILED' if failed else 'OK'} ({len(checks) - len(failed)}/{len(checks)} checks passed)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checks": [c.__dict__ for c in checks], **info}, f, indent=2, default=str)
    if failed:
        print(f"hedgeflow chaos: {len(failed)} invariant(s) violated", file=sys.stderr)
        return 1
    return 0
