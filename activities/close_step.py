"""lifecycle-v7: one round of a hedged pair closed in step, in one activity.

A hedged pair closes one leg after the other (``domain.hedge.close_sequence``): the leader's
close, then the follower's match of what the leader filled. Before v7 the follower's match was a
second activity, scheduled by the workflow once it had booked the leader's fill: one workflow
task and one activity round trip while the pair was unequal (about 100 ms on an idle machine;
for as long as Temporal is down when the dev server restarts between the two, 2.2 s in a CI chaos
run). And a leader was sent although its follower's venue had just gone down (a partition that
began after the close chose its order), which left the follower naked for the whole partition
(8.1 s in a chaos run). Now ``close_in_step``:

1. reads the follower's position, for at most ``probe_s``: unreachable → nothing is sent and the
   workflow lets the follower lead (a leg that cannot close goes first; nothing is unhedged);
2. sends the leader's reduce-only close (the workflow's id, as ``close_leg`` would);
3. sends, in the same step, the follower's reduce-only match: down to what the leader still
   holds, at most what the follower's read found; a match that fills only part (a thin book) is
   followed at once by the rest, under the request's ``follower_rest_ids``; a match of the
   follower's whole position that fails with a 5xx is sent again at once under the next of those
   ids (``QUICK_RETRIES``; reduce-only and whole, a resend can close no more than is there), and
   (v9) so is a match the venue refused outright (nothing of it is on the venue);
4. (lifecycle-v8) a match its venue accepts and has not executed ``LATE_AFTER_S`` later (the venue
   has started executing late) is covered on the leader's venue: a re-open of what it has not
   matched, then the match is cancelled, and what the cancel finds executed after all is closed
   again there (:func:`rehedge`). The pair is then as hedged as before the round, and the late
   venue leads the next one; the leader's fill was naked for about ``LATE_AFTER_S``, not the venue's
   delay. A match refused as below its venue's step (it grew since the trade opened) is reported
   (``follower_refused_qty``): the follower then waits for its leader to be flat and closes whole.

Both ids come from the workflow (deterministic). A retried attempt (the worker died) looks both
ids up once first and sends neither again if it finds them; an id sent twice executes at most once
(the venue refuses a client id it already knows), and both orders are reduce-only, so neither can
open or flip a position. The workflow books both answers and still verifies flat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from messages.trade import PlaceOrderRequest, StepCloseOutcome, StepCloseRequest
from venues.errors import OrderBelowMinimum, VenueError
from venues.gateway import LATE_AFTER_S
from venues.models import OrderResult

if TYPE_CHECKING:
    from venues.pool import GatewayPool

log = logging.getLogger("hedgeflow.activities")
#: a follower's whole-position match refused with a 5xx is sent again this many times, this soon
QUICK_RETRIES, QUICK_RETRY_S = 3, 0.1
#: a venue that answered a market order accepted-not-executed this recently "executes late": as a
#: follower it would leave the leader's fill naked until it matches (2.5 s in chaos), so it leads
LATE_MEMORY_S = 10.0
#: a leader accepted but not executed yet is looked up this often, for at most this long, and its
#: follower's match goes out as soon as it has executed (instead of a round trip through the workflow)
LEADER_POLL_S, LEADER_WAIT_S = 0.1, 5.0
#: after a re-hedge, a match resent after an unknown outcome is watched this long (the venue's 5 s
#: validity window from its send)
UNKNOWN_MATCH_WATCH_S = 5.5


async def _send(pool: GatewayPool, req: PlaceOrderRequest, qty: Decimal, retry: bool, whole: bool,
                settle_s: float | None = None) -> OrderResult:
    """``whole``: the order closes everything its venue holds (rounded up to a step that grew);
    ``settle_s``: how long an answer accepted but not executed is looked up before it is returned."""
    gw = pool.get(req.venue)
    if retry:  # one look-up, no validity-window wait: a resend under this id executes at most once
        found = await gw.get_order(req.symbol, req.client_order_id)
        if found is not None:
            return found.model_copy(update={"duplicate_prevented": True})
    return await gw.place_market_order(req.symbol, req.side, qty, req.client_order_id, reduce_only=True,
                                       lookup_first=False, wait_window=False, whole=whole, settle_s=settle_s)


async def close_in_step(pool: GatewayPool, req: StepCloseRequest, attempt: int) -> StepCloseOutcome:
    """See the module docstring. A leader that fails raises (the workflow looks its id up and
    reads); a follower that fails is reported (its id is issued: the workflow looks it up)."""
    f, lead = req.follower, req.leader
    try:
        got = await asyncio.wait_for(pool.get(f.venue).positions([f.symbol]), req.probe_s)
    except (VenueError, TimeoutError) as exc:
        log.info("close in step: follower venue %s unreadable (%s); %s not sent", f.venue, type(exc).__name__,
                 lead.client_order_id)
        return StepCloseOutcome(follower_unreachable=True, error=f"{type(exc).__name__}: {exc}")
    held = sum((abs(p.qty) for p in got if p.symbol == f.symbol), Decimal(0))
    if pool.get(f.venue).executes_late(LATE_MEMORY_S) and not pool.get(lead.venue).executes_late(LATE_MEMORY_S):
        log.info("close in step: follower venue %s executes late; %s not sent, the follower leads", f.venue,
                 lead.client_order_id)  # the workflow lets the follower lead, as for an unreadable one
        return StepCloseOutcome(follower_unreachable=True, error=f"{f.venue} executes orders late")
    out = StepCloseOutcome(follower_held=held)
    log.info("close in step: leader %s %s on %s, then follower %s on %s (holds %s)", lead.client_order_id,
             lead.qty, lead.venue, f.client_order_id, f.venue, held)
    t_lead = time.monotonic()
    sent = await _send(pool, lead, lead.qty, attempt > 1, lead.resend_fresh)
    out.leader = await _settled(pool, lead, sent)
    late_at = pool.get(lead.venue).late_at
    lead_late = late_at is not None and late_at >= t_lead  # this leader executed late (the gateway marked it)
    # only a leader an earlier attempt had sent (found by its look-up) can have a match behind it: the
    # follower's ids are looked up then only (a failed look-up there used to fail a fresh round: 6.2 s naked)
    if sent.duplicate_prevented and await _earlier_follower(pool, req, out):
        return out  # an earlier attempt got as far as the match (its read above saw it executed)
    left = max(req.leader_held - out.leader.filled_qty, Decimal(0))  # what the leader still holds
    qty = min(held - left, f.qty)
    if out.leader.filled_qty <= 0 or qty <= 0:
        return out
    whole, retries = left == 0 and qty == held, 0  # the follower's whole position: a resend can never over-close
    unknown: list[str] = []  # matches resent after an unknown outcome: they may still execute, late
    for cid in [f.client_order_id, *req.follower_rest_ids]:
        # the match, then (a thin book filled it only in part) the rest at once under fresh ids
        out.follower_sent_ids.append(cid)
        try:
            # no look-up first, even on a retry: ``_earlier_follower`` has just looked every id up
            got = await _send(pool, f.model_copy(update={"client_order_id": cid}), qty, False, whole,
                              LATE_AFTER_S if req.rehedge_ids else None)
        except VenueError as exc:
            out.error = f"{exc.type_name}: {exc}"
            log.warning("close in step: follower %s on %s: %s", cid, f.venue, out.error)
            if isinstance(exc, OrderBelowMinimum):  # below the venue's (grown) step: nothing was sent
                out.follower_sent_ids.remove(cid)
                out.follower_refused_qty = qty
                return out
            refused = not exc.retryable and not exc.outcome_unknown  # definitively not on the venue
            if refused:  # nothing of it can land: not the workflow's to look up
                out.follower_sent_ids.remove(cid)
            if retries >= QUICK_RETRIES or not (refused or whole and exc.retryable):
                return out
            # a 5xx on a whole-position close, or a refusal (chaos: one -2010 left the leader's fill naked
            # 2.8 s until the follower's loop read and matched): sent again at once under the next id
            retries += 1
            if exc.outcome_unknown:
                unknown.append(cid)
            await asyncio.sleep(QUICK_RETRY_S)
            continue
        if req.rehedge_ids and not got.is_closed and got.filled_qty < qty and not lead_late:
            # accepted, not executed (v8); a leader that executed late itself would re-open as late
            await rehedge(pool, req, out, got, qty, attempt, unknown)
            return out
        if out.follower is None:
            out.follower = got
        else:
            out.follower_rest.append(got)
        qty -= got.filled_qty
        if not got.is_closed or got.filled_qty <= 0 or qty <= 0:
            return out
    return out


async def _settled(pool: GatewayPool, req: PlaceOrderRequest, order: OrderResult) -> OrderResult:
    """A leader accepted but not executed yet (a venue that matches late), looked up every
    ``LEADER_POLL_S`` until it has executed or is final, for at most ``LEADER_WAIT_S``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LEADER_WAIT_S
    while not order.is_closed and order.filled_qty <= 0 and loop.time() < deadline:
        await asyncio.sleep(LEADER_POLL_S)
        try:
            found = await pool.get(req.venue).get_order(req.symbol, req.client_order_id)
        except VenueError:
            continue
        if found is not None:  # keeps duplicate_prevented: the workflow books a found order as found
            order = found.model_copy(update={"requested_qty": order.requested_qty,
                                             "duplicate_prevented": order.duplicate_prevented})
    return order


