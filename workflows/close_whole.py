"""lifecycle-v9, the workflow's side of ``close_whole`` (``activities/close_whole.py``): a close of a
leg's whole position whose rests, when a thin book fills it only in part, go out from the same
activity (``c<n>``, then ``c<n>r1`` … ``c<n>r12``), instead of one activity and one workflow task
per rest (about 1 s each at load: a lone leg's last lots stayed naked 2.2-5.2 s in chaos)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.trade import TradeActivities
    from domain.ids import client_order_id
    from messages.trade import (
        LegName,
        OrderLookup,
        PlaceOrderRequest,
        WholeCloseOutcome,
    )
    from venues.models import OrderResult, Position, Side
    from workflows.options import FRESH_CLOSE_OPTS, ORDER_OPTS, READ_OPTS
    from workflows.trade_orders import error_type, is_cancellation, refused

if TYPE_CHECKING:
    from workflows.trade_orders import OrderDesk

#: at most this many rests follow a whole close that filled in part (a book filling half of each
#: order takes about log2(lots) of them; the close loop reads and closes again after the last)
REST_ROUNDS = 12


async def close_whole(desk: OrderDesk, leg: LegName, pos: Position, n: int, qty: Decimal | None = None) -> bool:
    """Close ``n`` of ``leg``, the whole of ``pos`` (or ``qty`` of it: a follower's excess over its
    leader, chaos: three closes 0.5 s apart on a thin book), and its rests; True when something filled."""
    qty = min(qty, abs(pos.qty)) if qty is not None else abs(pos.qty)
    side = Side.SELL if pos.qty > 0 else Side.BUY
    whole = qty == abs(pos.qty)  # everything held: resent fresh, no window wait (as ``close_leg``)
    first, _ = await reduce_with_rests(desk, leg, side, qty, f"c{n}", whole)
    return first.filled_qty > 0


async def trim(desk: OrderDesk, leg: LegName, qty: Decimal, step: str) -> OrderResult | str:
    """v9: a trim of the longer opening leg (``m<k>``) and, on a thin book, its rests (``m<k>r1`` …)
    from one activity; what all of them filled, as one order (``place_verified``'s answer), or the
    error type that kept it from the venue."""
    side = Side(desk.s.leg(leg).side).opposite
    try:
        first, rest = await reduce_with_rests(desk, leg, side, qty, step, whole=False)
    except ActivityError as exc:
        if is_cancellation(exc):
            raise
        desk.event(f"{leg} {step} not placed: {error_type(exc)}")
        return error_type(exc)
    return first.model_copy(update={"filled_qty": first.filled_qty + sum((o.filled_qty for o in rest), Decimal(0))})


async def reduce_with_rests(desk: OrderDesk, leg: LegName, side: Side, qty: Decimal, step: str,
                            whole: bool) -> tuple[OrderResult, list[OrderResult]]:
    """One reduce-only order ``step`` of ``qty`` and its rests (``<step>r1`` … ``<step>r12``) from one
    ``close_whole`` activity, every answer booked; ``whole``: ``qty`` is everything held."""
    st = desk.s.leg(leg)
    steps = [f"{step}r{k}" for k in range(1, REST_ROUNDS + 1)]
    rest_ids = [client_order_id(desk.p.trade_id, leg, s) for s in steps]
    # no ref_price, as ``close_leg``: a venue whose market orders need a price bound reads a fresh book
    req = PlaceOrderRequest(venue=st.venue, symbol=desk.p.symbol, side=side, qty=qty,
                            client_order_id=desk._issue(leg, step), reduce_only=True, resend_fresh=whole,
                            rest_ids=rest_ids)
    try:
        out = await workflow.execute_activity_method(
            TradeActivities.close_whole, req, summary=f"{leg} {step}: {side} {req.qty} on {st.venue} (and its rests)",
            **(FRESH_CLOSE_OPTS if whole else ORDER_OPTS))
    except ActivityError as exc:
        if is_cancellation(exc):
            raise
        out = await _after_failure(desk, leg, req, exc)
    step_of = dict(zip(rest_ids, steps, strict=True))
    for cid in out.rest_sent_ids:
        desk._issue(leg, step_of[cid])
    for cid in out.refused_ids:  # refused outright: nothing of it can land
        st.pending.pop(cid, None)
    if out.rest_error:
        desk.event(f"{leg}: a rest of {step} not confirmed ({out.rest_error}); looked up like any order")
    first = await desk.settle(leg, out.order, opening=False)
    return first, [await desk.settle(leg, order, opening=False) for order in out.rest]


async def _after_failure(desk: OrderDesk, leg: LegName, req: PlaceOrderRequest, exc: ActivityError) -> WholeCloseOutcome:
    """The activity failed (an error on its first order, or its worker died): the close's id is looked
    up; not found → it raises as a failed close (the loop reads and sends again). Found → its rests
    may have gone out too: each is looked up in turn, up to the first the venue does not have (a
    rest goes out only after the one before came back, so none beyond it was sent; that one may be
    in flight, and stays issued). A look-up that fails issues every id from there on."""
    st = desk.s.leg(leg)
    found = await desk.lookup(st.venue, req.client_order_id)
    if found is None:
        if refused(exc):
            st.pending.pop(req.client_order_id, None)
        raise exc
    out, got, left = WholeCloseOutcome(order=found), found, req.qty - found.filled_qty
    for k, cid in enumerate(req.rest_ids):
        if not got.is_closed or got.filled_qty <= 0 or left <= 0:
            return out  # the activity sent no rest after this one (``activities/close_whole.py``)
        try:
            got = await workflow.execute_activity_method(
                TradeActivities.get_order, OrderLookup(venue=st.venue, symbol=desk.p.symbol, client_order_id=cid),
                summary=f"look up {cid}", **READ_OPTS)
        except ActivityError as err:
            if is_cancellation(err):
                raise
            out.rest_sent_ids += req.rest_ids[k:]
            return out
        out.rest_sent_ids.append(cid)
        if got is None:
            return out
        out.rest.append(got)
        left -= got.filled_qty
    return out
