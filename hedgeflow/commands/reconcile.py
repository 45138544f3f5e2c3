"""``hedgeflow reconcile [--flatten-orphans [--yes]] [--json]``: one reconciliation pass now.

Compares each venue's positions with the running trades' legs and the ledger's orders with
the venues' (see ``activities/reconcile.py``); findings become incidents and alerts. With
``--flatten-orphans`` the orphan positions found are listed and, after confirmation (type
``yes``; ``--yes`` skips the question; without a terminal and without ``--yes`` it refuses),
closed with reduce-only market orders. Exit code 0 when nothing is wrong, 3 when incidents
remain open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

HELP = "compare venue positions and orders with trades and the ledger; --flatten-orphans closes orphans"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flatten-orphans", action="store_true",
                   help="close orphan positions (reduce-only market orders) after confirmation")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def trades_live(args: argparse.Namespace) -> bool:
    """The live interlock applies to --flatten-orphans (it sends orders)."""
    return bool(args.flatten_orphans)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def _print(report, out=sys.stdout) -> None:
    print(f"venues ok: {', '.join(report.venues_ok) or '-'}"
          + (f"; down: {', '.join(f'{k} ({v})' for k, v in report.venues_down.items())}" if report.venues_down else ""),
          file=out)
    print(f"running trades checked: {report.trades_checked}; ledger orders checked: {report.orders_checked}",
          file=out)
    if not report.discrepancies:
        print("no discrepancies", file=out)
    for d in report.discrepancies:
        print(f"  [{d.kind}] incident #{d.incident_id}{' (new)' if d.new else ''}: {d.detail}", file=out)
    for key in report.flattened:
        print(f"  flattened: {key}", file=out)
    print(f"open incidents: {report.open_incidents}", file=out)


async def _run(args: argparse.Namespace) -> int:
    from activities.reconcile import Reconciler, incident_key
    from control import trades as control_trades
    from hedgeflow.cli import CliError, settings_from
    from ledger import Ledger
    from telemetry.alerts import Notifier
    from venues.pool import GatewayPool
    from workers.client import connect

    settings = settings_from(args)
    client = await connect(settings)
    ledger = await asyncio.to_thread(Ledger.for_settings, settings)
    async with GatewayPool(settings) as pool:
        rec = Reconciler(settings, pool, ledger, Notifier.from_settings(settings), control_trades)
        report = await rec.run(client)
        orphans = [d for d in report.discrepancies if d.kind == "orphan"]
        if args.flatten_orphans and orphans:
            print("orphan positions:")
            for d in orphans:
                print(f"  {d.venue} {d.symbol} {d.qty} (incident #{d.incident_id})")
            if not args.yes:
                if not sys.stdin.isatty():
                    raise CliError("refusing to flatten without confirmation: stdin is not a terminal; "
                                   "pass --yes to confirm", 2)
                answer = await asyncio.to_thread(input, f"close these {len(orphans)} position(s) with reduce-only market orders? "
                               "type 'yes': ")
                if answer.strip().lower() != "yes":
                    print("nothing flattened")
                    _print(report)
                    return 1
            report = await rec.run(client, flatten=[incident_key(d) for d in orphans])
        elif args.flatten_orphans:
            print("no orphan positions to flatten")
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        _print(report)
    return 3 if report.open_incidents else 0
