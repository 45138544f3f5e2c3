"""Issue 15: one *maker unit* — the passive leg quoted post-only, each maker fill hedged at once by a
taker order on the active leg, in one activity (the ids and the quantity come from the workflow,
``domain.execution.maker_ids``; the payloads are ``messages/execution.py``).

1. **Quote**: a post-only limit on the passive leg at the passive touch (a BUY at the best bid, a
   SELL at the best ask) for what is left, under the next ``quote_ids``; one that would cross
   (EXPIRED, filled 0) is re-priced at once under the next id.
   Each quote is armed with the passive venue's dead-man's switch (``DEAD_MAN_MS``,
   :mod:`venues.dead_man`), re-armed after a read the venue answered, at most every
   ``DEAD_MAN_REFRESH_S``: a venue that stops answering (a partition) stops the refreshes too and
   cancels the quote by itself about one countdown later, so a quote fills unseen only within it.
2. **Watch** it (``get_order`` every ``POLL_S``): each new maker fill is hedged at once by a taker
   market order on the active leg (the delta on the step, the next ``hedge_ids``), so the unhedged
   quantity never exceeds one fill. A remainder below ``min_qty`` waits: the cap guards it.
3. **Re-quote**: every ``window_s / len(quote_ids)`` seconds without a full fill, when the touch has
   moved away, the quote is cancelled (its final state gives what filled: hedged) and sent again
   at the new touch. After ``window_s``, or when the quote ids run out or only ``HEDGE_RESERVE``
   hedge ids are left: **fallback** — cancel, the passive rest by taker (``passive_taker_id``) and
   its match on the active leg by taker (``fell_back``).
4. **The cap**: an unhedged notional above ``cap_usd`` or a fill unhedged longer than ``cap_s``
   after its hedge was tried (a fill below the minimum, a hedge filled short) sends the lagging
   leg taker at once: the active leg's lag when it is at least ``min_qty``, else the passive rest
   by taker and the active match for the whole (``cap_fired``).
5. **The active venue cannot trade** (a hedge refused or 5xx, then once more at once under the
   next id; or unanswered within ``HEDGE_TIMEOUT_S`` and then cancelled unexecuted — never a
   second hedge beside one that may still execute): quoting stops, the quote is
   cancelled and the passive leg's unhedged fill is flattened reduce-only by taker
   (``flatten_ids``); ``active_failed`` says why. (A reduce-only unit — a close — flattens nothing:
   a reduce-only order cannot undo a reduction; the workflow's close loop goes on from positions.)
6. The outcome holds every order's final state (passive, active), every id sent or possibly sent,
   the maker quantity, the longest time a fill waited for its hedge's answer and the most notional
   unhedged at any moment.
7. **A retried attempt** (the worker died) looks every id of the request up first and goes on from
   what the venues say: nothing found is sent again, the next id after the last found one in each
   sequence is skipped (it may have been in flight; it is reported as possibly sent and looked up
   again at the end), an open quote is cancelled, and a unit that had begun flattening goes on
   flattening.

A passive venue that fails (the quote cannot be placed, read or cancelled) raises: the retry picks
the unit up from the venues' own answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from activities.maker_resume import executed, finish, recover
from domain.rounding import round_down
from messages.execution import MakerUnitOutcome, MakerUnitRequest
from venues import dead_man
from venues.errors import OrderBelowMinimum, VenueError, VenueUnavailable
from venues.models import OrderResult, OrderStatus, Side

if TYPE_CHECKING:
    from venues.pool import GatewayPool

log = logging.getLogger("hedgeflow.activities")
ZERO = Decimal(0)
#: how often a resting quote is read
POLL_S = 0.15
#: a hedge not answered by then is cancelled (``_Unit.slow_hedge``): cancelled unexecuted, the active venue
#: counts as failed (the passive fill is flattened); a refused one is sent once more under the next id
HEDGE_TIMEOUT_S = 0.5
#: a hedge unanswered by then and not cancelled: its own answer is waited for this long more (never a
#: second hedge beside it), then the active venue counts as failed
HEDGE_WAIT_S = 8.0
#: hedge ids kept back for the fallback's match (with one quick resend and a thin book's rest)
HEDGE_RESERVE = 3
#: the countdown of the passive venue's dead-man's switch (raised to the venue's minimum: Binance 1 s,
#: Bybit 3, Hyperliquid 6, OKX 10) and how often a read the venue answered re-arms it
DEAD_MAN_MS = 1000
DEAD_MAN_REFRESH_S = 0.3


#: ``slow_hedge``: the venue answered at once that it has no such order
ABSENT = object()


class ActiveFailed(Exception):
    """The active venue could not hedge (refused, 5xx, timed out — twice)."""


class _Unit:
    def __init__(self, pool: GatewayPool, req: MakerUnitRequest, attempt: int) -> None:
        self.req, self.attempt = req, attempt
        self.pg, self.ag = pool.get(req.passive_venue), pool.get(req.active_venue)
        self.out = MakerUnitOutcome()
        self.orders: dict[str, OrderResult] = {}  # latest state by client id
        self.passive_seq: list[str] = []
        self.active_seq: list[str] = []
        self.unresolved: set[str] = set()  # possibly sent, no final answer seen
        self.next_quote = self.next_hedge = self.next_flatten = 0
        self.taker_used = False
        self.price = req.ref_price or ZERO
        self.t0 = time.monotonic()
        self.lag_since: float | None = None
        self.quote_px: dict[str, Decimal] = {}
        self.switch = True  # the passive venue has a dead-man's switch (until it says otherwise)
        self.armed_at = 0.0

    # ---- accounting ----------------------------------------------------------------------
    def _sum(self, ids: list[str]) -> Decimal:
        return sum((self.orders[c].filled_qty for c in ids if c in self.orders), ZERO)

    @property
    def passive_in(self) -> Decimal:  # filled in the unit's direction (quotes and the taker fallback)
        return self._sum([*self.req.quote_ids, self.req.passive_taker_id])

    @property
    def flattened(self) -> Decimal:
        return self._sum(self.req.flatten_ids)

    @property
    def active_in(self) -> Decimal:
        return self._sum(self.req.hedge_ids)

    @property
    def lag(self) -> Decimal:
        """What the active leg still has to match (negative: it is ahead)."""
        return self.passive_in - self.flattened - self.active_in

    def record(self, r: OrderResult, passive: bool) -> OrderResult:
        cid = r.client_order_id
        seq = self.passive_seq if passive else self.active_seq
        if cid not in seq:
            seq.append(cid)
        if cid not in self.out.sent_ids:
            self.out.sent_ids.append(cid)
        if r.is_closed:
            self.unresolved.discard(cid)
        if passive and cid in self.req.quote_ids and r.filled_qty > 0 and self.pg.adapter.binance_fields:
            # a post-only fill is a maker fill; Binance's order answer carries no fee (estimated at taker)
            r = r.model_copy(update={"fee": r.filled_qty * (r.avg_price or ZERO) * self.pg.venue.maker_fee})
        self.orders[cid] = r
        if r.avg_price:
            self.price = r.avg_price
        self.touch()
        return r

    def sent(self, cid: str) -> None:
        if cid not in self.out.sent_ids:
            self.out.sent_ids.append(cid)
        self.unresolved.add(cid)

    def touch(self) -> None:
        """Track how long and how much is unhedged (called after every change)."""
        now, lag = time.monotonic(), self.lag
        if lag == 0:
            if self.lag_since is not None:  # the hedge (or flatten) that closed it has just answered
                self.out.unhedged_max_s = max(self.out.unhedged_max_s, round(now - self.lag_since, 3))
            self.lag_since = None
            return
        if self.lag_since is None:
            self.lag_since = now
        self.out.unhedged_max_s = max(self.out.unhedged_max_s, round(now - self.lag_since, 3))
        self.out.unhedged_max_usd = max(self.out.unhedged_max_usd, abs(lag) * self.price)

    def over_cap(self) -> bool:
        if self.lag <= 0 or self.lag_since is None:
            return False
        return self.lag * self.price > self.req.cap_usd or time.monotonic() - self.lag_since > self.req.cap_s

    # ---- orders ---------------------------------------------------------------------------
    async def touch_price(self) -> Decimal:
        book = await self.pg.order_book(self.req.symbol, 5)
        levels = book.bids if self.req.passive_side is Side.BUY else book.asks
        if not levels:
            raise VenueUnavailable(f"{self.req.passive_venue}: empty book side for {self.req.symbol}",
                                   venue=self.req.passive_venue)
        self.price = levels[0].price
        return self.price

    async def arm(self, *, refresh: bool = False) -> None:
        """(Re)arm the passive venue's dead-man's switch. Before a quote: up to 3 tries (a venue
        failing 1 request in 2 would otherwise fail the unit), then raise. A refresh that fails is
        only logged (none arriving is the point: the venue then cancels the quote itself). A venue
        that refuses the switch outright (not retryable) is quoted without it."""
        if not self.switch or (refresh and time.monotonic() - self.armed_at < DEAD_MAN_REFRESH_S):
            return
        for k in range(1 if refresh else 3):
            try:
                self.switch = await dead_man.arm(self.pg, self.req.symbol, DEAD_MAN_MS) is not None
                self.armed_at = time.monotonic()
                return
            except VenueError as exc:
                if not exc.retryable:
                    self.switch = False
                log.warning("maker unit: dead-man's switch on %s: %s%s", self.req.passive_venue, exc.type_name,
                            "" if exc.retryable else " (quoting without it)")
                if not exc.retryable or refresh:
                    return
                if k == 2:
                    raise
                await asyncio.sleep(0.05)

    async def quote(self) -> OrderResult | None:
        """A post-only quote at the touch for the rest, armed with the dead-man's switch; None
        when it would have crossed."""
        r = self.req
        px = await self.touch_price()
        await self.arm()
        cid = r.quote_ids[self.next_quote]
        self.next_quote += 1
        self.sent(cid)
        self.quote_px[cid] = px
        try:
            placed = await self.pg.place_limit_order(r.symbol, r.passive_side, self.rest(), px, cid, post_only=True,
                                                     reduce_only=r.reduce_only)
        except OrderBelowMinimum:  # checked before sending (e.g. the rest below the minimum notional)
            self.unresolved.discard(cid)
            self.out.sent_ids.remove(cid)
            raise
        got = self.record(placed, True)
        if got.status is OrderStatus.EXPIRED and got.filled_qty == 0:
            log.info("maker unit: quote %s at %s would cross; re-pricing", cid, px)
            return None
        return got

    async def cancel(self, q: OrderResult) -> OrderResult:
        for k in range(3):
            try:
                got = await self.pg.cancel_order(self.req.symbol, q.client_order_id)
                break
            except VenueError as exc:
                if not exc.retryable or k == 2:
                    raise
                await asyncio.sleep(0.1)
        return self.record(got or q, True) if got is not None else q

    def rest(self) -> Decimal:
        return round_down(self.req.qty - self.passive_in, self.req.step)

    def hedges_left(self) -> int:
        return len(self.req.hedge_ids) - self.next_hedge

    async def hedge(self, qty: Decimal) -> OrderResult | None:
        """A taker hedge of ``qty`` on the active leg, once more at once under the next id when it
        is refused; None when it is below the venue's minimum (nothing sent). Raises ActiveFailed.
        A hedge not answered within ``HEDGE_TIMEOUT_S`` is never followed by another (``slow_hedge``)."""
        r, why = self.req, "no hedge id left"
        for _ in range(2):
            if self.next_hedge >= len(r.hedge_ids):
                break
            cid = r.hedge_ids[self.next_hedge]
            self.next_hedge += 1
            task = asyncio.ensure_future(self.ag.place_market_order(
                r.symbol, r.active_side, qty, cid, reduce_only=r.reduce_only, ref_price=self.price or None,
                wait_window=not r.reduce_only))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # awaited or not: no warning
            slow = False
            try:
                got = await asyncio.wait_for(asyncio.shield(task), HEDGE_TIMEOUT_S)
            except OrderBelowMinimum:
                return None  # checked before sending: nothing went out
            except VenueError as exc:
                self.sent(cid)
                if not exc.outcome_unknown:
                    self.unresolved.discard(cid)  # refused: nothing of it can land
                log.warning("maker unit: hedge on %s: %s: %s", r.active_venue, exc.type_name, exc)
                why = f"{exc.type_name}: {exc}"
                continue
            except TimeoutError:
                self.sent(cid)
                slow, found = True, await self.slow_hedge(cid, task)
                if found is ABSENT:  # the venue answered it has no such order: once more, next id
                    why = f"hedge {cid}: an error, then the venue had no such order"
                    log.warning("maker unit: hedge on %s: %s", r.active_venue, why)
                    continue
                if found is None:
                    raise ActiveFailed(f"VenueTimeout: hedge {cid} unanswered within {HEDGE_TIMEOUT_S} s, "
                                       f"not cancelled, no answer within {HEDGE_WAIT_S} s more") from None
                got = found
            if r.reduce_only and not got.is_closed:  # a close: accepted, executing late: wait for it
                got = await executed(self, cid, got, HEDGE_WAIT_S)
            got = self.record(got, False)
            if got.filled_qty > 0:
                return got
            why = f"hedge {cid} filled nothing ({got.status}{', cancelled unexecuted' if slow else ''})"
            log.warning("maker unit: hedge on %s: %s", r.active_venue, why)
            if slow:
                break  # the venue executes late: another hedge would be as late; the passive is flattened
        raise ActiveFailed(why)

    async def slow_hedge(self, cid: str, task: asyncio.Future) -> OrderResult | object | None:
        """A hedge with no final answer within ``HEDGE_TIMEOUT_S`` may still execute (a venue that
        executes late, or answers late): a second hedge, or a flatten of the passive fill, would
        then double the exposure (a chaos run's active leg got both hedges on a venue executing
        2.5 s late: twice the fill, naked 3 s). It is cancelled: a venue that holds it unexecuted
        cancels it (filled 0: nothing can land; the caller flattens the passive fill), one that
        executed it says so (hedged), one that fails it is down (ActiveFailed, as a refused hedge),
        one that answers at once that it has no such order: ``ABSENT`` (the caller sends once more
        under the next id, as after a refusal).
        With no final answer to the cancel (late, or not found: in flight), the hedge's own answer
        is waited for, at most ``HEDGE_WAIT_S`` (the gateway looks an unanswered order up until
        it is found or its validity window has passed). None: its fate is still unknown."""
        if self.req.reduce_only:  # a close: two reduce-only orders cannot flip the leg, and a cancelled
            try:  # hedge left the leg to the close loop, itself late (a chaos close: 2.8 units naked 3.2 s)
                return await asyncio.wait_for(task, HEDGE_WAIT_S)
            except (VenueError, TimeoutError):
                return None
        try:
            c = await asyncio.wait_for(self.ag.cancel_order(self.req.symbol, cid), HEDGE_TIMEOUT_S)
        except VenueError as exc:  # the venue does not answer at all (down): as a refused hedge
            task.cancel()
            raise ActiveFailed(f"hedge {cid} unanswered within {HEDGE_TIMEOUT_S} s, its cancel failed "
                               f"({exc.type_name}): the active venue is down") from None
        except TimeoutError:  # answers late: the hedge is likely executing, its own answer decides
            pass
        else:
            if c is None:  # answered at once: the venue has no such order (a 5xx that executed nothing,
                task.cancel()  # its look-ups waiting out the validity window: 6.6 s naked in a chaos run)
                return ABSENT
            if c.is_closed:
                task.cancel()
                return c
        try:
            return await asyncio.wait_for(task, HEDGE_WAIT_S)
        except (VenueError, TimeoutError):
            return None

    async def hedge_lag(self, *, whole: bool = False) -> None:
        """Hedge what the active leg lags (at least ``min_qty`` unless ``whole``)."""
        while self.hedges_left() > 0:
            q = round_down(self.lag, self.req.step)
            if q <= 0 or (q < self.req.min_qty and not whole):
                return
            if await self.hedge(q) is None:
                return

    async def absorb(self, q: OrderResult) -> None:
        """A quote's latest state: hedge its new fills at once."""
        self.record(q, True)
        await self.hedge_lag()

    async def passive_taker(self) -> None:
        r = self.req
        rest = self.rest()
        if rest <= 0 or self.taker_used:
            return
        self.taker_used = True
        self.sent(r.passive_taker_id)
        try:
            got = await self.pg.place_market_order(r.symbol, r.passive_side, rest, r.passive_taker_id,
                                                   reduce_only=r.reduce_only, ref_price=self.price or None,
                                                   lookup_first=self.attempt > 1)
        except OrderBelowMinimum:
            self.unresolved.discard(r.passive_taker_id)
            self.out.sent_ids.remove(r.passive_taker_id)
            return
        except VenueError as exc:
            if exc.retryable:
                raise  # the passive venue failed: the retry looks the id up
            self.unresolved.discard(r.passive_taker_id)  # refused (e.g. nothing left to reduce)
            log.warning("maker unit: passive rest %s refused: %s", r.passive_taker_id, exc.type_name)
            return
        self.record(got, True)

    async def close_out(self, *, cap: bool = False) -> None:
        """The passive rest by taker, then the active match for the whole lag."""
        if self.rest() > 0 and not self.taker_used:
            if not cap:
                self.out.fell_back = True
            await self.passive_taker()
        await self.hedge_lag(whole=True)
        if not self.req.reduce_only and round_down(self.lag, self.req.step) > 0:
            # what the active leg cannot match (a hedge filled short, its rest below that venue's
            # minimum): off the passive leg, reduce-only (a chaos trade left it naked 5.6 s)
            log.info("maker unit: %s the active leg cannot match: off the passive leg", self.lag)
            await self.flatten_lag()

    # ---- the unit -------------------------------------------------------------------------
    async def run(self) -> None:
        r = self.req
        end = self.t0 + r.window_s
        every = r.window_s / max(len(r.quote_ids), 1)
        await self.hedge_lag()
        while self.rest() >= r.min_qty:
            if (time.monotonic() >= end or self.next_quote >= len(r.quote_ids)
                    or self.hedges_left() <= HEDGE_RESERVE):
                break
            try:
                q = await self.quote()
            except VenueError as exc:  # below a minimum, refused (margin ...): the rest goes taker
                if exc.retryable:
                    raise
                log.warning("maker unit: quote refused on %s (%s): the rest goes taker", r.passive_venue,
                            exc.type_name)
                break
            if q is None:
                continue
            if await self.watch(q, min(time.monotonic() + every, end), end):
                return  # the cap finished the unit
        await self.close_out()

    async def watch(self, q: OrderResult, requote_at: float, end: float) -> bool:
        """Watch one quote until it fills, the touch moves away after ``requote_at``, or ``end``;
        True when the cap fired and finished the unit."""
        r = self.req
        while True:
            await self.absorb(q)
            if q.is_closed:
                return False
            if self.over_cap():
                self.out.cap_fired = True
                log.warning("maker unit: cap (%s unhedged for %.2f s): lagging leg taker", self.lag,
                            time.monotonic() - (self.lag_since or time.monotonic()))
                await self.absorb(await self.cancel(q))
                if round_down(self.lag, r.step) >= r.min_qty:
                    await self.hedge_lag()
                    return False
                await self.close_out(cap=True)
                return True
            now = time.monotonic()
            if now >= end or self.next_hedge >= len(r.hedge_ids) - HEDGE_RESERVE:
                await self.absorb(await self.cancel(q))
                return False
            if now >= requote_at:
                requote_at = now + r.window_s / max(len(r.quote_ids), 1)
                px, limit = await self.touch_price(), self.quote_px.get(q.client_order_id)
                away = limit is not None and (px > limit if r.passive_side is Side.BUY else px < limit)
                if away and self.next_quote < len(r.quote_ids):
                    await self.absorb(await self.cancel(q))
                    return False
            await asyncio.sleep(POLL_S)
            try:
                q = await self.pg.get_order(r.symbol, q.client_order_id) or q
            except VenueError as exc:
                if not exc.retryable:
                    raise
                log.info("maker unit: reading quote %s: %s", q.client_order_id, exc.type_name)
                continue  # unseen: no refresh of the switch
            if not q.is_closed:
                await self.arm(refresh=True)

    async def flatten(self, why: str) -> None:
        """The active venue cannot trade: stop quoting, flatten the passive leg's unhedged fill."""
        r = self.req
        self.out.active_failed = why
        log.warning("maker unit: active venue %s cannot hedge (%s): flattening the passive fill", r.active_venue, why)
        for cid in r.quote_ids:
            q = self.orders.get(cid)
            if q is not None and not q.is_closed:
                self.record(await self.cancel(q), True)
        if r.reduce_only:
            return  # a close: a reduce-only order cannot undo a reduction (module docstring)
        await self.flatten_lag()

    async def flatten_lag(self) -> None:
        """The passive leg's fill beyond the active leg's, reduce-only by taker (``flatten_ids``)."""
        r = self.req
        while self.next_flatten < len(r.flatten_ids):
            qty = round_down(self.lag, r.step)
            if qty <= 0:
                return
            cid = r.flatten_ids[self.next_flatten]
            self.next_flatten += 1
            self.sent(cid)
            try:
                got = await self.pg.place_market_order(r.symbol, r.passive_side.opposite, qty, cid, reduce_only=True,
                                                       ref_price=self.price or None, wait_window=False)
            except OrderBelowMinimum:
                self.out.sent_ids.remove(cid)
                self.unresolved.discard(cid)
                return
            except VenueError as exc:
                log.warning("maker unit: flatten %s: %s", cid, exc.type_name)
                if not exc.outcome_unknown:
                    self.unresolved.discard(cid)
                    continue
                found = await self.pg.get_order(r.symbol, cid)  # resend only once it is known absent
                if found is None:
                    continue
                got = found
            self.record(got, True)


async def maker_unit(pool: GatewayPool, req: MakerUnitRequest, attempt: int) -> MakerUnitOutcome:
    """Carry one maker unit out (module docstring); raises only when the passive venue fails."""
    u = _Unit(pool, req, attempt)
    if attempt > 1:
        await recover(u)
    try:
        if u.out.active_failed is None and not any(c in u.orders for c in req.flatten_ids):
            await u.run()
        else:
            raise ActiveFailed(u.out.active_failed or "an earlier attempt was flattening the passive fill")
    except ActiveFailed as exc:
        await u.flatten(str(exc))
    out = await finish(u)
    log.info("maker unit %s: passive %s (maker %s), active %s, unhedged at most %.2f s / %s USD%s%s%s",
             req.quote_ids[0] if req.quote_ids else "?", u.passive_in - u.flattened, out.maker_qty, u.active_in,
             out.unhedged_max_s, out.unhedged_max_usd.quantize(Decimal("0.01")), ", cap fired" if out.cap_fired else "",
             ", fell back" if out.fell_back else "", f", active failed: {out.active_failed}" if out.active_failed else "")
    return out
