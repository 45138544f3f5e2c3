"""lifecycle-v9: a whole-position reduce-only close and its rests, in one activity.

A whole close on a thin book fills only part (``partial_fill_ratio``: 50-70 % of each order in
chaos). Since v5 the close loop sent the rest at once without a read (``c<n>r<k>``), but each rest
was its own activity and its own workflow task: about 1 s each on a loaded machine, so a lone leg's
last lots stayed naked 2.2-5.2 s over three or four rests. Now the rests go out from the activity
that sent the close, each as soon as the one before comes back final and short, under the
workflow's deterministic ids (``PlaceOrderRequest.rest_ids``), at most one per id.

Every order is reduce-only and closes everything the leg still holds (rounded up to the step:
the venue closes no more than is held), so no rest can open or flip a position, even if one before
it lands after all. The first order fails as ``place_order`` does (the workflow looks its id up);
a rest that fails ends the chain and is reported (its id is issued, the close loop looks it up).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from messages.trade import PlaceOrderRequest, WholeCloseOutcome
from venues.errors import VenueError
from venues.models import OrderResult

if TYPE_CHECKING:
    from venues.pool import GatewayPool

log = logging.getLogger("hedgeflow.activities")


async def close_whole(pool: GatewayPool, req: PlaceOrderRequest,
                      place: Callable[[PlaceOrderRequest], Awaitable[OrderResult]], attempt: int = 1) -> WholeCloseOutcome:
    """``place`` sends the first order as ``place_order`` would (a retry looks its id up first).

    A close of part of the position (``resend_fresh`` unset: a follower's excess over its leader)
    rests the same way, each rest only once the one before is final, but as the gateway's ordinary
    reduce-only orders (an unknown outcome waits out the validity window; a retried attempt looks
    each rest's id up before sending it), so the rests close no more than the part asked."""
    got = await place(req)
    out = WholeCloseOutcome(order=got)
    left, gw, whole = req.qty - got.filled_qty, pool.get(req.venue), req.resend_fresh
    for cid in req.rest_ids:
        if not got.is_closed or got.filled_qty <= 0 or left <= 0:
            break
        out.rest_sent_ids.append(cid)
        log.info("close whole: %s filled %s of %s on %s; the rest %s at once (%s)", got.client_order_id,
                 got.filled_qty, got.requested_qty, req.venue, left, cid)
        try:
            # a whole close's rest: no look-up first (a rest id is sent by this activity only, and a
            # whole reduce-only close sent twice executes at most once and can never open a position)
            got = await gw.place_market_order(req.symbol, req.side, left, cid, reduce_only=True,
                                              lookup_first=not whole and attempt > 1, ref_price=req.ref_price,
                                              wait_window=not whole, whole=whole)
        except VenueError as exc:
            out.rest_error = f"{exc.type_name}: {exc}"
            if not exc.retryable and not exc.outcome_unknown:
                out.refused_ids.append(cid)
            log.warning("close whole: rest %s on %s: %s", cid, req.venue, out.rest_error)
            break
        out.rest.append(got)
        left -= got.filled_qty
    return out
