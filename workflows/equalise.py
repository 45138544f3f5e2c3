"""A partly filled opening made equal: top up the lagging leg (before v3), then trim the longer one
(``m1``, ``m2``, …) until both hold the same quantity. Runs inside the workflow through the
trade's :class:`~workflows.trade_orders.OrderDesk`.

lifecycle-v9: a workflow cancel never cuts a trim in flight. A trim is sent because the legs are
unequal, so from the fill before it the trade is naked by the difference; a cancel that cut it
(chaos, seed 3: ``m2`` of the last 0.1, cut 1.6 s after it was sent) left its answer unbooked, and
the difference stayed naked through the close's probes and first round (5.7 s at load). Now the
trim's answer is awaited and booked, as the opening pair's are (v6), the trim rounds go on to
equal legs, and the cancel is taken then. A trim on a thin book also sends its rests from its
own activity (``m<k>r1`` …, ``workflows/close_whole.py``): a trim filled 0.06 of 0.09 left 0.03
naked 2.4 s through a cancel's close in chaos.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.rounding import round_down
    from messages.trade import LegName
    from workflows.close_whole import trim
    from workflows.trade_orders import uncancellable

if TYPE_CHECKING:
    from workflows.trade_orders import OrderDesk


async def equalise(desk: OrderDesk, step: Decimal, min_qty: Decimal) -> None:
    """On v3 the longer leg is trimmed at once (its venue just filled; the lagging venue, which just
    filled short, is the one likely to fill short again): hedged first, full size second."""
    L, S = desk.s.leg("long"), desk.s.leg("short")
    for attempt in range(1, 0 if desk.v3 else desk.p.topup_attempts + 1):
        diff = round_down(abs(L.filled_qty - S.filled_qty), step)
        stop = desk.c.close_requested or desk.c.emergency_requested
        if diff == 0 or diff < min_qty or (desk.v2 and stop):
            break
        lagging: LegName = "long" if L.filled_qty < S.filled_qty else "short"
        desk.event(f"partial fill: topping up {lagging} by {diff} (attempt {attempt})")
        res = await desk.place_verified(lagging, diff, f"t{attempt}", reduce_only=False)
        if desk.v2 and isinstance(res, str):
            break  # a top-up that failed is not retried while the gap stays open: trim instead
    # v5: a trim that fills short is trimmed again (m2, m3, ...): the pair ends hedged to the
    # step, not left a step or more apart for the whole hold (within max_gap, but naked)
    seen: list[bool] = []
    for k in range(1, 1 + (desk.p.trim_rounds if desk.v5 else 1)):
        diff = round_down(abs(L.filled_qty - S.filled_qty), step)
        if diff == 0 or (k > 1 and diff < min_qty):
            break
        longer: LegName = "long" if L.filled_qty > S.filled_qty else "short"
        desk.event(f"trimming {longer} by {diff} to match")
        if desk.v9:
            # v9: the trim and its rests (one activity) placed and booked whatever a cancel says
            res = await uncancellable(trim(desk, longer, diff, f"m{k}"), seen)
        else:
            res = await desk.place_verified(longer, diff, f"m{k}", reduce_only=True)
        if isinstance(res, str) or res.filled_qty == 0:
            break  # refused or nothing filled: the hedge check and the monitor take it from here
    if seen:  # booked what the trims did (the legs as equal as they could make them); now the cancel closes both
        desk.event("cancel requested while a trim was in flight: taken once its answer was in")
        raise asyncio.CancelledError()
