"""``hedgeflow scanner pause|resume|status``."""

from __future__ import annotations

import argparse
import asyncio
import json

HELP = "pause, resume or show the scanner workflow (id 'scanner')"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    sub.add_parser("pause", help="stop scanning (open trades carry on)")
    sub.add_parser("resume", help="scan again")
    st = sub.add_parser("status", help="last cycle, API calls, candidates with their edge or rejection reason")
    st.add_argument("--json", action="store_true")


def trades_live(args: argparse.Namespace) -> bool:
    """The live interlock: ``scanner resume`` lets it open trades again."""
    return args.action == "resume"


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def _fmt(x: object, places: int = 2) -> str:
    if x is None:
        return "-"
    try:
        return f"{float(x):.{places}f}"  # display only; the numbers stay Decimal in the status
    except (TypeError, ValueError):
        return str(x)


def print_status(st) -> None:
    flags = [n for n, on in (("PAUSED", st.paused), ("HALTED", st.halted)) if on]
    print(f"scanner: {' '.join(flags) or 'running'}" + (f" ({st.halt_reason})" if st.halt_reason else ""))
    print(f"  cycles {st.cycles} (run {st.runs}) · last cycle {st.last_cycle_at or '-'} took "
          f"{st.last_cycle_ms if st.last_cycle_ms is not None else '-'} ms · API calls {st.api_calls_last_cycle} "
          f"last cycle, {st.api_calls_total} total · pairs {st.pairs_last_cycle}")
    for name, h in st.venues.items():
        state = "unhealthy" if h.unhealthy_until_ms else "ok"
        print(f"  venue {name:<10} {state}" + (f" (failures {h.failures}: {h.last_error})" if h.failures else ""))
    if getattr(st, "open_incidents", None):
        print(f"  open incidents {st.open_incidents}: nothing opens until they are resolved (`hedgeflow reconcile`)")
    if st.counts_by_reason:
        print("  rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(st.counts_by_reason.items())))
    # fees, maker (the part of the fees paid at maker rates), slip: the edge's costs in STYLE, bps
    fmt = "  {:<16} {:<8} {:<8} {:>9} {:>7} {:>7} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8}  {:<11} {}"
    print(fmt.format("SYMBOL", "LONG", "SHORT", "bps/8h", "gross", "fees", "maker", "slip", "costs", "net",
                     "net USD", "b/e h", "STYLE", "VERDICT"))
    for r in st.candidates:
        e = r.edge
        verdict = r.reason or ("started " + r.trade_id if r.trade_id else r.detail or "ok")
        if r.reason and r.detail:
            verdict += f": {r.detail}"
        print(fmt.format(r.symbol[:16], r.long_venue, r.short_venue, _fmt(e.spread_bps_8h if e else None),
                         _fmt(e.gross_bps if e else None), _fmt(e.fees_bps if e else None),
                         _fmt(e.maker_fees_bps if e else None), _fmt(e.slippage_bps if e else None),
                         _fmt(e.costs_bps if e else None), _fmt(e.net_bps if e else None),
                         _fmt(e.net_usd if e else None), _fmt(e.breakeven_h if e else None, 1),
                         e.style if e else "-", verdict))
    print(f"  trades started: {st.trades_started_total}")
    for t in st.trades_started[-10:]:
        print(f"    {t.trade_id} ({t.outcome}, net {_fmt(t.net_bps)} bps" + (f", {t.style})" if t.style else ")"))
    if st.last_error:
        print(f"  last error: {st.last_error}")


async def _run(args: argparse.Namespace) -> int:
    from control.scanner import ScannerUnavailable, scanner_status, signal_scanner
    from hedgeflow.cli import CliError, settings_from
    from workers.client import connect

    settings = settings_from(args)
    client = await connect(settings)
    try:
        if args.action in ("pause", "resume"):
            await signal_scanner(client, args.action)
            print(f"scanner: {args.action} sent")
        else:
            st = await scanner_status(client)
            if args.json:
                print(json.dumps(st.model_dump(mode="json"), indent=2))
            else:
                print_status(st)
    except ScannerUnavailable as exc:
        raise CliError(str(exc)) from None
    return 0