async def _earlier_follower(pool: GatewayPool, req: StepCloseRequest, out: StepCloseOutcome) -> bool:
    """On a retried attempt: the follower's orders an earlier attempt sent, every id looked up once
    (a worker killed after the match executed must not leave it unbooked). True when any is found."""
    gw, f = pool.get(req.follower.venue), req.follower
    ids = [f.client_order_id, *req.follower_rest_ids]
    found = await asyncio.gather(*(gw.get_order(f.symbol, cid) for cid in ids))
    for cid, order in zip(ids, found, strict=True):
        if order is None:
            continue
        out.follower_sent_ids.append(cid)
        if out.follower is None:
            out.follower = order
        else:
            out.follower_rest.append(order)
    if out.follower_sent and req.rehedge_ids:  # v8: and the re-hedge an earlier attempt began, if any
        await _earlier_rehedge(pool, req, out)
    return out.follower_sent


async def _earlier_rehedge(pool: GatewayPool, req: StepCloseRequest, out: StepCloseOutcome) -> None:
    """A retried attempt's look-ups of the re-hedge ids; a re-open found without its re-close is
    finished (the match cancelled, what it executed closed again on the leader's venue)."""
    gw, reopen_id, reclose_id = pool.get(req.leader.venue), *req.rehedge_ids[:2]
    out.rehedge, out.rehedge_close = await asyncio.gather(*(gw.get_order(req.leader.symbol, i) for i in (reopen_id,
                                                                                                       reclose_id)))
    out.rehedge_sent_ids = [i for i, o in ((reopen_id, out.rehedge), (reclose_id, out.rehedge_close)) if o]
    if out.rehedge is not None and out.rehedge_close is None and out.follower is not None:
        # the match as the earlier attempt saw it when it re-hedged: accepted, nothing executed
        await _cancel_and_reclose(pool, req, out, out.follower.model_copy(update={"filled_qty": Decimal(0)}),
                                  reclose_id, 2)


