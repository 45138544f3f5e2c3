"""The maker unit's retried attempt and its end (``activities/maker_unit.py``, point 7 of its
docstring): ``recover`` looks every id of the request up and goes on from what the venues say;
``finish`` looks up what is still unresolved and builds the outcome; ``executed`` waits for a
closing hedge a venue executes late. Functions of the unit
(``self`` is the :class:`activities.maker_unit._Unit`), kept apart for the file-size cap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from messages.execution import MakerUnitOutcome
from venues.errors import VenueError
from venues.models import OrderResult

if TYPE_CHECKING:
    from activities.maker_unit import _Unit

log = logging.getLogger("hedgeflow.activities")
#: look-ups of unresolved ids at the end of a unit: at most this long
FINAL_LOOKUP_S = 2.0


async def recover(self: _Unit) -> None:
    """Look every id up (a retried attempt) and go on from what the venues say."""
    r = self.req
    passive_ids = [*r.quote_ids, r.passive_taker_id, *r.flatten_ids]
    found = await asyncio.gather(*(self.pg.get_order(r.symbol, c) for c in passive_ids))  # fails: raises
    hedges = await asyncio.gather(*(self.ag.get_order(r.symbol, c) for c in r.hedge_ids), return_exceptions=True)
    if bad := next((h for h in hedges if isinstance(h, BaseException)), None):
        if not isinstance(bad, VenueError):
            raise bad
        # The active venue does not answer: waiting for it (retry after retry) left the passive
        # fill naked for a whole partition (75 s in a chaos run). Its hedges are possibly sent (the
        # workflow looks them up); the passive fill, on the venue that answers, is flattened now.
        for cid in r.hedge_ids:
            self.sent(cid)
        self.next_hedge = len(r.hedge_ids)
        self.out.active_failed = f"active venue unreadable on a retried attempt ({bad.type_name})"
        hedges = [None] * len(r.hedge_ids)
    by_id = {c: o for c, o in zip([*passive_ids, *r.hedge_ids], [*found, *hedges], strict=True) if o is not None}
    for cid, o in by_id.items():
        self.record(o, cid in passive_ids)
        if not o.is_closed and cid in r.quote_ids:
            self.record(await self.cancel(o), True)
    self.taker_used = r.passive_taker_id in by_id

    def after(ids: list[str]) -> int:  # the next id after the last found one, skipping one in flight
        last = max((k for k, c in enumerate(ids) if c in by_id), default=-1)
        if last + 1 < len(ids):
            self.sent(ids[last + 1])
        return min(last + 2, len(ids))

    self.next_quote, self.next_hedge, self.next_flatten = (after(r.quote_ids), after(r.hedge_ids),
                                                           after(r.flatten_ids))
    if by_id:  # the window runs from the earlier attempt's first order
        first_ms = min(o.created_ms or o.timestamp_ms for o in by_id.values())
        ago = max(0.0, min(r.window_s, time.time() - first_ms / 1000))
        self.t0 = time.monotonic() - ago
    if self.lag != 0:  # unhedged since the latest passive fill, by the venue's clock
        filled = [o.timestamp_ms for c, o in by_id.items() if c in passive_ids and o.filled_qty > 0]
        ago = max(0.0, time.time() - max(filled, default=0) / 1000) if filled else r.cap_s
        self.lag_since = time.monotonic() - min(ago, r.window_s + r.cap_s)
    log.info("maker unit retried (attempt %d): found %d of its orders; passive %s, active %s, flattened %s",
             self.attempt, len(by_id), self.passive_in, self.active_in, self.flattened)

async def finish(self: _Unit) -> MakerUnitOutcome:
    """Look up what is still unresolved (cancel a found open quote), then the outcome."""
    r = self.req
    todo = sorted(self.unresolved)
    if todo:
        async def one(cid: str) -> None:
            passive = cid not in r.hedge_ids
            gw = self.pg if passive else self.ag
            try:
                o = await asyncio.wait_for(gw.get_order(r.symbol, cid), FINAL_LOOKUP_S)
                if o is not None and not o.is_closed and cid in r.quote_ids:
                    o = await asyncio.wait_for(gw.cancel_order(r.symbol, cid), FINAL_LOOKUP_S) or o
            except (VenueError, TimeoutError):
                return  # still possibly sent: in sent_ids, the workflow looks it up
            if o is not None:
                self.record(o, passive)

        await asyncio.gather(*(one(c) for c in todo))
    self.touch()
    o = self.out
    o.passive = [self.orders[c] for c in self.passive_seq]
    o.active = [self.orders[c] for c in self.active_seq]
    o.maker_qty = self._sum(r.quote_ids)
    return o


async def executed(self: _Unit, cid: str, got: OrderResult, wait_s: float) -> OrderResult:
    """A closing hedge the venue accepted unexecuted, read every 0.1 s until it is done (at most
    ``wait_s``); its latest state."""
    end = time.monotonic() + wait_s
    while not got.is_closed and time.monotonic() < end:
        await asyncio.sleep(0.1)
        try:
            got = await self.ag.get_order(self.req.symbol, cid) or got
        except VenueError:
            continue
    return got
