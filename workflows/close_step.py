"""lifecycle-v7, the workflow's side of a hedged pair's close round in one activity
(``activities/close_step.py``): the leader's close and the follower's match of what it filled go
out in the same step, after a read of the follower's venue. The workflow books both answers (the
follower's first, so its loop never matches a fill twice), lets an unreadable follower lead, and
still verifies flat with its close loops."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.trade import TradeActivities
    from domain.ids import client_order_id
    from messages.trade import LegName, PlaceOrderRequest, StepCloseOutcome, StepCloseRequest
    from venues.models import Position, Side
    from workflows.options import STEP_CLOSE_OPTS
    from workflows.trade_orders import error_type, is_cancellation, uncancellable

if TYPE_CHECKING:
    from workflows.trade_close import Closer

#: at most this many rest orders follow a follower's match that filled in part (as a close's, v5)
REST_ROUNDS = 8
#: how long the activity's read of the follower's venue may take before the leader is held back
PROBE_S = 1.0


def _unissue(st, cid: str) -> None:
    """An id the activity did not send: nothing of it can land, so it is nothing to look up."""
    st.pending.pop(cid, None)
    if cid in st.client_order_ids:
        st.client_order_ids.remove(cid)


async def close_in_step(cl: Closer, leg: LegName, pos: Position, n: int, qty: Decimal | None = None) -> bool:
    """Round ``n`` of the leader ``leg`` with its follower; True when something filled. ``qty``:
    the leader closes only that much of ``pos`` (a slice, issue 15) and the follower matches it."""
    desk, s, p = cl.desk, cl.desk.s, cl.p
    fol: LegName = "short" if leg == "long" else "long"
    L, F = s.leg(leg), s.leg(fol)
    held = abs(pos.qty)
    lead = PlaceOrderRequest(venue=L.venue, symbol=p.symbol, side=Side.SELL if pos.qty > 0 else Side.BUY,
                             qty=qty or held, client_order_id=desk._issue(leg, f"c{n}"), reduce_only=True,
                             resend_fresh=qty is None)
    steps = [f"s{n}", *(f"s{n}r{k}" for k in range(1, REST_ROUNDS + 1))]  # the match, then its rest
    fcid = client_order_id(p.trade_id, fol, steps[0])
    follow = PlaceOrderRequest(venue=F.venue, symbol=p.symbol, side=Side(F.side).opposite, qty=F.filled_qty,
                               client_order_id=fcid, reduce_only=True)
    rest_ids = [client_order_id(p.trade_id, fol, st) for st in steps[1:]]
    # v8: a match accepted but not executed soon is covered on the leader's venue (re-open u<n>, re-close v<n>)
    hedge_steps = [f"u{n}", f"v{n}"] if cl.v8 else []
    hedge_ids = [client_order_id(p.trade_id, leg, st) for st in hedge_steps]
    if cl.v8:
        lead.ref_price = (cl.c.market.marks if cl.c.market else {}).get(L.venue)  # the re-open's notional check
    try:
        # never cut by a workflow cancel: a round stopped between its two fills would leave them unbooked
        out = await uncancellable(workflow.execute_activity_method(
            TradeActivities.close_in_step, StepCloseRequest(leader=lead, follower=follow, leader_held=held,
                                                            probe_s=PROBE_S, follower_rest_ids=rest_ids,
                                                            rehedge_ids=hedge_ids),
            summary=f"close {leg} {held} on {L.venue}, then {fol} on {F.venue}", **STEP_CLOSE_OPTS))
    except ActivityError as exc:
        if is_cancellation(exc):
            raise
        found = await desk.lookup(L.venue, lead.client_order_id)
        if found is None:  # the leader never executed, so its follower was never sent
            _unissue(F, fcid)
            raise
        cl.event(f"close {leg}: round {n} failed ({error_type(exc)}) after its leader was sent; "
                 f"{fol}'s match {fcid} is looked up")
        out = StepCloseOutcome(leader=found, follower_sent_ids=[fcid, *rest_ids])
        if hedge_ids:  # v8: a re-hedge the failed attempts may have sent
            out.rehedge, out.rehedge_close = [await desk.lookup(L.venue, i) for i in hedge_ids]
            out.rehedge_sent_ids = [i for i, o in zip(hedge_ids, (out.rehedge, out.rehedge_close), strict=True) if o]
    if out.follower_unreachable:
        _unissue(L, lead.client_order_id)
        cl.failed(F.venue)
        cl.c.close_first = fol
        cl.event(f"close: {fol} on {F.venue} unreadable ({out.error}); {fol} closes first now, {leg} follows")
        return False
    if out.follower_refused_qty is not None and cl.v8:
        cl.unmatchable(fol, out.follower_refused_qty)
    if out.follower_sent:
        step_of = dict(zip([fcid, *rest_ids], steps, strict=True))
        for cid in out.follower_sent_ids:
            desk._issue(fol, step_of[cid])
        for order in [o for o in (out.follower, *out.follower_rest) if o is not None]:
            await desk.settle(fol, order, opening=False)  # first: the follower's loop never matches it again
        if out.follower is None:
            cl.failed(F.venue)
            cl.event(f"close {fol}: match {fcid} on {F.venue}: {out.error or 'outcome unknown'}; "
                     f"its loop reads and matches")
    assert out.leader is not None
    order = await desk.settle(leg, out.leader, opening=False)
    if out.rehedge_sent_ids:
        await _book_rehedge(cl, leg, out, dict(zip(hedge_ids, hedge_steps, strict=True)))
    return order.filled_qty > 0


async def _book_rehedge(cl: Closer, leg: LegName, out: StepCloseOutcome, step_of: dict[str, str]) -> None:
    """v8: book the re-hedge of a round whose follower's match was accepted but not executed (its
    venue executes late): the re-open on the leader's venue (it adds to the leader leg), then the
    re-close of what the match executed after all. The late venue leads from now on."""
    fol: LegName = "short" if leg == "long" else "long"
    F = cl.s.leg(fol)
    for cid in out.rehedge_sent_ids:
        cl.desk._issue(leg, step_of[cid])
    for order, opening in ((out.rehedge, True), (out.rehedge_close, False)):
        if order is not None:
            await cl.desk.settle(leg, order, opening=opening)
    late = out.follower.filled_qty if out.follower is not None else "unknown"
    cl.event(f"close: {fol}'s match on {F.venue} accepted but not executed: {leg} re-opened "
             f"{out.rehedge.filled_qty if out.rehedge else '?'} on its venue, the match was cancelled ({late} of it "
             f"executed{', closed again' if out.rehedge_close else ''}); {fol} closes first now, {leg} follows")
    cl.failed(F.venue)
    cl.c.close_first = fol
