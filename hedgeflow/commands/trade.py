"""``hedgeflow trade open|list|show|close``."""

from __future__ import annotations

import argparse
import asyncio
import json
from decimal import Decimal, InvalidOperation
from typing import get_args

from config.settings import TradeExecution

HELP = "open, list, show and close trades (each trade is a TradeWorkflow)"
#: the execution styles ``trade open --style`` takes: the settings' own (``trade.style``)
STYLES = get_args(TradeExecution.model_fields["style"].annotation)


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
    o.add_argument(
        "--style", choices=STYLES, default=None,
        help="how both legs go on and off: taker (one market order per leg), maker_first (post-only on the "
        "costlier-taker leg, each maker fill hedged at once by taker), sliced (trade.slices pieces); "
        "default: trade.style from the config (taker)",
    )
    ls = sub.add_parser("list", help="list trades (newest first)")
    ls.add_argument("--open", action="store_true", help="only running trades")
    ls.add_argument("--json", action="store_true")
    sh = sub.add_parser("show", help="print a trade's status: a readable view, or --json (the status query's object)")
    sh.add_argument("id")
    sh.add_argument("--json", action="store_true",
                    help="the status query's JSON object (what `trade show` printed before the readable view)")
    sh.add_argument("--events", type=int, default=15, metavar="N", help="recent events shown (default 15)")
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
                hold_overrides=hold, **({"style": args.style} if args.style else {}),
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
            if args.json:
                print(json.dumps(status.model_dump(mode="json"), indent=2))
            else:
                from hedgeflow.commands.status import console

                console().print(trade_view(status, args.events))
        elif args.action == "close":
            await close_trade(client, args.id, emergency=args.emergency, reason=args.reason)
            print(f"{'emergency close' if args.emergency else 'close'} sent to {args.id}")
    except TradeRefused as exc:
        raise CliError(str(exc)) from None
    return 0


def _n(x: object, places: int | None = None) -> str:
    """A number for reading (the JSON keeps every digit): '-' for none, ``places`` decimals if given."""
    if x is None:
        return "-"
    if places is not None and isinstance(x, Decimal):
        return f"{x:,.{places}f}"
    return str(x)


def trade_view(st, events: int = 15):
    """``trade show``'s readable view of a ``TradeStatus``: the trade, its money, its legs, its
    recent events (newest last)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    terminal = st.state in ("closed", "aborted")
    head = Text.assemble((st.trade_id, "bold"), "  ", (str(st.state), "bold " + ("dim" if terminal else "green")),
                         (f"  ({st.abort_reason or st.close_reason})" if st.abort_reason or st.close_reason else ""))
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    rows = [
        ("pair", f"{st.symbol}  long {st.long_venue} / short {st.short_venue}"),
        ("size", f"{_n(st.notional_usd, 2)} USD notional, target qty {_n(st.target_qty)}"),
        ("times", f"opened {st.opened_at or '-'} · hedged {st.hedged_at or '-'} · closed {st.closed_at or '-'}"),
        ("PnL", f"realised {_n(st.realized_pnl_usd, 4)} USD · funding {_n(st.funding_collected_usd, 4)} · "
                f"fees {_n(st.fees_usd, 4)}"),
        ("hedge", f"gap {_n(st.hedge_gap)} · spread {_n(st.spread_bps_8h, 2)} bps/8h"
                  + (f" · orphan exposure {st.orphan_exposure_ms} ms" if st.orphan_exposure_ms else "")),
        ("runs", f"{st.runs} run(s) · {st.close_attempts} close attempt(s) · {st.reductions} reduction(s)"
                 + (" · went through an emergency close" if st.emergency else "") + f" · {st.alerts_sent} alert(s)"),
    ]
    for k, v in rows:
        facts.add_row(k, v)
    legs = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="dim")
    for c in ("LEG", "VENUE", "SIDE", "FILLED", "AVG PRICE", "FEES", "FUNDING", "PRICE PNL", "ORDERS"):
        legs.add_column(c, justify="left" if c in ("LEG", "VENUE", "SIDE", "ORDERS") else "right", no_wrap=True)
    for name, leg in zip(("long", "short"), st.legs, strict=False):
        legs.add_row(name, leg.venue, str(leg.side), _n(leg.filled_qty), _n(leg.avg_price), _n(leg.fees, 4),
                     _n(leg.funding, 4), _n(leg.price_pnl, 4), ", ".join(leg.client_order_ids) or "-")
    recent = st.events[-events:] if events > 0 else []
    ev = Table.grid(padding=(0, 2))
    ev.add_column(style="dim", no_wrap=True)
    ev.add_column()
    for e in recent:
        ev.add_row(e.t, e.what)
    title = f"EVENTS (last {len(recent)} of {len(st.events)})" if len(recent) < len(st.events) else "EVENTS"
    return Group(head, facts, Text("LEGS", style="bold"), legs, Text(title, style="bold"), ev)
