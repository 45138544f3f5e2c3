"""A holding trade's monitor tick, one level below ``workflows/trade.py``'s hold loop.

One look at both venues, then the judgement: each leg is judged from what its own venue
answered (a venue that did not answer leaves its leg unjudged this tick; alert after 3 ticks in
a row); the other leg's liquidation distance still counts, and below ``close_liq_distance`` both
legs are closed (each venue on its own). Reductions, drift and the spread need both.

The look (``monitor-v1``): ONE activity, ``monitor_read`` (``activities/monitor.py``), reads both
venues' position and snapshot and answers each venue on its own. Since ``monitor-v2`` it is a
*local* activity, run by the worker inside the workflow task: a tick is one workflow task (was
two) and no activity task through the server, about 6 history events (was 11). Runs before
monitor-v1 (their histories) read with four activities, positions and snapshot on each venue;
runs before monitor-v2 with one normal activity; they still do.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.trade import TradeActivities
    from domain.funding import interval_ms_from_hours, spread_bps_8h
    from domain.hedge import LiqAction, hedge_gap, liquidation_action, liquidation_distance
    from domain.lifecycle import Exit, ExitReason
    from messages.monitor import MonitorReadRequest
    from messages.trade import MarketSnapshot
    from venues.models import Position
    from workflows.options import LOCAL_READ_OPTS, READ_OPTS
    from workflows.trade_orders import error_type, is_cancellation
    from workflows.visibility import summary_line

if TYPE_CHECKING:
    from workflows.trade import TradeWorkflow

ZERO = Decimal(0)
#: a holding trade reads both venues in one activity, each venue's answer on its own
MONITOR_V1 = "monitor-v1"
#: that read is a local activity: one workflow task a tick and about half the history events
MONITOR_V2 = "monitor-v2"
#: what a tick learnt: each leg's (position, snapshot) when its venue answered, and the failures
#: as (venue, error type, error text)
Reads = tuple[list[tuple[Position | None, MarketSnapshot] | None], list[tuple[str, str, str]]]


async def _read_v1(wf: TradeWorkflow) -> Reads:
    p = wf.p
    venues = [p.long_venue, p.short_venue]
    req = MonitorReadRequest(symbol=p.symbol, venues=venues,  # v2: a read begun since the wait serves
                             positions_since_ms=wf.tick_wait_ms if wf.monitor_v2 else None)
    summary = f"monitor {p.symbol} on {p.long_venue} / {p.short_venue}"
    try:
        if wf.monitor_v2:  # run by this worker inside the workflow task (LOCAL_READ_OPTS)
            got = await workflow.execute_local_activity_method(
                TradeActivities.monitor_read, req, summary=summary, **LOCAL_READ_OPTS)
        else:
            got = await workflow.execute_activity_method(TradeActivities.monitor_read, req, summary=summary, **READ_OPTS)
    except ActivityError as exc:
        if is_cancellation(exc):
            raise
        return [None, None], [(v, error_type(exc), str(exc.cause or exc)) for v in venues]
    legs: list[tuple[Position | None, MarketSnapshot] | None] = []
    failed = []
    for r in got.reads:
        if r.ok:
            assert r.snapshot is not None
            legs.append((r.position, r.snapshot))
        else:
            legs.append(None)
            failed.append((r.venue, r.error_type or "unread", r.error or ""))
    return legs, failed


async def _read_legacy(wf: TradeWorkflow) -> Reads:
    """Before monitor-v1: four activities, positions and snapshot on each venue."""
    p, d = wf.p, wf.desk
    got = await asyncio.gather(d.position(p.long_venue), d.position(p.short_venue),
                               d.snapshot(p.long_venue), d.snapshot(p.short_venue), return_exceptions=True)
    errors = [r for r in got if isinstance(r, BaseException)]
    for i, r in enumerate(got):
        if isinstance(r, BaseException):
            wf.closer.failed(p.long_venue if i % 2 == 0 else p.short_venue)
    if any(is_cancellation(r) or not isinstance(r, ActivityError) for r in errors):
        raise next(r for r in errors if is_cancellation(r) or not isinstance(r, ActivityError))
    failed = [(p.long_venue if i % 2 == 0 else p.short_venue, error_type(r), str(r.cause))
              for i, r in enumerate(got) if isinstance(r, ActivityError)]
    legs = [None if isinstance(got[i], BaseException) or isinstance(got[i + 2], BaseException)
            else (got[i], got[i + 2]) for i in range(2)]
    return legs, failed  # type: ignore[return-value]


async def tick(wf: TradeWorkflow) -> Exit | None:
    """One look at both venues and what it decides (module doc)."""
    p, d, c, s = wf.p, wf.desk, wf.c, wf.s
    legs, failed = await (_read_v1(wf) if wf.monitor_v1 else _read_legacy(wf))
    for venue, _, _ in failed if wf.monitor_v1 else ():  # (the legacy read marks its own)
        wf.closer.failed(venue)
    if failed:
        c.monitor_failures += 1
        where = f" on {failed[0][0]}" if wf.monitor_v1 else ""
        wf._event(f"monitor read failed{where} ({failed[0][1]}), #{c.monitor_failures}")
        if c.monitor_failures == 3:
            await wf._alert("venue_unreachable", f"{summary_line(p)}: monitor reads failing: {failed[0][2]}", "warning")
        if not wf.v2:
            return None
    else:
        c.monitor_failures = 0
    read = [(name, *leg) for name, leg in zip(("long", "short"), legs, strict=True) if leg is not None]
    tol, dists = wf._market()[0] / 2, []
    for name, pos, snap in read:
        leg = s.leg(name)
        leg.position, q = pos, pos.qty if pos else ZERO
        if abs(q - (leg.filled_qty if name == "long" else -leg.filled_qty)) > tol:
            msg = f"positions changed outside hedgeflow: {name} {q} on {leg.venue} (expected {leg.filled_qty})"
            wf._event(msg)
            if not wf.v2:  # since v2 the close's own alert says it (one alert, after the orders)
                await wf._alert("emergency_close", f"{summary_line(p)}: {msg}", "critical")
            return Exit(ExitReason.LEG_CHANGED, True, msg)
        dist = liquidation_distance(snap.funding.mark_price, pos.liquidation_price if pos else None)
        dists += [dist] if dist is not None else []
    nearest, h = (min(dists) if dists else None), s.hold
    act = liquidation_action(nearest, close_below=h.close_liq_distance, reduce_below=h.reduce_liq_distance,
                             now_ms=wf._now_ms(), last_reduce_ms=c.last_reduce_ms,
                             dist_at_reduce=c.dist_at_reduce, cooldown_ms=int(h.reduce_cooldown_s * 1000),
                             hysteresis=wf.v2)
    if act is LiqAction.CLOSE:
        if not wf.v2:
            await wf._alert("emergency_close", f"{summary_line(p)}: liquidation {nearest:.2%} away", "critical")
        return Exit(ExitReason.LIQUIDATION_RISK, True, f"liquidation {nearest:.2%} away")
    if len(read) < 2:
        return None
    L, S = s.leg("long"), s.leg("short")
    size = max(L.filled_qty, S.filled_qty) if wf.v2 else s.target_qty  # the gap of what is held now
    s.hedge_gap = hedge_gap(L.filled_qty, S.filled_qty, size or s.target_qty)
    if s.hedge_gap > s.hold.max_gap:
        return Exit(ExitReason.HEDGE_DRIFT, True)
    if act is LiqAction.NO_IMPROVEMENT:
        return Exit(ExitReason.LIQUIDATION_RISK, True, f"liquidation {nearest:.2%} away, no better after reducing")
    if act is LiqAction.REDUCE:
        c.last_reduce_ms, c.dist_at_reduce = wf._now_ms(), nearest
        why = f"liquidation {nearest:.2%} away"
        if half := await d.reduce_both(*wf._market(), why):
            await wf._alert("reduced", f"{summary_line(p)}: reduced both legs by {half} ({why})", "warning")
    elif act is LiqAction.NONE and wf.v2:
        c.last_reduce_ms, c.dist_at_reduce = 0, None  # out of the zone: re-armed

    lf, sf = read[0][2].funding, read[1][2].funding
    spread = spread_bps_8h(lf.rate, interval_ms_from_hours(lf.interval_hours),
                           sf.rate, interval_ms_from_hours(sf.interval_hours))
    s.spread_bps_8h = spread.quantize(Decimal("0.01"))
    c.low_spread_checks = c.low_spread_checks + 1 if spread < s.hold.exit_spread_bps else 0
    if c.low_spread_checks >= s.hold.exit_checks:
        return Exit(ExitReason.SPREAD_EXIT, False, f"{spread:.2f} bps/8h < {s.hold.exit_spread_bps}")

    # funding: fetch income only once a settlement time has passed
    nxt, now = min(lf.next_funding_ms, sf.next_funding_ms), wf._now_ms()
    due = c.next_funding_ms and now >= c.next_funding_ms
    if wf.v3:  # each venue's settlement time against that venue's own clock (its answer's time)
        due = funding_due(wf, read[0][2]) | funding_due(wf, read[1][2])
    if due or (c.funding_recheck_ms and now >= c.funding_recheck_ms):
        await d.refresh_funding()
        c.funding_recheck_ms = now + 60_000 if due and wf.v2 else 0
    c.next_funding_ms = nxt if nxt > now else now + 60_000
    wf._details()
    return None


def funding_due(wf: TradeWorkflow, snap: MarketSnapshot) -> bool:
    """v3: a settlement of ``snap``'s venue has passed, on that venue's own clock (the time
    of its answer), since the last look; remembers its next settlement."""
    f, seen = snap.funding, wf.c.venue_next_funding_ms
    due = bool(seen.get(snap.venue)) and f.timestamp_ms >= seen[snap.venue]
    if due:
        wf._event(f"funding settled on {snap.venue} (its clock): reading income")
    seen[snap.venue] = f.next_funding_ms
    return due
