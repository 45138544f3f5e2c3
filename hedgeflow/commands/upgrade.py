"""``hedgeflow upgrade status|promote BUILD_ID``: Worker Versioning for operators.

``status`` shows the Worker Deployment (``worker.deployment_name``): its current version, every
version with its status (``draining``: pinned trades still run on it; ``drained``: none does,
its workers may stop) and the running trades per version. ``promote`` makes a version current:
new trades, the scanner, reconcile and alerts go to it, running trades stay on theirs until
they continue as new. The same calls as ``temporal worker deployment describe`` and
``temporal worker deployment set-current-version``.
"""

from __future__ import annotations

import argparse
import asyncio
import json

HELP = "Worker Versioning: show the deployment's versions and drainage, or make a build current"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    st = sub.add_parser("status", help="current version, every version's status and drainage, trades per version")
    st.add_argument("--json", action="store_true")
    pr = sub.add_parser("promote", help="make BUILD_ID current (its workers must be running)")
    pr.add_argument("build_id", metavar="BUILD_ID")
    pr.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                    help="how long to wait for a worker of BUILD_ID to register (default 30)")
    for q in (st, pr):
        q.add_argument("--deployment-name", default=None, metavar="NAME",
                       help="the Worker Deployment (default worker.deployment_name: hedgeflow)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from control.deployments import DeploymentError, describe, promote, trades_by_version
    from hedgeflow.cli import CliError, settings_from
    from workers.client import connect

    settings = settings_from(args)
    name = args.deployment_name or settings.worker.deployment_name
    client = await connect(settings)
    if args.action == "promote":
        try:
            moved = await promote(client, name, args.build_id, wait_s=args.wait)
        except DeploymentError as exc:
            raise CliError(str(exc)) from None
        trades = await trades_by_version(client, settings.temporal.task_queue)
        print(f"{name}.{args.build_id} is current: new trades run on it"
              + (f"; {' and '.join(moved)} moved to it" if moved else ""))
        for build, ids in sorted(trades.items()):
            if build != args.build_id:
                print(f"  {len(ids)} running trade(s) stay on {_label(name, build)} until they end or continue as new")
        return 0
    view = await describe(client, name)
    trades = await trades_by_version(client, settings.temporal.task_queue)
    if args.json:
        print(json.dumps({"deployment": view.as_dict() if view else None,
                          "trades": {b or "unversioned": ids for b, ids in trades.items()}}, indent=2))
        return 0
    if view is None:
        print(f"deployment {name}: no versioned worker has polled it (workers are unversioned; "
              "start one with `hedgeflow worker --build-id ID`)")
    else:
        print(f"deployment {name}: current {view.current or '-'}" + (f", ramping {view.ramping}" if view.ramping else ""))
        print(f"  {'BUILD':<24} {'STATUS':<10} {'DRAINAGE':<10} {'TRADES':>6}  CREATED")
        for v in view.versions:
            print(f"  {v.build_id:<24} {v.status:<10} {v.drainage or '-':<10} {len(trades.get(v.build_id, [])):>6}  {v.created}")
    if trades.get(""):
        print(f"  {len(trades[''])} running trade(s) are unversioned (started on unversioned workers)")
    return 0


def _label(name: str, build: str) -> str:
    return f"{name}.{build}" if build else "unversioned workers"
