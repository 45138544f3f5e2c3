"""``hedgeflow status [--json] [--watch [SECONDS]]``: one screen — venues, open trades, exposure,
PnL, incidents. ``--watch`` redraws it every SECONDS (5) until Ctrl-C: in place on a terminal,
one screen after another (each headed by its time) when the output is a pipe or a file."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

HELP = "one screen: venues, open trades, exposure, PnL, incidents (--watch: refreshed until Ctrl-C)"
ZERO = Decimal(0)
WATCH_DEFAULT_S = 5.0


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0 s: {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--watch", nargs="?", type=_interval, const=WATCH_DEFAULT_S, default=None, metavar="SECONDS",
                   help=f"redraw every SECONDS (default {WATCH_DEFAULT_S:g}) until Ctrl-C")


def run(args: argparse.Namespace) -> int:
    if args.watch is not None and args.json:
        from hedgeflow.cli import CliError

        raise CliError("--watch draws a screen; use --json without it", 2)
    if args.watch is not None:
        # Ctrl-C is the only way --watch ends: a SIGINT ignored by whoever started us (Python
        # then installs no handler; a pytest-xdist worker's children inherit that) is taken back
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:  # Ctrl-C ends --watch: that is how it is meant to stop
        return 0 if args.watch is not None else 130


async def collect(settings, client, pool=None) -> dict:
    """The screen's data; ``pool``: a ``GatewayPool`` to reuse (``--watch``), else one for this call."""
    from venues.pool import GatewayPool

    if pool is None:
        async with GatewayPool(settings) as own:
            return await collect(settings, client, own)
    from datetime import timedelta

    from ledger import Ledger
    from venues.errors import VenueError
    from workflows.trade import TradeWorkflow

    out: dict = {"venues": [], "open_trades": [], "exposure": {}, "pnl": {}, "incidents": []}

    async def venue(v) -> dict:
        gw = pool.get(v.name)
        try:
            bal, pos = await asyncio.gather(gw.balance(), gw.positions(None))
        except VenueError as exc:
            return {"venue": v.name, "up": False, "error": exc.type_name}
        return {"venue": v.name, "up": True, "balance": str(bal.total), "free": str(bal.free),
                "positions": len([p for p in pos if p.qty != 0])}

    out["venues"] = list(await asyncio.gather(*(venue(v) for v in settings.venues)))
    exposure: dict[str, Decimal] = {}
    unrealised_funding = ZERO
    q = "WorkflowType = 'TradeWorkflow' AND ExecutionStatus = 'Running'"
    async for w in client.list_workflows(q):
        try:
            st = await client.get_workflow_handle(w.id).query(TradeWorkflow.status, rpc_timeout=timedelta(seconds=5))
        except Exception as exc:  # noqa: BLE001
            out["open_trades"].append({"id": w.id, "state": "?", "error": type(exc).__name__})
            continue
        notional = ZERO
        for leg in st.legs:
            n = leg.filled_qty * (leg.avg_price or ZERO)
            exposure[leg.venue] = exposure.get(leg.venue, ZERO) + n
            notional += n
        unrealised_funding += st.funding_collected_usd
        out["open_trades"].append({"id": w.id, "state": st.state, "symbol": st.symbol, "long": st.long_venue,
                                   "short": st.short_venue, "qty": str(st.target_qty),
                                   "funding_usd": str(st.funding_collected_usd),
                                   "fees_usd": str(sum((leg.fees for leg in st.legs), ZERO))})
    out["exposure"] = {k: str(v.quantize(Decimal("0.01"))) for k, v in exposure.items()}
    ledger = await asyncio.to_thread(Ledger.for_settings, settings)
    totals = await asyncio.to_thread(ledger.totals)
    by_state = await asyncio.to_thread(ledger.trades_by_state)
    out["pnl"] = {
        "realized_pnl_usd": str(totals["realized_pnl_usd"]), "fees_usd": str(totals["fees_usd"]),
        "funding_usd": str(totals["funding_usd"]), "open_trades_funding_usd": str(unrealised_funding),
        "trades_by_state": by_state,
    }
    out["incidents"] = [{"id": i.id, "kind": i.kind, "detail": i.detail}
                        for i in await asyncio.to_thread(ledger.open_incidents)]
    return out