async def rehedge(pool: GatewayPool, req: StepCloseRequest, out: StepCloseOutcome, match: OrderResult, qty: Decimal,
                  attempt: int, unknown: list[str] | None = None) -> None:
    """v8: the follower's match (of ``qty``) was accepted but has not executed ``LATE_AFTER_S`` after
    (its venue executes late: 2.5 s in chaos), so the leader's fill is naked until it does. The
    leader's venue re-opens what the match has not covered (a market order of the leg's own side,
    ``rehedge_ids[0]``), then the match is cancelled; what the cancel finds executed after all
    (the race) is closed again on the leader's venue (reduce-only, ``rehedge_ids[1]``). The pair is
    then as hedged as before the round, and the late venue leads the next one. Every order goes in
    ``out`` (the workflow books them); a re-open that fails leaves the match to hedge the pair."""
    lead, f = req.leader, req.follower
    lg = pool.get(lead.venue)
    reopen_id, reclose_id = req.rehedge_ids[:2]
    out.follower = match
    gap = qty - match.filled_qty
    log.warning("close in step: follower %s on %s accepted but not executed after %.1f s: re-opening %s on %s (%s), "
                "cancelling the match", match.client_order_id, f.venue, LATE_AFTER_S, gap, lead.venue, reopen_id)
    out.rehedge_sent_ids.append(reopen_id)
    try:
        out.rehedge = await lg.place_market_order(lead.symbol, lead.side.opposite, gap, reopen_id,
                                                  lookup_first=attempt > 1, ref_price=lead.ref_price)
    except VenueError as exc:
        if not exc.outcome_unknown:
            out.rehedge_sent_ids.remove(reopen_id)  # refused: nothing of it is on the venue
        out.error = f"re-hedge {reopen_id}: {exc.type_name}: {exc}"
        log.warning("close in step: %s", out.error)
        return
    await _cancel_and_reclose(pool, req, out, match, reclose_id, attempt)
    if unknown and out.rehedge_close is None:
        await _watch_unknown(pool, req, out, unknown, reclose_id, attempt)


