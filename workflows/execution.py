"""Execution styles in the trade workflow (issue 15): how both legs go on, and off.

* ``taker`` (the default): both legs' market orders from one activity (``OrderDesk.open_both``).
* ``maker_first``: one *maker unit* (``activities/maker_unit.py``): post-only quotes on the passive
  leg (the venue with the costlier taker fee, ``domain.execution.passive_leg``), each maker fill
  hedged at once by a taker order on the active leg in the same activity, re-quoted up to
  ``maker_requotes`` times within ``maker_window_s``, then the rest taker on both; the cap
  (``cap_unhedged_usd``, ``cap_unhedged_s``) sends the lagging leg taker at once.
* ``sliced``: ``slices`` pieces ``slice_interval_s`` apart, each on both legs (taker pair or maker
  unit, ``slice_style``) before the next.

Closing uses the trade's style for a graceful close (signal, cancel, spread exit, maximum hold);
an emergency close, and a close about one leg, is always taker. Whatever a styled close leaves
(a unit that fell short, a venue that failed) the close loop (``workflows/trade_close.py``)
flattens from the venues' own positions, so a styled close can only make a close cheaper, never
leave it unfinished.

**Policy when a piece fails after earlier pieces went on** (a venue down mid-slices): the failed
piece's lone leg is flattened in its own step (``place_orders``, lifecycle-v6; a maker unit
flattens its passive fill itself), and the trade ends ``aborted`` (``leg_failed``): the earlier
pieces, which are hedged, close as a pair one leg after the other (each round in one activity),
so they stay hedged while the broken venue is down and close once it answers.

The workflow books every order the activity reports, issues every id it may have sent (the close
loop looks up any whose answer is not final), and makes every decision; the activity only carries
one unit out. Trades on ``taker`` run exactly the code they ran before (saved histories replay).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.trade import TradeActivities
    from domain.execution import (
        LegName,
        even_steps,
        maker_ids,
        other,
        passive_leg,
        slice_quantities,
        slice_step,
    )
    from domain.rounding import round_down
    from messages.execution import MakerUnitRequest
    from venues.models import OrderResult, Side
    from workflows.close_step import close_in_step
    from workflows.options import maker_unit_opts
    from workflows.trade_orders import OrderDesk, error_type, is_cancellation, uncancellable

if TYPE_CHECKING:
    from workflows.trade_close import Closer

ZERO = Decimal(0)
LEGS: tuple[LegName, LegName] = ("long", "short")
#: patch id: a sliced entry evens a piece whose legs filled unequal amounts before the next piece
SLICE_EVEN = "styles-slice-even"


@dataclass
class Piece:
    """What one unit (a maker unit or a taker pair) did: each leg's last order (or why none), and
    why it failed, if it did (a leg got nothing, or the other venue could not hedge)."""

    results: dict[str, OrderResult | str]
    failed: str | None = None


def _issue_id(desk: OrderDesk, leg: LegName, cid: str) -> None:
    st = desk.s.leg(leg)
    if cid not in st.client_order_ids:
        st.client_order_ids.append(cid)
    st.pending.setdefault(cid, int(workflow.now().timestamp() * 1000))


def _stop_requested(desk: OrderDesk) -> bool:
    return bool(desk.c.close_requested or desk.c.emergency_requested)


async def maker_unit(desk: OrderDesk, qty: Decimal, unit: int, *, closing: bool) -> Piece:
    """One maker unit of ``qty`` on both legs (``closing``: reduce-only, off both legs)."""
    p, s, m = desk.p, desk.s, desk.c.market
    assert m is not None
    passive = passive_leg(p.taker_fees.get(p.long_venue, ZERO), p.taker_fees.get(p.short_venue, ZERO))
    active = other(passive)
    ids = maker_ids(p.trade_id, passive, unit, p.maker_requotes, closing=closing)
    P, A = s.leg(passive), s.leg(active)

    def side(leg) -> Side:
        return Side(leg.side).opposite if closing else Side(leg.side)

    req = MakerUnitRequest(
        symbol=p.symbol, qty=qty, step=m.step, min_qty=m.min_qty, reduce_only=closing,
        passive_venue=P.venue, passive_side=side(P), active_venue=A.venue, active_side=side(A),
        quote_ids=ids.quotes, passive_taker_id=ids.passive_taker, hedge_ids=ids.hedges, flatten_ids=ids.flattens,
        window_s=p.maker_window_s, cap_usd=p.cap_unhedged_usd, cap_s=p.cap_unhedged_s,
        ref_price=m.marks.get(P.venue))
    passive_ids = {*ids.quotes, ids.passive_taker, *ids.flattens}
    desk.event(f"{'closing' if closing else 'opening'} maker unit {unit}: {qty} post-only on {passive} "
               f"({P.venue}), hedged by taker on {active} ({A.venue})")
    cancel_seen: list[bool] = []
    call = workflow.execute_activity_method(
        TradeActivities.maker_unit, req, summary=f"maker unit {unit}: {qty} {p.symbol} "
        f"post-only on {P.venue}, hedged on {A.venue}", **maker_unit_opts(p.maker_window_s))
    try:  # never cut by a cancel: a unit stopped between a fill and its hedge would leave them unbooked
        out = await uncancellable(call, cancel_seen)
    except ActivityError as exc:
        if is_cancellation(exc):
            raise
        for cid in passive_ids:  # any of them may have been sent: the close loop looks each up
            _issue_id(desk, passive, cid)
        for cid in ids.hedges:
            _issue_id(desk, active, cid)
        desk.event(f"maker unit {unit} failed ({error_type(exc)}): its orders are looked up by the close")
        return Piece({passive: error_type(exc), active: error_type(exc)}, f"maker unit: {error_type(exc)}")
    for cid in out.sent_ids:
        _issue_id(desk, passive if cid in passive_ids else active, cid)
    last: dict[str, OrderResult | str] = {passive: "nothing filled", active: "nothing filled"}
    for leg, orders in ((active, out.active), (passive, out.passive)):  # hedges first (they match fills)
        for order in orders:
            booked = await desk.settle(leg, order, opening=not closing and not order.reduce_only)
            if booked.filled_qty > 0:
                last[leg] = booked
            elif order.is_closed:  # an expired or cancelled quote: nothing of it can land any more
                desk.s.leg(leg).pending.pop(order.client_order_id, None)
    desk.event(f"maker unit {unit}: {out.maker_qty} as maker, unhedged at most {out.unhedged_max_s:.2f} s / "
               f"{out.unhedged_max_usd:.2f} USD{', cap fired' if out.cap_fired else ''}"
               f"{', rest taker' if out.fell_back else ''}")
    failed = f"{active} on {A.venue} could not hedge: {out.active_failed}" if out.active_failed else None
    if failed:
        desk.event(f"maker unit {unit}: {failed}; the passive fills were flattened in the unit")
    if cancel_seen and not closing:
        desk.event("cancel requested during a maker unit: taken once its orders were booked")
        raise asyncio.CancelledError()
    return Piece(last, failed)


async def taker_piece(desk: OrderDesk, qty: Decimal, unit: int) -> Piece:
    """One taker pair of ``qty`` (a slice): both legs from one activity, a lone leg flattened in it."""
    res = dict(zip(LEGS, await desk.open_both(qty, step=slice_step(unit)), strict=True))
    bad = [leg for leg in LEGS if isinstance(res[leg], str) or res[leg].filled_qty == 0]  # type: ignore[union-attr]
    return Piece(res, "; ".join(f"{leg}: {res[leg] if isinstance(res[leg], str) else 'nothing filled'}"
                                for leg in bad) or None)


async def even_piece(desk: OrderDesk, unit: int) -> None:
    """A taker piece whose legs filled unequal amounts (a venue filled part of its order) is evened
    at once, before the pause and the next piece: the longer leg trimmed reduce-only by the gap
    (``domain.execution.even_steps``; a trim that fills short is trimmed again). Before, the gap
    stayed naked until the entry's own trim after the last piece: 4.6, 5.4 and 7.5 s in a chaos
    run, the pauses and a worker restart in between. (The trim, not a top-up of the shorter leg:
    the venue that filled in part would likely fill a top-up in part too.) The same when a cancel
    arrives during the piece, before the close (its first round came 2.1 s later in a chaos run)."""
    m = desk.c.market
    assert m is not None
    L, S = desk.s.leg("long"), desk.s.leg("short")
    for k, step in enumerate(even_steps(unit)):
        diff = round_down(abs(L.filled_qty - S.filled_qty), m.step)
        if diff == 0 or (k > 0 and diff < m.min_qty):
            return
        longer: LegName = "long" if L.filled_qty > S.filled_qty else "short"
        desk.event(f"piece {unit + 1}: {longer} filled {diff} more than the other; trimming it to match")
        res = await desk.place_verified(longer, diff, step, reduce_only=True)
        if isinstance(res, str) or res.filled_qty == 0:
            return  # refused or nothing filled: the entry's own trim and the hedge check take it from here


async def open_styled(desk: OrderDesk, qty: Decimal) -> tuple[dict[str, OrderResult | str], str | None]:
    """Both legs on in the trade's style. Returns each leg's last order (or why none) and, when a
    piece failed after earlier pieces went on, why (the caller closes those: module docstring)."""
    p, m = desk.p, desk.c.market
    assert m is not None
    if p.style == "maker_first":
        return (await maker_unit(desk, qty, 0, closing=False)).results, None
    pieces = slice_quantities(qty, p.slices, m.step, m.min_qty)
    desk.event(f"sliced entry: {len(pieces)} pieces ({', '.join(map(str, pieces))}), {p.slice_style} each, "
               f"{p.slice_interval_s} s apart")
    results: dict[str, OrderResult | str] = {}
    done = ZERO
    for i, q in enumerate(pieces):
        if i and (await _pause(desk, p.slice_interval_s) or _stop_requested(desk)):
            desk.event(f"sliced entry stopped after {i} of {len(pieces)} pieces: close requested")
            break
        try:
            piece = await (maker_unit(desk, q, i, closing=False) if p.slice_style == "maker_first"
                           else taker_piece(desk, q, i))
        except asyncio.CancelledError:  # a cancel during the piece: taken once it was booked, evened first
            if p.slice_style != "maker_first" and workflow.patched(SLICE_EVEN):
                await even_piece(desk, i)
            raise
        results |= {leg: r for leg, r in piece.results.items() if not isinstance(r, str) or leg not in results}
        if piece.failed:
            if i == 0:  # nothing went on before: the ordinary lone-leg path
                return piece.results, None
            return results, f"piece {i + 1} of {len(pieces)} failed ({piece.failed})"
        done += q
        if p.slice_style != "maker_first" and workflow.patched(SLICE_EVEN):
            await even_piece(desk, i)
    desk.s.target_qty = done  # a stopped entry holds what went on
    return results, None


async def close_styled(desk: OrderDesk, closer: Closer) -> None:
    """A graceful close in the trade's style, as far as it goes: the hedged quantity off both
    legs by maker units, or by slices (a taker slice is one close round in step: the follower's
    venue read first, the leader's piece, the follower's match in the same activity). Stops at
    the first piece that fails; the close loop that always follows flattens the rest from the
    venues' positions."""
    p, m, s = desk.p, desk.c.market, desk.s
    if m is None:
        return
    qty = min(s.leg("long").filled_qty, s.leg("short").filled_qty)
    if qty <= 0 or qty < max(m.min_qty, m.step):
        return
    pieces = [qty] if p.style == "maker_first" else slice_quantities(qty, p.slices, m.step, m.min_qty)
    style = "maker_first" if p.style == "maker_first" else p.slice_style
    desk.event(f"closing in style {p.style}: {len(pieces)} piece(s) of {qty}")
    for i, q in enumerate(pieces):
        if i and (await _pause(desk, p.slice_interval_s, emergency_only=True) or desk.c.emergency_requested):
            return
        if style == "maker_first":
            if (piece := await maker_unit(desk, q, i, closing=True)).failed:
                desk.event(f"styled close stopped at piece {i + 1} ({piece.failed}); the close loop goes on")
                return
            continue
        lead: LegName = "short" if desk.c.close_first == "short" else "long"
        try:
            pos = await desk.position(s.leg(lead).venue)
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            desk.event(f"styled close stopped at piece {i + 1}: {lead} unreadable; the close loop goes on")
            return
        if pos is None:
            return
        st = s.leg(lead)
        st.close_attempts += 1
        if not await close_in_step(closer, lead, pos, st.close_attempts, qty=min(q, abs(pos.qty))):
            desk.event(f"styled close stopped at piece {i + 1}; the close loop goes on")
            return


async def _pause(desk: OrderDesk, seconds: float, *, emergency_only: bool = False) -> bool:
    """Wait between pieces; True when a stop (an emergency, or any close request) arrived."""
    stop = (lambda: bool(desk.c.emergency_requested)) if emergency_only else (lambda: _stop_requested(desk))
    if seconds <= 0:
        return stop()
    try:
        await workflow.wait_condition(stop, timeout=seconds, timeout_summary="next piece")
        return True
    except TimeoutError:
        return False
    except asyncio.CancelledError:
        if emergency_only:  # closing: a cancel does not stop the close
            return False
        raise
