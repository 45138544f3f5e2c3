"""``hedgeflow halt [--close-all]``."""

from __future__ import annotations

import argparse
import asyncio

HELP = ("stop opening trades (scanner and `trade open`); closes still go through. "
        "--close-all also closes every open trade")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--close-all", action="store_true", help="also close every open trade (graceful close)")
    p.add_argument("--reason", default="operator halt")


def trades_live(args: argparse.Namespace) -> bool:
    """The live interlock applies to --close-all (it closes every trade)."""
    return bool(args.close_all)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from control.scanner import ScannerUnavailable, halt
    from hedgeflow.cli import CliError, settings_from
    from workers.client import connect

    settings = settings_from(args)
    client = await connect(settings)
    try:
        closed = await halt(client, settings, close_all=args.close_all, reason=args.reason)
    except ScannerUnavailable as exc:
        raise CliError(str(exc)) from None
    print("halted: no new trades open until `hedgeflow resume`")
    if args.close_all:
        print(f"close sent to {len(closed)} trade(s)" + "".join(f"\n  {c}" for c in closed))
    return 0
