"""How a trade flattens its venues. It never gives up.

:meth:`Closer.flatten_each` (current): each venue is read and closed **on its own**, in two
concurrent loops, so a venue that is down never holds the other leg open. A loop ends only
when its venue reports the leg flat *and* every order it issued has a final answer (an order
in flight, or one whose outcome was lost, is looked up until the venue answers, so "flat" is
never trusted while an order could still land). Reads and orders that fail are retried with
capped backoff (``close_retry_max_s``); the third failed round alerts ``close_stuck`` once.
When the history grows large the loops stop at their next step and the workflow
continues-as-new, carrying the close (a day-long outage never meets Temporal's history limit).

:meth:`Closer.legacy_close_loop` is the loop of trades started before that (both venues read
together before either is closed); it stays so their histories keep replaying.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from domain.hedge import close_sequence
    from domain.ids import client_order_id
    from domain.rounding import round_down
    from messages.trade import LegName, TradeCarry, TradeParams
    from venues.models import Position, Side
    from workflows.close_step import close_in_step
    from workflows.close_whole import close_whole
    from workflows.trade_orders import (
        OrderDesk,
        error_type,
        is_cancellation,
        sleep_uncancellable,
        wait_uncancellable,
    )
    from workflows.visibility import summary_line

ZERO = Decimal(0)
#: an issued order that no look-up has found after this long (validity window + margins) was
#: never accepted by the venue
UNSEEN_FINAL_MS = 30_000


NAKED_RETRY_S = 0.5
#: patch id: a close whose two quick probes both fail keeps the venues' earlier failure record
PROBE_TIE = "close-probe-tie"
#: v6: a naked leg whose close failed is sent again this many times, this soon, before it backs off
NAKED_QUICK_RETRIES, NAKED_QUICK_S = 3, 0.1
#: v5: at most this many remainder orders follow a partly filled close before the loop reads again
REST_ROUNDS = 8
#: v9: a leg whose opening's outcome is unknown is read this often while that opening may still land
#: (until this long after it was sent: the venue's 5 s validity window and the 2 s opening deadline)
UNKNOWN_OPEN_READ_S, UNKNOWN_OPEN_MS = 0.2, 8_000


def _other(leg: LegName) -> LegName:
    return "short" if leg == "long" else "long"


class Closer:
    def __init__(self, p: TradeParams, c: TradeCarry, desk: OrderDesk, event: Callable[[str], None],
                 alert: Callable[[str, str, str], Awaitable[None]], history_large: Callable[[], bool]) -> None:
        self.p, self.c, self.desk, self.event, self.alert = p, c, desk, event, alert
        self.history_large = history_large
        self.interrupted = False  # set when the loops stopped for a continue-as-new
        self.reachable: dict[str, bool] = {"long": True, "short": True}  # did its last position read answer
        #: lifecycle-v3 (set by the workflow): a hedged pair closes one leg after the other
        #: (``domain.hedge.close_sequence``), so a venue failing mid-close leaves it hedged
        self.v3 = False
        #: lifecycle-v4: in a close about one leg, a leg whose opening order's outcome is unknown
        #: gets a reduce-only close sent right behind it, without waiting for a read (``_chase``)
        self.v4 = False
        #: lifecycle-v7: a leader's close round and its follower's match in one activity (close_step)
        self.v7 = False
        #: lifecycle-v8: a follower whose venue refuses its match as below its step or minimum (the
        #: step grew since the trade opened) waits for its leader to be flat, then closes whole
        self.v8 = False
        #: lifecycle-v9: a whole close and its rests in one activity (``workflows/close_whole.py``)
        self.v9 = False
        self._waiting: set[str] = set()

    @property
    def s(self):
        return self.c.status

    def _now_ms(self) -> int:
        return int(workflow.now().timestamp() * 1000)

    # ------------------------------------------------------------------ current
    async def flatten_each(self, at_once: bool = False) -> bool:
        """Flatten both legs, each venue on its own loop. False when interrupted for a
        continue-as-new. ``at_once``: the close is about one leg itself (both loops close at
        once); otherwise, on v3, a hedged pair closes in the order of ``close_sequence``."""
        self.interrupted = False
        if self.v3:
            if self.c.close_first is None:  # decided once per close; carried across runs
                await self._choose_sequence(at_once)
        elif not self.s.emergency:  # a graceful close first learns whether both venues answer
            # (the loops then read again: saved lifecycle-v2 histories have these reads)
            got = await asyncio.gather(*(self.desk.position(leg.venue) for leg in self.s.legs), return_exceptions=True)
            self.reachable = {name: not isinstance(r, BaseException) for name, r in zip(("long", "short"), got, strict=True)}
        chase = [self._chase(leg) for leg in ("long", "short") if self.v4 and at_once and self._unknown_open(leg)]
        await asyncio.gather(self._flatten("long"), self._flatten("short"), *chase)
        return not self.interrupted

    def _unknown_open(self, leg: LegName) -> bool:
        """Nothing booked on this leg, but its opening order is still pending (no answer in time:
        it may yet execute, late), and it has not been chased yet."""
        st = self.s.leg(leg)
        opening = client_order_id(self.p.trade_id, leg, "o")
        return st.filled_qty == 0 and opening in st.pending and client_order_id(self.p.trade_id, leg, "b1") \
            not in st.client_order_ids

    async def _chase(self, leg: LegName) -> None:
        """A reduce-only close of the full target sent at once, behind an opening order whose
        outcome is unknown: a venue that executes the opening late executes this right after it,
        so the late leg is naked for about the gap between the two sends, not until a read of a
        slow venue comes back. Reduce-only: it closes at most what is there, never opens; the
        venue refuses it when the opening never executed. The close loop still reads until flat."""
        st = self.s.leg(leg)
        self.event(f"close {leg}: its opening's outcome is unknown; a reduce-only close of {self.s.target_qty} "
                   f"follows it on {st.venue} (no read first)")
        try:  # a refusal (nothing there) comes back as its error type and is an event
            await self.desk.place_verified(leg, self.s.target_qty, "b1", reduce_only=True)
        except (asyncio.CancelledError, ActivityError) as exc:
            if not is_cancellation(exc):
                raise
            # a cancel during a close changes nothing: the close loops go on

    async def _choose_sequence(self, at_once: bool) -> None:
        """Which leg goes first. A close about one leg, or a lone leg: both at once, no reads. A
        hedged pair: one quick probe of each venue (one attempt, at most 2 s, so a slow venue
        never holds the close long) adds to what the trade knows of each venue's failures."""
        failed, L, S = self.c.venue_failed_ms, self.s.leg("long"), self.s.leg("short")
        if not at_once and L.filled_qty > 0 and S.filled_qty > 0:
            got = await asyncio.gather(*(self.desk.position(leg.venue, quick=True) for leg in (L, S)),
                                       return_exceptions=True)
            bad = [leg for leg, r in zip((L, S), got, strict=True) if isinstance(r, BaseException)]
            # both probes failing at one instant tells the venues nothing apart (a loaded worker
            # times out the healthy one's probe too): what was known before decides, not the tie
            # (which sent the long leg first even when the short venue was the one down)
            if len(bad) < 2 or not workflow.patched(PROBE_TIE):
                for leg in bad:
                    self.failed(leg.venue)
        self.c.close_first = close_sequence(
            L.filled_qty > 0, S.filled_qty > 0, at_once=at_once,
            long_failed_ms=failed.get(L.venue, 0), short_failed_ms=failed.get(S.venue, 0))
        first = self.c.close_first
        self.event("close: each venue at once" if first == "both" else
                   f"close: {first} on {self.s.leg(first).venue} first, then the other (the pair stays hedged)")

    def failed(self, venue: str) -> None:
        self.c.venue_failed_ms[venue] = self._now_ms()

    def _leader_holds(self, leg: LegName) -> Decimal | None:
        """v3: what the leg that closes first still holds while ``leg`` follows it (None: ``leg``
        leads, both close at once, or the leader is flat). The follower closes down to it."""
        other = _other(leg)
        if self.c.close_first != other:
            return None
        q = self.s.leg(other).filled_qty
        return q if q > 0 else None

    def _nothing_to_match(self, leg: LegName) -> bool:
        """v3 lockstep: a follower waits while it holds no more than the leader; the leader
        waits while the follower has not matched its last fill yet."""
        mine, theirs, unit = self.s.leg(leg).filled_qty, self.s.leg(_other(leg)).filled_qty, self._unit()
        if self.c.close_first == leg:
            return theirs > 0 and theirs - mine >= unit and not self._below_venue_unit(_other(leg), theirs - mine)
        lead = self._leader_holds(leg)
        return lead is not None and (mine - lead < unit or self._below_venue_unit(leg, mine - lead))

    def _below_venue_unit(self, leg: LegName, diff: Decimal) -> bool:
        """v8: ``leg``'s venue has refused a close this small (its step grew since the trade opened);
        ``diff`` > 0, on the trade's step as ``_match_qty`` asks for it."""
        return self.v8 and round_down(diff, self._step()) <= self.c.unmatchable_qty.get(self.s.leg(leg).venue, ZERO)

    def unmatchable(self, leg: LegName, qty: Decimal) -> None:
        """v8: ``leg``'s venue refused to close ``qty`` as below its step or minimum, nothing sent.
        A follower does not ask it for a difference that small again: it waits for its leader to be
        flat and then closes whole (rounded up to the step: reduce-only, the venue closes what is
        held); its leader no longer waits for that match."""
        venue = self.s.leg(leg).venue
        if qty > self.c.unmatchable_qty.get(venue, ZERO):
            self.c.unmatchable_qty[venue] = qty
            self.event(f"close {leg}: {venue} refuses to close {qty} (below its step or minimum, which grew since "
                       f"the trade opened); {leg} follows whole once {_other(leg)} is flat")

    def _step(self) -> Decimal:
        return self.c.market.step if self.c.market else Decimal("0.001")

    def _unit(self) -> Decimal:
        """The smallest difference a follower can close (step and minimum quantity)."""
        return max(self._step(), self.c.market.min_qty if self.c.market else ZERO)

    async def _flatten(self, leg: LegName) -> None:
        st = self.s.leg(leg)
        delay = 0.5
        woke = False  # v5: just released by the other leg's fill (what this leg holds is known)
        quick, again = 0, False  # v6: quick retries of a naked leg since its last fill; one is due now
        while True:
            if self.interrupted or self.history_large():
                self.interrupted = True
                return
            if self.v3 and self._nothing_to_match(leg):
                if leg not in self._waiting:
                    self._waiting.add(leg)
                    self.event(f"close {leg}: in step with {_other(leg)} (one leg after the other)")
                await wait_uncancellable(lambda: self.interrupted or not self._nothing_to_match(leg))
                woke = True
                continue
            st.close_attempts += 1
            self.s.close_attempts += 1
            n, qty = st.close_attempts, None
            try:
                known = self._known_position(leg) if woke and self.desk.v5 else \
                    self._naked_position(leg) if again else None
                woke = again = False
                pos = known or await self.desk.position(st.venue)
                self.reachable[leg] = True
                if self.v3:  # the venue's answer is what this leg holds (a follower matches it)
                    st.filled_qty = abs(pos.qty) if pos is not None else ZERO
                if pos is None and await self._orders_final(leg):
                    st.filled_qty, st.position = ZERO, None
                    return  # this venue is flat and nothing it was sent can still land
                qty = self._match_qty(leg, pos) if self.v3 and pos is not None else None
                filled = pos is not None and not self._wait_for_other(leg) and qty != ZERO and \
                    await self._close(leg, pos, n, qty)
            except ActivityError as exc:
                if self.v8 and qty and error_type(exc) == "OrderBelowMinimum":  # a match below a grown step
                    self.unmatchable(leg, qty)
                    continue  # it waits for its leader now (``_nothing_to_match``)
                self.reachable[leg] = False
                self.failed(st.venue)
                if not is_cancellation(exc):  # a cancel during a close changes nothing: keep closing
                    self.event(f"close {leg} #{n} on {st.venue} failed: {error_type(exc)}; retrying")
                    await self._stuck(exc)
                filled = False
            if filled:
                delay, quick = 0.5, 0  # something filled: verify flat at once
                continue
            if self.desk.v6 and quick < NAKED_QUICK_RETRIES and self._naked_position(leg) is not None:
                quick, again = quick + 1, True  # naked: send again at once, no read first (chaos: 2.4 s here)
                await sleep_uncancellable(NAKED_QUICK_S)
                continue
            if self.v9 and self._opening_may_land(leg):  # read again soon: it may land naked any moment
                await sleep_uncancellable(UNKNOWN_OPEN_READ_S)
                continue
            await sleep_uncancellable(delay)
            # a leg whose partner is already flat is naked: it retries fast, never slower than 0.5 s
            naked = self.v3 and self.s.leg(_other(leg)).filled_qty == 0
            delay = min(delay * 2, NAKED_RETRY_S if naked else self.p.close_retry_max_s)

    async def _close(self, leg: LegName, pos: Position, n: int, qty: Decimal | None) -> bool:
        """Close order ``n`` of this leg; True when something filled. v5: a whole-position close
        that filled only part is followed at once by the rest (reduce-only, ``c<n>r<k>``), without
        a read in between: each round of a thin book costs one order, not an order and a read.
        Not for a leader in step with its follower (the pair stays hedged round by round)."""
        if self.v7 and qty is None and self._in_step(leg):
            return await close_in_step(self, leg, pos, n)
        if self.v9 and not self._in_step(leg):  # a whole close, or a follower's excess, and their rests
            return await close_whole(self.desk, leg, pos, n, qty)
        order = await self.desk.close_leg(leg, pos, f"c{n}", qty)
        filled = order.filled_qty > 0
        rest, k = abs(pos.qty) - order.filled_qty, 0
        while self.desk.v5 and qty is None and not self._in_step(leg) and order.is_closed and order.filled_qty > 0 \
                and rest >= self._unit() and k < REST_ROUNDS and not self.interrupted:
            k += 1
            order = await self.desk.close_leg(leg, pos, f"c{n}r{k}", rest, rest=True)
            rest -= order.filled_qty
        return filled

    def _opening_may_land(self, leg: LegName) -> bool:
        """v9: nothing booked on ``leg``, and its opening, of unknown outcome, was sent less than
        ``UNKNOWN_OPEN_MS`` ago: a venue executing late (its answer dropped, the order invisible until
        then) may execute it any moment, and it is naked from then until this loop's next read."""
        st = self.s.leg(leg)
        sent = st.pending.get(client_order_id(self.p.trade_id, leg, "o"))
        return st.filled_qty == 0 and sent is not None and self._now_ms() - sent < UNKNOWN_OPEN_MS

    def _known_position(self, leg: LegName) -> Position | None:
        """v5: a follower released by its leader's fill closes what it holds without reading its
        venue first (a slow venue costs one round trip, not two), when nothing it was sent is
        still unresolved and its last read said what it holds. Reduce-only: if the venue holds
        less, the order closes less, and the next round reads."""
        return None if self.s.leg(leg).pending else self._held(leg)

    def _naked_position(self, leg: LegName) -> Position | None:
        """v6: what a naked leg (the other leg flat) holds by its last read, for a quick retry
        without a read: a reduce-only close of the whole position under a fresh id can never
        flip it, even if the one before landed after all (then it is refused, and the next
        round reads)."""
        return self._held(leg) if self.v3 and self.s.leg(_other(leg)).filled_qty <= 0 else None

    def _held(self, leg: LegName) -> Position | None:
        """What ``leg`` holds by its own record (its last read and fills) as a position, or None."""
        st = self.s.leg(leg)
        if st.filled_qty <= 0:
            return None
        qty = st.filled_qty if st.side == Side.BUY else -st.filled_qty
        return Position(symbol=self.p.symbol, qty=qty, entry_price=ZERO, unrealized_pnl=ZERO)

    def _in_step(self, leg: LegName) -> bool:
        """A leader with a follower that still holds something: it waits for each match."""
        return self.c.close_first == leg and self.s.leg(_other(leg)).filled_qty > 0

    def _match_qty(self, leg: LegName, pos) -> Decimal | None:
        """How much a follower closes now: down to what the leader still holds, on the step
        (ZERO: less than one closable unit to match yet); None (everything) when ``leg`` is not
        following."""
        lead = self._leader_holds(leg)
        if lead is None:
            return None
        q = round_down(max(ZERO, abs(pos.qty) - lead), self._step())
        return q if q >= self._unit() and not self._below_venue_unit(leg, q) else ZERO

    def _wait_for_other(self, leg: LegName) -> bool:
        """A graceful close of a hedged pair closes a leg only while the other leg's venue
        answers: flattening one side while the other venue is unreachable would leave the other
        leg naked there. An emergency close, or a lone leg, closes at once."""
        if self.v3:
            return False  # the close sequence decides (``_behind_first``)
        other = "short" if leg == "long" else "long"
        wait = not self.s.emergency and not self.reachable[other] and self.s.leg(other).filled_qty > 0
        if wait:
            self.event(f"close {leg}: waiting for {self.s.leg(other).venue} to answer (the pair stays hedged)")
        return wait

    async def _orders_final(self, leg: LegName) -> bool:
        """Look up every order of this leg whose outcome is not final yet; True when none can
        still change the position."""
        st = self.s.leg(leg)
        for cid, sent_ms in list(st.pending.items()):
            found = await self.desk.lookup(st.venue, cid)
            if found is None:
                if self._now_ms() - sent_ms < UNSEEN_FINAL_MS:
                    return False  # it may still arrive: look again
                st.pending.pop(cid, None)
                continue
            if not found.is_closed:
                return False  # still working on the venue: look again
            st.pending.pop(cid, None)
        return True

    async def _stuck(self, exc: BaseException) -> None:
        if self.s.close_attempts >= 3 and not self.c.close_stuck_alerted:
            self.c.close_stuck_alerted = True
            await self.alert("close_stuck", f"{summary_line(self.p)}: close attempt {self.s.close_attempts} failed ({error_type(exc)}); "
                             "still retrying", "critical")

    # ------------------------------------------------------------------ legacy (replay only)
    async def _legacy_stuck(self, attempt: int, alerted: bool, exc: BaseException) -> bool:
        if attempt >= 3 and not alerted:  # one alert per close, from the third failed attempt
            await self.alert("close_stuck", f"{summary_line(self.p)}: close attempt {attempt} failed ({error_type(exc)}); still retrying",
                             "critical")
        return alerted or attempt >= 3

    async def legacy_close_loop(self) -> None:
        delay, alerted, pause = 0.5, False, False
        while True:
            if pause:  # back off after a round without progress, capped: a close never gives up
                await sleep_uncancellable(delay)
                delay = min(delay * 2, self.p.close_retry_max_s)
            pause = True
            self.s.close_attempts += 1
            n = self.s.close_attempts
            try:
                lpos, spos = await asyncio.gather(self.desk.position(self.p.long_venue),
                                                  self.desk.position(self.p.short_venue))
            except ActivityError as exc:
                if is_cancellation(exc):
                    continue
                self.event(f"close #{n}: positions unavailable ({error_type(exc)}); retrying")
                alerted = await self._legacy_stuck(n, alerted, exc)
                continue
            open_legs = [(name, pos) for name, pos in (("long", lpos), ("short", spos)) if pos is not None]
            if not open_legs:
                for leg in self.s.legs:
                    leg.filled_qty, leg.position = ZERO, None
                return
            results = await asyncio.gather(
                *(self.desk.close_leg(name, pos, f"c{n}") for name, pos in open_legs), return_exceptions=True)
            bad = [r for r in results if isinstance(r, BaseException) and not is_cancellation(r)]
            if bad:
                self.event(f"close #{n} failed: {error_type(bad[0])}; retrying")
                alerted = await self._legacy_stuck(n, alerted, bad[0])
            elif any(not isinstance(r, BaseException) and r.filled_qty > 0 for r in results):
                pause, delay = False, 0.5
