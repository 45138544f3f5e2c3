"""``hedgeflow report``."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

HELP = ("trades, funding collected, fees, slippage and net PnL; with replay data, the hindsight "
        "upper bound of the same period beside them")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="FILE",
                   help="replay CSV for the hindsight bound (default: the file of the last `up --profile replay`)")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from control.report import collect, load_rates, render
    from domain.report import hindsight_upper_bound, totals
    from hedgeflow.cli import CliError, settings_from
    from workers.client import connect

    settings = settings_from(args)
    data = args.data
    marker = Path(settings.state_dir) / "replay-data.txt"
    if data is None and marker.exists():
        data = marker.read_text().strip() or None
    client = await connect(settings)
    rows = await collect(client, settings.temporal.task_queue)
    bound = None
    if data:
        try:
            rates = load_rates(data)
        except (OSError, KeyError, ValueError) as exc:
            raise CliError(f"--data {data}: {exc}") from None
        bound = hindsight_upper_bound(rates, settings.scanner.notional_usd, settings.limits.max_open_trades)
    if args.json:
        t = totals(rows)
        print(json.dumps({"trades": t.trades, "open_trades": t.open_trades, "funding_usd": str(t.funding_usd), "fees_usd": str(t.fees_usd),
                          "slippage_usd": str(t.slippage_usd), "net_usd": str(t.net_usd),
                          "hindsight_bound_usd": str(bound) if bound is not None else None}, indent=2))
    else:
        print(render(rows, bound, settings.scanner.notional_usd))
    return 0
