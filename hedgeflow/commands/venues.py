"""``hedgeflow venues check [--json]``: keys, permissions, clock skew, position and margin mode,
fee tier, minimums and capabilities of every configured venue (``control.venues_check``).

Read-only: nothing is sent that could open or change a position, so no live switch is needed.
Prints one row per venue, then one line per problem on stderr; exit 1 when there is any, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

HELP = "check every configured venue: keys, permissions, clock skew, position/margin mode, fees, minimums"

COLUMNS = ("VENUE", "KIND", "ENV", "KEYS", "TRADE", "WITHDRAW", "CLOCK ms", "POSITION", "MARGIN", "TAKER/MAKER",
           "MINIMUMS (qty / notional)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    check = sub.add_parser("check", help="check every configured venue; exit 1 with one line per problem")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--timeout", type=float, default=None, metavar="S",
                       help="seconds allowed per venue (default: a few of its request timeouts)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def _clock(v: Any) -> str:
    if v.clock_offset_ms is None:
        return "-"
    return f"{v.clock_offset_ms:+d}" + (f" ±{v.clock_uncertainty_ms}" if v.clock_uncertainty_ms else "")


def _minimums(v: Any) -> str:
    cells = []
    for m in v.minimums:
        cells.append(f"{m.symbol} {m.min_qty} / {m.min_notional}" if m.listed else f"{m.symbol} not listed")
    text = "; ".join(cells) or "-"
    if not v.symbols_configured and v.markets is not None:
        text += f" ({v.markets} markets, scanner: every symbol)"
    return text


def _row(v: Any) -> list[str]:
    if not v.reachable:
        return [v.venue, v.kind, v.environment, "unreachable", "-", "-", "-", "-", "-", "-", "-"]
    fees = f"{v.taker_fee or '-'}/{v.maker_fee or '-'}" + ("" if v.fee_source == "venue" else " (config)")
    return [v.venue, v.kind, v.environment, v.keys, v.trading, v.withdrawal, _clock(v), v.position_mode,
            v.margin_mode, fees, _minimums(v)]


def format_table(rows: list[list[str]]) -> str:
    """Plain aligned text (``rich`` renders it when installed)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)]

        def fmt(cells: list[str] | tuple[str, ...]) -> str:
            return "  ".join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

        return "\n".join([fmt(COLUMNS), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])
    from rich import box

    # no outer frame: every row starts with its venue's name, as the plain text does (grep, tests)
    table = Table(*COLUMNS, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for r in rows:
        table.add_row(*r)
    console = Console(width=200, record=True)
    with console.capture() as cap:
        console.print(table)
    return cap.get().rstrip()


def _capabilities(v: Any) -> str:
    c = v.capabilities
    if not c:
        return f"  {v.venue}: -"
    keys = ("client_id", "lookup", "market_orders", "position_mode", "margin_mode", "quantities", "page_size",
            "funding_interval", "credentials", "validity_window", "environments")
    return f"  {v.venue} ({c.get('family')}): " + "; ".join(f"{k.replace('_', ' ')} {c[k]}" for k in keys if k in c)


async def _run(args: argparse.Namespace) -> int:
    from control.venues_check import check_venues
    from hedgeflow.cli import CliError, settings_from

    settings = settings_from(args)
    logging.disable(logging.CRITICAL)  # the report says everything: no stray log lines among its problems on stderr
    if not settings.venues:
        raise CliError("no venues configured", 2)
    report = await check_venues(settings, timeout_s=args.timeout)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_table([_row(v) for v in report.venues]))
        print("capabilities:")
        for v in report.venues:
            print(_capabilities(v))
        for w in report.warnings:
            print(f"warning: {w}")
        print("all venues ok" if report.ok else f"{len(report.problems)} problem(s)")
    sys.stdout.flush()
    for p in report.problems:
        print(p, file=sys.stderr)
    return 0 if report.ok else 1