def screen(data: dict, at: datetime | None = None) -> Any:
    """The screen as one rich renderable: a table per section, each titled as before
    (VENUES, OPEN TRADES (n), EXPOSURE (USD, per venue), PNL, INCIDENTS (n open))."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    titles: dict[int, str] = {}

    def table(title: str, *columns: str, right: tuple[str, ...] = ()) -> Table:
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="dim")
        for c in columns:
            t.add_column(c, justify="right" if c in right else "left", no_wrap=True)
        titles[id(t)] = title
        return t

    venues = table("VENUES", "VENUE", "STATE", "BALANCE", "FREE", "POSITIONS", right=("BALANCE", "FREE", "POSITIONS"))
    for v in data["venues"]:
        if v["up"]:
            venues.add_row(v["venue"], Text("up", style="green"), v["balance"], v["free"], str(v["positions"]))
        else:
            venues.add_row(v["venue"], Text(f"DOWN ({v['error']})", style="bold red"), "-", "-", "-")
    trades = table(f"OPEN TRADES ({len(data['open_trades'])})", "ID", "STATE", "SYMBOL", "LONG", "SHORT", "QTY",
                   "FUNDING USD", "FEES USD", right=("QTY", "FUNDING USD", "FEES USD"))
    for t in data["open_trades"]:
        if "symbol" in t:
            trades.add_row(t["id"], str(t["state"]), t["symbol"], t["long"], t["short"], t["qty"], t["funding_usd"],
                           t["fees_usd"])
        else:
            trades.add_row(t["id"], Text("?", style="yellow"), Text(t.get("error", ""), style="yellow"), "", "", "", "", "")
    exposure = table("EXPOSURE (USD, per venue)", "VENUE", "USD", right=("USD",))
    for venue, usd in sorted(data["exposure"].items()):
        exposure.add_row(venue, usd)
    p = data["pnl"]
    pnl = table("PNL", "REALISED USD", "FEES USD", "FUNDING USD", "OPEN TRADES' FUNDING USD", "TRADES BY STATE",
                right=("REALISED USD", "FEES USD", "FUNDING USD", "OPEN TRADES' FUNDING USD"))
    pnl.add_row(p["realized_pnl_usd"], p["fees_usd"], p["funding_usd"], p["open_trades_funding_usd"],
                ", ".join(f"{k} {v}" for k, v in sorted(p["trades_by_state"].items())) or "none")
    incidents = table(f"INCIDENTS ({len(data['incidents'])} open)", "#", "KIND", "DETAIL")
    for i in data["incidents"]:
        incidents.add_row(str(i["id"]), Text(i["kind"], style="bold red"), i["detail"])
    parts: list[Any] = []
    if at is not None:
        parts.append(Text(f"hedgeflow status · {at.isoformat(timespec='seconds')} · Ctrl-C to stop", style="dim"))
    for t in (venues, trades, exposure, pnl, incidents):
        parts += [Text(titles[id(t)], style="bold"), t]
    return Group(*parts)


def console() -> Any:
    """A rich console on stdout; piped or redirected, wide enough not to wrap trade ids."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=200, no_color=True)


async def _run(args: argparse.Namespace) -> int:
    from hedgeflow.cli import settings_from
    from venues.pool import GatewayPool
    from workers.client import connect

    settings = settings_from(args)
    client = await connect(settings)
    if args.watch is None:
        data = await collect(settings, client)
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            console().print(screen(data))
        return 0
    out = console()
    async with GatewayPool(settings) as pool:
        if not out.is_terminal:  # a log of screens: one after another, each with its time
            while True:
                out.print(screen(await collect(settings, client, pool), datetime.now(UTC)))
                out.file.flush()
                await asyncio.sleep(args.watch)
        from rich.live import Live

        with Live(console=out, auto_refresh=False, screen=False, transient=False) as live:
            while True:
                live.update(screen(await collect(settings, client, pool), datetime.now(UTC)), refresh=True)
                await asyncio.sleep(args.watch)
