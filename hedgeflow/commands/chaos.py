"""``hedgeflow chaos --trades N --seed S``: trades under random venue faults, worker SIGKILLs and a
dev-server restart; then every invariant is checked. Exit 1 on any violation."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

HELP = (
    "chaos run: N trades under seeded venue faults (errors, timeouts, dropped responses, partial fills, "
    "rejections, outages), worker SIGKILL + restart and a dev-server restart; checks that every trade "
    "ended, venues are flat, no order executed twice, ledger equals venues, emergencies were alerted"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trades", type=int, default=12, metavar="N", help="number of trades (default 12)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed of the fault plan (default 1)")
    p.add_argument("--batch", type=int, default=4, metavar="N", help="trades run together per batch (default 4)")
    p.add_argument("--no-server-restart", action="store_true", help="do not restart the dev server")
    p.add_argument("--timeout", type=float, default=180, metavar="SECONDS",
                   help="how long trades may take to finish once faults are cleared (default 180)")
    p.add_argument("--json", metavar="FILE", help="also write checks and the event log as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print the fault plan and every trade")


def run(args: argparse.Namespace) -> int:
    from hedgeflow.cli import CliError
    from lab.chaos import ChaosConfig, format_checks, run_chaos

    if args.trades < 1 or args.batch < 1:
        raise CliError("--trades and --batch must be >= 1", 2)
    cfg = ChaosConfig(trades=args.trades, seed=args.seed, batch=args.batch,
                      server_restart=not args.no_server_restart, finish_timeout_s=args.timeout)
    try:
        checks, info = asyncio.run(run_chaos(cfg))
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise CliError(f"chaos run failed: {exc}", 1) from None
    if args.verbose:
        for e in info["events"]:
            print(f"  {e}")
        for t in info["trades"]:
            print(f"  {t}")
    print(f"chaos: {args.trades} trades, seed {args.seed}, worker started {info['worker_starts']} times, "
          f"{info['wall_s']:g}s")
    print(format_checks(checks))
    failed = [c for c in checks if not c.ok]
    print(f"chaos: {'FAILED' if failed else 'OK'} ({len(checks) - len(failed)}/{len(checks)} checks passed)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checks": [c.__dict__ for c in checks], **info}, f, indent=2, default=str)
    if failed:
        print(f"hedgeflow chaos: {len(failed)} invariant(s) violated", file=sys.stderr)
        return 1
    return 0
