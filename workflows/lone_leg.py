"""lifecycle-v6, the workflow's side of a lone leg flattened inside ``place_orders``
(``activities/lone_leg.py``): which ids the activity may use, and how its answers are booked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.ids import client_order_id
    from messages.trade import LegName, PlaceOutcome

if TYPE_CHECKING:
    from workflows.trade_orders import OrderDesk

#: the client-id steps of a lone leg's flatten (the first, then up to three rests of a thin book)
FLATTEN_STEPS = ("lf", "lfr1", "lfr2", "lfr3")
#: lifecycle-v9: a thin book (50-70 % of each order) left a lot or two after three rests, to the close
#: loop's own close (1-2 s more at load): the flatten now rests until flat, at most this many times
FLATTEN_RESTS_V9 = 12
#: the step of the reduce-only chase of an opening whose outcome is unknown (the close loop's too)
CHASE_STEP = "b1"
#: v9: a chased opening is watched this long after its chase (it was sent 0.3-2 s before: the
#: watch outlasts the venue's 5 s validity window), its late execution closed under ``b1r1`` …
CHASE_WATCH_S, CHASE_RESTS = 5.0, 8
#: v9: rests of the pair's trim in the same step (``mor1`` …)
TRIM_RESTS = 8


def flatten_steps(opening: str = "o", v9: bool = False) -> tuple[str, ...]:
    """The flatten steps of the opening ``opening`` (``o``; a slice ``p<n>``: ``lfp<n>``, ``lfp<n>r1``...);
    ``v9``: ``FLATTEN_RESTS_V9`` rests (``lfr1`` … ``lfr12``), else three."""
    if opening == "o" and not v9:
        return FLATTEN_STEPS
    tag = "" if opening == "o" else opening
    return (f"lf{tag}", *(f"lf{tag}r{k}" for k in range(1, 1 + (FLATTEN_RESTS_V9 if v9 else 3))))


def chase_step(opening: str = "o") -> str:
    return CHASE_STEP if opening == "o" else f"b{opening}"


def trim_step(opening: str = "o") -> str:
    """v9: the step of the trim ``place_orders`` sends when both legs filled unequal (``mo``; a slice: ``mp<n>``)."""
    return f"m{opening}"


def opening_v9(trade_id: str, leg: LegName, opening: str = "o") -> dict:
    """v9: the fields of an opening request for the chase's watch and the pair's trim in the same step."""
    trim = trim_step(opening)
    return chase_watch(trade_id, leg, opening) | {
        "trim_client_order_id": client_order_id(trade_id, leg, trim),
        "trim_rest_ids": [client_order_id(trade_id, leg, f"{trim}r{k}") for k in range(1, TRIM_RESTS + 1)]}


def chase_watch(trade_id: str, leg: LegName, opening: str = "o") -> dict:
    """v9: the request fields by which ``place_orders`` watches a chased opening after its chase
    (``activities/lone_leg.py`` ``_watch``): for how long, and the ids of the closes of what it executes."""
    base = chase_step(opening)
    return {"chase_watch_s": CHASE_WATCH_S,
            "chase_rest_ids": [client_order_id(trade_id, leg, f"{base}r{k}") for k in range(1, CHASE_RESTS + 1)]}


async def book_flattens(desk: OrderDesk, leg: LegName, out: PlaceOutcome, opening: str = "o") -> None:
    """Book the flattens ``place_orders`` sent for a lone leg; each id it sent is issued (the close
    loop looks up any whose answer is not final)."""
    sent = set(out.flatten_sent)
    done = {o.client_order_id: o for o in ([out.flatten] if out.flatten else []) + out.flatten_rest}
    steps = flatten_steps(opening, desk.v9)
    for step in steps:
        cid = client_order_id(desk.p.trade_id, leg, step)
        if cid not in sent:
            continue
        desk._issue(leg, step)
        order = done.get(cid)
        if order is not None and order.is_closed:
            if step == steps[0]:
                desk.event(f"{leg} filled alone: flattened in the same step ({cid})")
            await desk.settle(leg, order, opening=False)
    if out.chase_sent:  # issued: the close loop does not chase again, and looks it up if need be
        cid = desk._issue(leg, chase_step(opening))
        desk.event(f"{leg} open: outcome unknown; a reduce-only close of it followed at once ({cid}"
                   f"{', ' + out.chase_error if out.chase_error else ''})")
        if out.chase is not None and out.chase.is_closed:
            await desk.settle(leg, out.chase, opening=False)
    if out.chase_rest_sent:  # v9: the watch found the opening executed late and closed it
        desk.event(f"{leg} open: executed late after its chase; closed in the same step "
                   f"({', '.join(out.chase_rest_sent)})")
        step_of = {client_order_id(desk.p.trade_id, leg, f"{chase_step(opening)}r{k}"): f"{chase_step(opening)}r{k}"
                   for k in range(1, CHASE_RESTS + 1)}
        for cid in out.chase_rest_sent:
            desk._issue(leg, step_of[cid])
        for order in out.chase_rest:
            await desk.settle(leg, order, opening=False)
    if out.trim_sent:  # v9: this leg filled more than the other and was trimmed in the same step
        trim = trim_step(opening)
        step_of = {client_order_id(desk.p.trade_id, leg, st): st
                   for st in (trim, *(f"{trim}r{k}" for k in range(1, TRIM_RESTS + 1)))}
        desk.event(f"{leg} filled more than the other leg: trimmed in the same step ({', '.join(out.trim_sent)}"
                   f"{', ' + out.trim_error if out.trim_error else ''})")
        for cid in out.trim_sent:
            desk._issue(leg, step_of[cid])
        for order in out.trim:
            await desk.settle(leg, order, opening=False)
    for cid in out.refused_ids:  # refused outright: nothing of it can land
        desk.s.leg(leg).pending.pop(cid, None)
    if out.flatten_error:
        desk.event(f"{leg} filled alone: a flatten not confirmed ({out.flatten_error}); the close goes on")

