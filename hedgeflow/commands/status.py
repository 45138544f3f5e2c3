"""``hedgeflow status``: one screen — venues, open trades, exposure, PnL, incidents."""

from __future__ import annotations

import argparse
import asyncio
import json
from decimal import Decimal

HELP = "one screen: venues, open trades, exposure, PnL, incidents"
ZERO = Decimal(0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print as JSON")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def collect(settings, client) -> dict:
    from datetime import timedelta

    from ledger import Ledger
    from venues.errors import VenueError
    from venues.pool import GatewayPool
    from workflows.trade import TradeWorkflow

    out: dict = {"venues": [], "open_trades": [], "exposure": {}, "pnl": {}, "incidents": []}
    async with GatewayPool(settings) as pool:
        for v in settings.venues:
            gw = pool.get(v.name)
            try:
                bal, pos = await asyncio.gather(gw.balance(), gw.positions(None))
                out["venues"].append({"venue": v.name, "up": True, "balance": str(bal.total), "free": str(bal.free),
                                      "positions": len([p for p in pos if p.qty != 0])})
            except VenueError as exc:
                out["venues"].append({"venue": v.name, "up": False, "error": exc.type_name})
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


async def _run(args: argparse.Namespace) -> int:
    from hedgeflow.cli import settings_from
    from workers.client import connect

    settings = settings_from(args)
    client = await connect(settings)
    data = await collect(settings, client)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print("VENUES")
    for v in data["venues"]:
        print(f"  {v['venue']:<10} " + (f"up    balance {v['balance']:>14}  free {v['free']:>14}  positions {v['positions']}"
                                       if v["up"] else f"DOWN  ({v['error']})"))
    print(f"OPEN TRADES ({len(data['open_trades'])})")
    for t in data["open_trades"]:
        print(f"  {t['id']:<52} {t['state']:<18} " + (f"{t.get('symbol', '')} qty {t.get('qty', '')} "
                                                      f"funding {t.get('funding_usd', '')}" if "symbol" in t else t.get("error", "")))
    print("EXPOSURE (USD, per venue)")
    for venue, usd in sorted(data["exposure"].items()):
        print(f"  {venue:<10} {usd}")
    p = data["pnl"]
    print(f"PNL  realised {p['realized_pnl_usd']} USD (fees {p['fees_usd']}, funding {p['funding_usd']}); "
          f"open trades' funding so far {p['open_trades_funding_usd']}")
    print("     trades by state: " + (", ".join(f"{k} {v}" for k, v in sorted(p["trades_by_state"].items())) or "none"))
    print(f"INCIDENTS ({len(data['incidents'])} open)")
    for i in data["incidents"]:
        print(f"  #{i['id']} [{i['kind']}] {i['detail']}")
    return 0
