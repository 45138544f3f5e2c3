"""lifecycle-v6: a lone opening leg is flattened inside ``place_orders``, in the step that
learns it is alone.

Before, the activity returned "long filled, short refused" and the workflow then scheduled the
close: one more workflow task and activity round trip while the long was naked (about 100 ms on
an idle machine; a second or more when the worker that held the trade's sticky task had just
died). Now, when the opening requests carry a ``flatten_client_order_id`` (the workflow makes
it deterministic, ``domain.ids.client_order_id(trade, leg, "lf")``):

* one leg filled and the other was refused → the filled leg's reduce-only market close goes out
  at once, under its flatten id;
* one leg refused and the other accepted but not executed yet (a venue that executes late) → the
  other is cancelled at once (at most ``CANCEL_WAIT_S``): cancelled before it executed, nothing was
  ever naked; executed meanwhile → it is a lone filled leg, flattened as above;
* one leg filled and the other has no final answer (accepted but not executed by a venue that
  matches late, or no answer in time) → the other's opening is cancelled, waiting at most
  ``CANCEL_WAIT_S``: cancelled with nothing executed, unknown to the venue, or no answer → the
  filled leg is flattened as above (a late opening that lands after all is chased by the
  workflow's reduce-only close, as before); executed meanwhile → the pair is (partly) hedged and
  the workflow equalises it as usual.

The workflow still makes every other decision and verifies flat with its close loop: the
flatten's answer is booked like any close fill, and an unknown flatten outcome is just one more
issued id the close loop looks up. On a retried attempt (the worker died mid-activity) the
flatten ids are looked up first: if one exists, the earlier attempt got that far and nothing is
sent again (an opening resent now would reopen a leg the trade is abandoning).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from domain.hedge import pair_excess
from messages.trade import PlaceOrderRequest, PlaceOutcome
from venues.errors import VenueError
from venues.models import Side

if TYPE_CHECKING:  # the pool (ccxt, the gateway) is the worker's: code that only names these
    from venues.pool import GatewayPool  # activities (a client starting a workflow) never imports it

log = logging.getLogger("hedgeflow.activities")
#: how long the cancel of the other leg's opening may take before the filled leg is flattened anyway
CANCEL_WAIT_S = 0.25
#: lifecycle-v9: how often a chased opening of unknown outcome is looked up (for ``chase_watch_s``)
WATCH_POLL_S = 0.1


def enabled(reqs: list[PlaceOrderRequest]) -> bool:
    return len(reqs) == 2 and all(r.flatten_client_order_id for r in reqs)


async def earlier_attempt(pool: GatewayPool, reqs: list[PlaceOrderRequest]) -> list[PlaceOutcome] | None:
    """On a retried attempt: the outcomes an earlier attempt left, when it had sent a flatten
    (then nothing is sent now), else None (the attempt goes on as a first one would, ids looked
    up before sending). A look-up that fails raises: the activity is retried again."""
    flats = await asyncio.gather(*(pool.get(r.venue).get_order(r.symbol, r.flatten_client_order_id or "")
                                   for r in reqs))
    if all(f is None for f in flats):
        return None
    openings = await asyncio.gather(*(pool.get(r.venue).get_order(r.symbol, r.client_order_id) for r in reqs))
    outs = []
    for r, opening, flat in zip(reqs, openings, flats, strict=True):
        out = PlaceOutcome(order=opening.model_copy(update={"requested_qty": r.qty}) if opening else None, flatten=flat)
        if flat is not None:  # the earlier attempt may have sent its rest orders too: the close looks them up
            out.flatten_sent = [r.flatten_client_order_id or "", *r.flatten_rest_ids]
        if flat is None and r.chase_rest_ids:  # v9: closes its watch may have sent behind a late opening
            found = await asyncio.gather(*(pool.get(r.venue).get_order(r.symbol, cid) for cid in r.chase_rest_ids))
            out.chase_rest = [o for o in found if o is not None]
            out.chase_rest_sent = [o.client_order_id for o in out.chase_rest]
        if opening is None:
            out.error_type, out.error, out.retryable = "NotSent", "not sent again: the other leg was flattened", False
        outs.append(out)
    log.info("place_orders retry: an earlier attempt flattened a lone leg (%s); nothing sent again",
             ", ".join(r.flatten_client_order_id or "" for r, f in zip(reqs, flats, strict=True) if f))
    return outs


async def resolve(pool: GatewayPool, reqs: list[PlaceOrderRequest], outs: list[PlaceOutcome], attempt: int = 1) -> None:
    """Flatten a lone filled leg (see the module docstring); v9: trim the longer of two filled legs.
    Updates ``outs`` in place."""
    for i, j in ((0, 1), (1, 0)):  # one leg refused, the other accepted and not executed yet:
        refused, other = outs[i], outs[j]  # cancel it before it executes (late) into a lone leg
        if refused.order is None and refused.error_type and not refused.retryable and other.order is not None \
                and other.order.filled_qty <= 0 and not other.order.is_closed:
            await _cancel_other(pool, reqs[j], other)
    for i, j in ((0, 1), (1, 0)):
        mine, other = outs[i], outs[j]
        if mine.order is None or mine.order.filled_qty <= 0:
            continue
        if other.order is not None and (other.order.filled_qty > 0 or other.order.is_closed):
            if other.order.filled_qty > 0:  # both legs hold something: evened here (v9), else by the workflow
                if mine.order.is_closed and other.order.is_closed:
                    await _even(pool, reqs, outs, attempt)
                return
        elif not await _cancel_other(pool, reqs[j], other):
            return  # it executed meanwhile, or its state is unknown: the workflow settles it
        steps = [_flatten(pool, reqs[i], mine)]
        if other.order is None and reqs[j].chase_client_order_id:  # it may still land: chase it now
            steps.append(_chase(pool, reqs[j], other))
        await asyncio.gather(*steps)
        return


async def _chase(pool: GatewayPool, req: PlaceOrderRequest, out: PlaceOutcome) -> None:
    """The other opening's outcome is unknown (no answer, the venue does not know it yet): a
    reduce-only close of its whole size follows it at once, as the workflow's chase does
    (``workflows/trade_close.py`` ``_chase``): a venue that executes the opening late executes
    this right after it; one that never does refuses it (nothing to reduce)."""
    assert req.chase_client_order_id
    out.chase_sent = True
    try:
        out.chase = await pool.get(req.venue).place_market_order(
            req.symbol, Side(req.side).opposite, req.qty, req.chase_client_order_id,
            reduce_only=True, lookup_first=False, wait_window=False)
    except VenueError as exc:
        out.chase_error = f"{exc.type_name}: {exc}"
        if not exc.retryable and not exc.outcome_unknown:
            out.refused_ids.append(req.chase_client_order_id)
    if req.chase_watch_s > 0 and (out.chase is None or out.chase.filled_qty <= 0):
        await _watch(pool, req, out)


async def _watch(pool: GatewayPool, req: PlaceOrderRequest, out: PlaceOutcome) -> None:
    """lifecycle-v9: the chase closed nothing (refused: the venue held nothing yet). An opening whose
    answer was dropped by a venue that executes late is invisible until it executes (2.5 s in chaos),
    and then naked until the close loop's next read and close (1-2 s per activity at load: 3.5 s).
    So its id is looked up every ``WATCH_POLL_S`` for ``chase_watch_s``; once it is final with
    something executed, that is closed at once (reduce-only, then its rests on a thin book) under
    ``chase_rest_ids``. Final with nothing executed: it never will, the watch ends."""
    gw, loop = pool.get(req.venue), asyncio.get_running_loop()
    until = loop.time() + req.chase_watch_s
    while loop.time() < until:
        await asyncio.sleep(WATCH_POLL_S)
        try:
            found = await gw.get_order(req.symbol, req.client_order_id)
        except VenueError:
            continue
        if found is None or not found.is_closed:
            continue
        left = found.filled_qty
        if left > 0:
            log.warning("place_orders: the chased opening %s executed %s late on %s: closing it at once",
                        req.client_order_id, left, req.venue)
        for cid in req.chase_rest_ids:
            if left <= 0:
                return
            out.chase_rest_sent.append(cid)
            try:
                got = await gw.place_market_order(req.symbol, Side(req.side).opposite, left, cid, reduce_only=True,
                                                  lookup_first=False, wait_window=False)
            except VenueError as exc:
                out.chase_error = f"{exc.type_name}: {exc}"
                if not exc.retryable and not exc.outcome_unknown:
                    out.refused_ids.append(cid)
                return
            out.chase_rest.append(got)
            left -= got.filled_qty
            if not got.is_closed or got.filled_qty <= 0:
                return
        return


async def _cancel_other(pool: GatewayPool, req: PlaceOrderRequest, out: PlaceOutcome) -> bool:
    """The other leg has no final answer (accepted and waiting, or none in time): cancel it, for
    at most ``CANCEL_WAIT_S``. True when it holds nothing (cancelled unexecuted, unknown to the
    venue, or no answer and no order known): the filled leg is alone and is flattened."""
    known = out.order is not None
    try:
        got = await asyncio.wait_for(pool.get(req.venue).cancel_order(req.symbol, req.client_order_id), CANCEL_WAIT_S)
    except (VenueError, TimeoutError) as exc:
        log.info("place_orders: cancel of the waiting opening %s: %s", req.client_order_id, type(exc).__name__)
        return not known
    if got is None:
        return not known
    out.order = got.model_copy(update={"requested_qty": req.qty})
    out.cancelled = got.is_closed and got.filled_qty == 0
    return out.cancelled


async def _flatten(pool: GatewayPool, req: PlaceOrderRequest, out: PlaceOutcome) -> None:
    """The lone leg's reduce-only market close of what it filled, then (a thin book filled it only
    in part) the rest at once under ``flatten_rest_ids``, while each comes back final and short."""
    assert out.order is not None and req.flatten_client_order_id
    gw, left = pool.get(req.venue), out.order.filled_qty
    log.info("place_orders: %s filled alone on %s; flattening %s at once (%s)", req.client_order_id, req.venue,
             left, req.flatten_client_order_id)
    for k, cid in enumerate([req.flatten_client_order_id, *req.flatten_rest_ids]):
        out.flatten_sent.append(cid)
        try:
            # never ``lookup_first``: on a retry ``earlier_attempt`` has looked these ids up already,
            # and a look-up of an id this worker never sent waits out the whole validity window (6.5 s
            # in chaos, naked); a reduce-only close of what the leg holds, sent twice under one id,
            # executes at most once and can never open a position
            got = await gw.place_market_order(req.symbol, Side(req.side).opposite, left, cid,
                                              reduce_only=True, lookup_first=False, wait_window=False)
        except VenueError as exc:
            out.flatten_error = f"{exc.type_name}: {exc}"
            if not exc.retryable and not exc.outcome_unknown:
                out.refused_ids.append(cid)
            return
        if k == 0:
            out.flatten = got
        else:
            out.flatten_rest.append(got)
        left -= got.filled_qty
        if not got.is_closed or got.filled_qty <= 0 or left <= 0:
            return


async def _even(pool: GatewayPool, reqs: list[PlaceOrderRequest], outs: list[PlaceOutcome], attempt: int) -> None:
    """lifecycle-v9: both openings final and unequal (a thin book filled one in part): the longer leg
    is trimmed reduce-only at once, then its rests, under ``trim_client_order_id`` and ``trim_rest_ids``.
    The workflow trimmed it after booking the answers: a workflow task more while the difference was
    naked, and a worker killed in between left it so until the retry (chaos: 1.43 ≈ 499 USD, 2.5 s). A
    retried attempt looks each trim id up before sending it (found: not sent again). Each rest goes only
    once the one before is final, and each is an ordinary reduce-only order (an unknown outcome waits
    out the validity window), so the trims close no more than the difference."""
    assert outs[0].order is not None and outs[1].order is not None
    got = pair_excess(outs[0].order.filled_qty, outs[1].order.filled_qty)
    if got is None:
        return
    k = 0 if got[0] == "long" else 1
    req, out, left = reqs[k], outs[k], got[1]
    if not req.trim_client_order_id:
        return
    gw = pool.get(req.venue)
    log.info("place_orders: %s filled %s more than the other leg; trimming it at once (%s)", req.client_order_id,
             left, req.trim_client_order_id)
    for cid in [req.trim_client_order_id, *req.trim_rest_ids]:
        try:
            found = await gw.get_order(req.symbol, cid) if attempt > 1 else None
            out.trim_sent.append(cid)
            trimmed = found or await gw.place_market_order(req.symbol, Side(req.side).opposite, left, cid,
                                                           reduce_only=True, lookup_first=False)
        except VenueError as exc:
            out.trim_error = f"{exc.type_name}: {exc}"
            if cid in out.trim_sent and not exc.retryable and not exc.outcome_unknown:
                out.refused_ids.append(cid)
            return
        out.trim.append(trimmed)
        left -= trimmed.filled_qty
        if not trimmed.is_closed or trimmed.filled_qty <= 0 or left <= 0:
            return