async def _watch_unknown(pool: GatewayPool, req: StepCloseRequest, out: StepCloseOutcome, ids: list[str],
                         reclose_id: str, attempt: int) -> None:
    """The re-hedged round had resent its match after an unknown outcome (an answer dropped by a venue
    that executes late: the order is invisible until it executes). Such a match may still execute and
    close the follower while the leader's leg is re-opened (chaos seed 3: 82.6 ≈ 1,000 USD naked 5.0 s
    until the close loop). Each is looked up every ``LEADER_POLL_S`` for ``UNKNOWN_MATCH_WATCH_S``
    (cancelled if found waiting); what one executed is closed again on the leader's venue (``v<n>``)."""
    gw, loop = pool.get(req.follower.venue), asyncio.get_running_loop()
    until, ids = loop.time() + UNKNOWN_MATCH_WATCH_S, list(ids)
    while ids and loop.time() < until:
        await asyncio.sleep(LEADER_POLL_S)
        for cid in list(ids):
            try:
                found = await gw.get_order(req.follower.symbol, cid)
                if found is not None and not found.is_closed:
                    found = await gw.cancel_order(req.follower.symbol, cid) or found
            except VenueError:
                continue
            if found is None or not found.is_closed:
                continue
            ids.remove(cid)
            if found.filled_qty <= 0:
                continue
            out.follower_rest.append(found)  # the workflow books it on the follower (its id is issued)
            assert out.rehedge is not None
            log.warning("close in step: the match %s whose answer was lost executed %s late: closing it again on %s "
                        "(%s)", cid, found.filled_qty, req.leader.venue, reclose_id)
            await _reclose(pool, req, out, min(found.filled_qty, out.rehedge.filled_qty), reclose_id, attempt)
            return


async def _cancel_and_reclose(pool: GatewayPool, req: StepCloseRequest, out: StepCloseOutcome, match: OrderResult,
                              reclose_id: str, attempt: int) -> None:
    """Cancel the late match; whatever of it executed after the re-open is closed again on the leader's venue."""
    lead, f = req.leader, req.follower
    try:
        final = await pool.get(f.venue).cancel_order(f.symbol, match.client_order_id)
    except VenueError as exc:
        log.warning("close in step: cancelling the late match %s failed (%s): the workflow looks it up",
                    match.client_order_id, exc.type_name)
        return
    if final is not None:
        out.follower = final.model_copy(update={"requested_qty": match.requested_qty})
    assert out.rehedge is not None and out.follower is not None
    excess = min(out.follower.filled_qty - match.filled_qty, out.rehedge.filled_qty)  # matched twice now
    if excess <= 0:
        return
    log.warning("close in step: the late match %s executed %s after all: closing it again on %s (%s)",
                match.client_order_id, excess, lead.venue, reclose_id)
    await _reclose(pool, req, out, excess, reclose_id, attempt)


async def _reclose(pool: GatewayPool, req: StepCloseRequest, out: StepCloseOutcome, excess: Decimal,
                   reclose_id: str, attempt: int) -> None:
    """Close ``excess`` of the re-opened leader leg again (reduce-only, ``reclose_id``): the match executed after all."""
    lead = req.leader
    out.rehedge_sent_ids.append(reclose_id)
    try:
        out.rehedge_close = await pool.get(lead.venue).place_market_order(
            lead.symbol, lead.side, excess, reclose_id, reduce_only=True, lookup_first=attempt > 1, wait_window=False)
    except VenueError as exc:
        if not exc.outcome_unknown:
            out.rehedge_sent_ids.remove(reclose_id)
        out.error = f"re-close {reclose_id}: {exc.type_name}: {exc}"
        log.warning("close in step: %s", out.error)
