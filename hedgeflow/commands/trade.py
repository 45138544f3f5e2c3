"""``hedgeflow trade open|list|show|close``."""

from __future__ import annotations

import argparse
import asyncio
import json
from decimal import Decimal, InvalidOperation

HELP = "open, list, show and close trades (each trade is a TradeWorkflow)"


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    o = sub.add_parser("open", help="start a trade by hand and print its workflow id")
    o.add_argument("--symbol", required=True, help="ccxt unified symbol, e.g. BTC/USDT:USDT")
    o.add_argument("--long", required=True, dest="long_venue", metavar="VENUE")
    o.add_argument("--short", required=True, dest="short_venue", metavar="VENUE")
    o.add_argument("--notional", required=True, type=_decimal, metavar="USD")
    o.add_argument(
        "--exit-spread-bps", type=_decimal, default=None, metavar="BPS",
        help="close once the funding spread stays below this many bps per 8 h for trade.exit_checks "
        "monitor checks (default: trade.exit_spread_bps from the config, 0)",
    )
    ls = sub.add_parser("list", help="list trades (newest first)")
    ls.add_argument("--open", action="store_true", help="only running trades")
    ls.add_argument("--json", action="store_true")
    sh = sub.add_parser("show", help="print a trade's status")
    sh.add_argument("id")
    c = sub.add_parser("close", help="close a trade (graceful), or --emergency")
    c.add_argument("id")
    c.add_argument("--emergency", action="store_true")
    c.add_argument("--reason", default="operator request")


def trades_live(args: argparse.Namespace) -> bool:
    """The live interlock applies to what sends orders: open and close."""
    return args.action in ("open", "close")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from control.trades import TradeRefused, close_trade, list_trades, open_trade, trade_status
    from hedgeflow.cli import CliError, settings_from
    from workers.client import connect

    settings = settings_from(args)
    client = await connect(settings)
    try:
        if args.action == "open":
            hold = {} if args.exit_spread_bps is None else {"exit_spread_bps": args.exit_spread_bps}
            wf_id = await open_trade(
                client, settings, args.symbol, args.long_venue, args.short_venue, args.notional,
                hold_overrides=hold,
            )
            print(wf_id)
        elif args.action == "list":
            rows = await list_trades(client, "ExecutionStatus = 'Running'" if args.open else None)
            if args.json:
                print(json.dumps(rows, indent=2))
            elif not rows:
                print("no trades")
            else:
                fmt = "{id:<52} {status:<11} {state:<18} {symbol:<15} {long:<8} {short:<8} {started}"
                print(fmt.format(id="ID", status="STATUS", state="STATE", symbol="SYMBOL", long="LONG",
                                 short="SHORT", started="STARTED"))
                for r in rows:
                    print(fmt.format(**{k: (v if v is not None else "-") for k, v in r.items()}))
        elif args.action == "show":
            status = await trade_status(client, args.id)
            print(json.dumps(status.model_dump(mode="json"), indent=2))
        elif args.action == "close":
            await close_trade(client, args.id, emergency=args.emergency, reason=args.reason)
            print(f"{'emergency close' if args.emergency else 'close'} sent to {args.id}")
    except TradeRefused as exc:
        raise CliError(str(exc)) from None
    return 0
