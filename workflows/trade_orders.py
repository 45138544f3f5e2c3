"""Order mechanics of one trade, one level below the story in ``workflows/trade.py``.

:class:`OrderDesk` places orders with deterministic client ids, polls them until the venue
says they are done (cancelling what is not done in time), looks ids up when an outcome is
unknown, closes a leg with one reduce-only order, reads positions and funding, and settles
the PnL from the venues' own fills. It is handed the trade's state (``TradeCarry``) and an
event callback; it decides nothing about the lifecycle. Runs inside the workflow: no I/O
except through activities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.trade import TradeActivities
    from domain import risk
    from domain.ids import client_order_id
    from domain.pnl import FillLike, leg_pnl
    from domain.rounding import round_down
    from messages.trade import (
        Alert,
        FillsRequest,
        IncomeRequest,
        LeasePair,
        LeaseRelease,
        LeaseRequest,
        LegName,
        LegState,
        MarketSnapshot,
        OrderLookup,
        PlaceOrderRequest,
        PlaceOutcome,
        PositionsRequest,
        SnapshotRequest,
        TradeCarry,
        TradeParams,
        TradeRecord,
        TradeStatus,
    )
    from venues.models import OrderResult, Position, Side
    from workflows.alerts import AlertWorkflow
    from workflows.lone_leg import book_flattens, chase_step, flatten_steps, opening_v9
    from workflows.options import (
        ALERT_OPTS,
        FRESH_CLOSE_OPTS,
        LEDGER_FINAL_OPTS,
        LEDGER_OPTS,
        OPEN_ORDER_OPTS,
        OPEN_PAIR_OPTS,
        ORDER_OPTS,
        QUICK_READ_OPTS,
        READ_OPTS,
        TOPUP_ORDER_OPTS,
    )

ZERO, A, T = Decimal(0), TradeActivities, TypeVar("T")
#: an opening leg not answered by then counts as failed (its venue is flattened on its own)
OPEN_LEG_DEADLINE_S = 2.0
#: an opening order answered slower than this (v7: any order filled this late) marks its venue as troubled
#: (v3: it closes first)
SLOW_VENUE_MS = 1000


def is_cancellation(exc: BaseException) -> bool:
    """A workflow cancel surfaces as asyncio.CancelledError, or, during an activity, as an
    ActivityError whose cause is a CancelledError."""
    if isinstance(exc, asyncio.CancelledError | CancelledError):
        return True
    return isinstance(exc, ActivityError) and isinstance(exc.cause, CancelledError)


def error_type(exc: BaseException) -> str:
    cause = exc.cause if isinstance(exc, ActivityError) else exc
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError"
    return type(cause).__name__


def refused(exc: BaseException) -> bool:
    """The venue definitively refused the order (a non-retryable error): it is not on the venue."""
    cause = exc.cause if isinstance(exc, ActivityError) else exc
    return isinstance(cause, ApplicationError) and cause.non_retryable


def why(result: OrderResult | str) -> str:
    return result if isinstance(result, str) else f"{result.status}, filled {result.filled_qty}"


async def sleep_uncancellable(seconds: float) -> None:
    try:
        await workflow.sleep(seconds)
    except asyncio.CancelledError:
        pass  # a cancel while closing: the close goes on


async def wait_uncancellable(condition: Callable[[], bool]) -> None:
    try:
        await workflow.wait_condition(condition)
    except asyncio.CancelledError:
        pass  # a cancel while closing: the close goes on


async def uncancellable(aw: Awaitable[T], seen: list[bool] | None = None) -> T:
    """Await ``aw`` to its end whatever a workflow cancel says; the activity behind it is never
    asked to stop. Without ``seen`` the cancel is ignored (v5: bookkeeping after flat); with it,
    each is noted for the caller to act on once ``aw`` is done (v6: both openings' answers)."""
    task = asyncio.ensure_future(aw)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            if seen is not None:
                seen.append(True)


async def record(p: TradeParams, s: TradeStatus, event: str, note: Callable[[str], None],
                 shielded: bool = False) -> None:
    """Write the trade, its orders, fills and funding to the ledger (idempotent activity);
    a failed write is an event, never an obstacle. ``shielded`` (v5, the final record): a
    workflow cancel does not stop the write (before v5 it was cancelled and the record lost)."""
    call = workflow.execute_activity_method(
        LedgerActivities.record_trade, TradeRecord(event=event, status=s, opened_by=p.opened_by),
        summary=f"ledger: {event}", **(LEDGER_OPTS if event == "opened" else LEDGER_FINAL_OPTS))
    try:
        await (uncancellable(call) if shielded else call)
    except ActivityError as exc:
        if is_cancellation(exc):
            return
        note(f"ledger write {event} failed: {error_type(exc)}")


async def notify(s: TradeStatus, kind: str, message: str, severity: str, note: Callable[[str], None]) -> None:
    """Start the alert as an abandoned child workflow (``workflows/alerts.py``) and go on: the
    trade waits for the server to accept the child (milliseconds), never for the webhook."""
    s.alerts_sent += 1
    try:
        await workflow.start_child_workflow(
            AlertWorkflow.run, Alert(kind=kind, trade_id=s.trade_id, message=message, severity=severity),
            id=f"{s.trade_id}-alert-{s.alerts_sent}", parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary=f"{kind}: {message}"[:200])
    except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001 - an alert never stops trading
        note(f"alert {kind} not started: {type(exc).__name__}")


async def alert(trade_id: str, kind: str, message: str, severity: str, note: Callable[[str], None]) -> None:
    """Trades started before alerts had their own path awaited the delivery (replay only)."""
    try:
        await workflow.execute_activity_method(
            TradeActivities.send_alert, Alert(kind=kind, trade_id=trade_id, message=message, severity=severity),
            summary=f"alert {kind}", **ALERT_OPTS)
    except ActivityError as exc:
        if is_cancellation(exc):
            return
        note(f"alert {kind} not delivered: {error_type(exc)}")


class OrderDesk:
    def __init__(self, p: TradeParams, c: TradeCarry, event: Callable[[str], None]) -> None:
        self.p = p
        self.c = c
        self.event = event
        #: trades on ``lifecycle-v2`` (set by the workflow): an opening leg not answered in time or
        #: with an unknown outcome counts as failed instead of being placed again while the other
        #: leg waits unhedged; top-ups are short and stop on a close request
        self.v2 = False
        self.v3 = False  # lifecycle-v3: no top-ups (trim at once); partial fills mark the venue as troubled
        self.v4 = False  # lifecycle-v4: a whole-position close is resent under a fresh id, no window wait
        self.v5 = False  # lifecycle-v5: the bookkeeping after flat (leases, final record) ignores a cancel
        self.v6 = self.v7 = False  # v6: ``place_orders`` flattens a lone filled leg itself (lone_leg.py); v7: close_step
        self.v9 = False  # lifecycle-v9: whole closes rest in one activity, a lone flatten rests until flat, a cancel waits for a trim

    @property
    def s(self):  # the trade's status (part of the carry)
        return self.c.status

    def _now_ms(self) -> int:
        return int(workflow.now().timestamp() * 1000)

    # ------------------------------------------------------------------ placing
    def request(self, leg: LegName, qty: Decimal, step: str, *, reduce_only: bool,
                lookup_first: bool = False) -> PlaceOrderRequest:
        state = self.s.leg(leg)
        side = state.side if not reduce_only else Side(state.side).opposite
        marks = self.c.market.marks if self.c.market else {}
        return PlaceOrderRequest(
            venue=state.venue, symbol=self.p.symbol, side=side, qty=qty, client_order_id=self._issue(leg, step),
            reduce_only=reduce_only, ref_price=marks.get(state.venue), lookup_first=lookup_first,
        )

    def _issue(self, leg: LegName, step: str) -> str:
        """The deterministic client id of this leg's step, recorded as issued and pending."""
        state = self.s.leg(leg)
        cid = client_order_id(self.p.trade_id, leg, step)
        if cid not in state.client_order_ids:
            state.client_order_ids.append(cid)
        state.pending.setdefault(cid, self._now_ms())
        return cid

    async def open_both(self, qty: Decimal, step: str = "o") -> tuple[OrderResult | str, OrderResult | str]:
        """Both opening orders go out together from ONE activity (one task pick-up, so the two
        arrive at their venues within milliseconds of each other). A leg whose outcome stayed
        unknown falls back to its own retried placement, which looks the id up first."""
        reqs = [self.request(leg, qty, step, reduce_only=False) for leg in ("long", "short")]  # a slice: s<n>
        if self.v2:  # one slow venue must not keep the other leg waiting unhedged
            reqs = [r.model_copy(update={"deadline_s": OPEN_LEG_DEADLINE_S}) for r in reqs]
        if self.v6:  # a lone filled leg is flattened by the activity itself, under these ids
            reqs = [r.model_copy(update={
                "flatten_client_order_id": client_order_id(self.p.trade_id, leg, flatten_steps(step, self.v9)[0]),
                "flatten_rest_ids": [client_order_id(self.p.trade_id, leg, st) for st in flatten_steps(step, self.v9)[1:]],
                "chase_client_order_id": client_order_id(self.p.trade_id, leg, chase_step(step))} | (
                    opening_v9(self.p.trade_id, leg, step) if self.v9 else {}))
                for leg, r in zip(("long", "short"), reqs, strict=True)]
        call = workflow.execute_activity_method(
            A.place_orders, reqs,
            summary=f"open both legs: {qty} {self.p.symbol} on {self.p.long_venue} / {self.p.short_venue}",
            **(OPEN_PAIR_OPTS if self.v6 else OPEN_ORDER_OPTS),
        )
        cancel_seen: list[bool] = []
        try:  # v6: a cancel waits for both legs' answers (a lone leg's flatten is in them)
            outcomes = await (uncancellable(call, cancel_seen) if self.v6 else call)
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            outcomes = [PlaceOutcome(error_type=error_type(exc), retryable=True) for _ in reqs]
            if self.v6:  # an attempt may have sent flattens before it died: the close looks them up
                outcomes = [o.model_copy(update={"flatten_sent": [
                    client_order_id(self.p.trade_id, leg, st) for st in flatten_steps(step, self.v9)]})
                    for leg, o in zip(("long", "short"), outcomes, strict=True)]

        async def finish(leg: LegName, out: PlaceOutcome) -> OrderResult | str:
            if self.v3 and (out.order is None or (out.elapsed_ms or 0) > SLOW_VENUE_MS):
                self.c.venue_failed_ms[self.s.leg(leg).venue] = self._now_ms()  # troubled: it closes first
            if out.cancelled:
                self.event(f"{leg} opening accepted but not executed while the other leg had filled: cancelled "
                           f"({out.order.filled_qty if out.order else 0} executed)")
            if out.order is not None:
                opened = await self.settle(leg, out.order, opening=True)
                await book_flattens(self, leg, out, step)
                return opened
            await book_flattens(self, leg, out, step)
            if out.retryable and not self.v2:
                self.event(f"{leg} open: {out.error_type}; retrying on its own (looks the id up first)")
                return await self.place_verified(leg, qty, "o", reduce_only=False, lookup_first=True)
            if out.retryable:  # outcome unknown: not sent again; the close looks it up and flattens it
                self.event(f"{leg} open: {out.error_type}, outcome unknown; treated as failed")
                return f"{out.error_type} (outcome unknown)"
            self.event(f"{leg} open refused: {out.error_type} {out.error or ''}".rstrip())
            self.s.leg(leg).pending.pop(reqs[0 if leg == "long" else 1].client_order_id, None)  # refused: never on the venue
            return out.error_type or "refused"

        long_res, short_res = await asyncio.gather(
            *(finish(leg, out) for leg, out in zip(("long", "short"), outcomes, strict=True))
        )
        if cancel_seen:  # booked what both legs did; now the cancel closes whatever is open
            self.event("cancel requested while both legs were being placed: taken once their answers were in")
            raise asyncio.CancelledError()
        return long_res, short_res

    async def place_verified(self, leg: LegName, qty: Decimal, step: str, *, reduce_only: bool,
                             lookup_first: bool = False) -> OrderResult | str:
        """Place one market order and wait until the venue reports it done. Returns the final
        order, or the error type that prevented it. Updates the leg's fills."""
        req = self.request(leg, qty, step, reduce_only=reduce_only, lookup_first=lookup_first)
        opts = ORDER_OPTS if reduce_only else TOPUP_ORDER_OPTS if self.v2 else OPEN_ORDER_OPTS
        try:
            order = await self._send(leg, req, f"{req.side} {qty} {self.p.symbol} on {req.venue}"
                                     f"{' reduce-only' if reduce_only else ''}", opts)
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            self.event(f"{leg} {step} not placed: {error_type(exc)}")
            return error_type(exc)
        return await self.settle(leg, order, opening=not reduce_only)

    async def _send(self, leg: LegName, req: PlaceOrderRequest, summary: str, opts: dict) -> OrderResult:
        """Place one order. On an error the outcome may be unknown (timeouts): ask the venue what
        happened to this id; re-raise when it has no such order (a definitive refusal also
        clears the id from the leg's pending orders)."""
        try:
            return await workflow.execute_activity_method(A.place_order, req, summary=summary, **opts)
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            order = await self.lookup(req.venue, req.client_order_id)
            if order is None:
                if refused(exc):
                    self.s.leg(leg).pending.pop(req.client_order_id, None)
                raise
            return order

    async def settle(self, leg: LegName, order: OrderResult, *, opening: bool) -> OrderResult:
        """Wait until ``order`` is done, then book its fill on the leg."""
        order = await self.await_done(order)
        if order.is_closed:
            self.s.leg(leg).pending.pop(order.client_order_id, None)
        if self.s.leg(leg).apply_fill(order, opening):
            self.event(f"{leg} {order.side} {order.filled_qty} @ {order.avg_price} "
                       f"({order.client_order_id}, {order.status})")
        if opening and order.filled_qty > 0:
            self.c.filled_ms.setdefault(leg, self._now_ms())
        if self.v3 and order.is_closed and (order.filled_qty < order.requested_qty or self.v7 and  # short or late
                                            order.executed_late(SLOW_VENUE_MS)):  # (v7): its venue closes first
            self.c.venue_failed_ms[order.venue] = self._now_ms()
        return order

    async def reduce_both(self, step: Decimal, min_qty: Decimal, why: str) -> Decimal | None:
        """Halve both legs with reduce-only orders (the same quantity on both, on the common
        step); the quantity, or None when half would be below the minimum."""
        L, S = self.s.leg("long"), self.s.leg("short")
        half = round_down(min(L.filled_qty, S.filled_qty) / 2, step)
        if half < min_qty or half == 0:
            return None
        self.s.reductions += 1
        n = self.s.reductions  # kept in the status: the event log is truncated
        self.event(f"reducing both legs by {half}: {why}")
        await asyncio.gather(
            self.place_verified("long", half, f"r{n}", reduce_only=True),
            self.place_verified("short", half, f"r{n}", reduce_only=True),
        )
        return half

    async def acquire_leases(self) -> risk.Refusal | None:
        """Take the (venue, symbol) lease of both legs in the ledger, all or none, before any
        order; refused while another trade holds one, and when the ledger cannot be reached."""
        pairs = [LeasePair(venue=v, symbol=self.p.symbol) for v in (self.p.long_venue, self.p.short_venue)]
        try:
            got = await workflow.execute_activity_method(
                LedgerActivities.acquire_leases, LeaseRequest(trade_id=self.p.trade_id, pairs=pairs),
                summary="lease both legs", **LEDGER_OPTS)
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            return risk.Refusal(risk.LEASE_UNAVAILABLE, f"ledger: {error_type(exc)}")
        if not got.acquired:
            return risk.Refusal(risk.LEASE_HELD, ", ".join(f"{k} held by {v}" for k, v in got.held_by.items()))
        self.c.lease = True
        return None

    async def release_leases(self) -> None:
        """Drop the leases once both venues are flat (retried until it lands)."""
        if self.c.lease:
            call = workflow.execute_activity_method(
                LedgerActivities.release_leases, LeaseRelease(trade_id=self.p.trade_id),
                summary="release leases", **LEDGER_FINAL_OPTS)
            await (uncancellable(call) if self.v5 else call)
            self.c.lease = False

    async def _each_leg(self, call: Callable[[LegState], Awaitable[T]], failed: str) -> list[T] | None:
        """One activity per leg, concurrently; None (and the event ``failed``) when either fails."""
        try:
            return list(await asyncio.gather(*(call(leg) for leg in self.s.legs)))
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            self.event(f"{failed} ({error_type(exc)})")
            return None

    async def positions_both(self) -> tuple[Decimal, Decimal] | None:
        """Both venues' signed positions in this symbol, or None when either cannot be read."""
        got = await self._each_leg(lambda leg: self.position(leg.venue), "positions unreadable")
        return None if got is None else (got[0].qty if got[0] else ZERO, got[1].qty if got[1] else ZERO)

    async def lookup(self, venue: str, cid: str) -> OrderResult | None:
        try:
            return await workflow.execute_activity_method(
                A.get_order, OrderLookup(venue=venue, symbol=self.p.symbol, client_order_id=cid),
                summary=f"look up {cid}", **READ_OPTS,
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            return None

    async def await_done(self, order: OrderResult) -> OrderResult:
        deadline = workflow.time() + self.p.verify_timeout_s
        while not order.is_closed and workflow.time() < deadline:
            await workflow.sleep(self.p.verify_poll_s)
            found = await self.lookup(order.venue, order.client_order_id)
            order = found or order
        if not order.is_closed:
            self.event(f"{order.client_order_id} not done after {self.p.verify_timeout_s}s: cancelling")
            try:
                cancelled = await workflow.execute_activity_method(
                    A.cancel_order,
                    OrderLookup(venue=order.venue, symbol=order.symbol, client_order_id=order.client_order_id),
                    **READ_OPTS,
                )
                order = cancelled or order
            except ActivityError as exc:
                if is_cancellation(exc):
                    raise
        return order

    async def close_leg(self, leg: LegName, pos: Position, step: str, qty: Decimal | None = None,
                        *, rest: bool = False) -> OrderResult:
        """One reduce-only market order for the whole position (or ``qty`` of it), settled.
        ``rest``: ``qty`` is what a partly filled whole-position close left (v5): like the whole
        position, it is everything there is to close, so it is sent as one (no window wait)."""
        st = self.s.leg(leg)
        side = Side.SELL if pos.qty > 0 else Side.BUY
        qty = min(qty, abs(pos.qty)) if qty is not None else abs(pos.qty)  # what the venue holds
        # two of these can never flip the position (reduce-only, nothing beyond flat): no window wait
        whole = self.v4 and (qty == abs(pos.qty) or rest)
        req = PlaceOrderRequest(venue=st.venue, symbol=self.p.symbol, side=side, qty=qty,
                                client_order_id=self._issue(leg, step), reduce_only=True, resend_fresh=whole)
        order = await self._send(leg, req, f"close {leg}: {side} {qty} on {st.venue}",
                                 FRESH_CLOSE_OPTS if whole else ORDER_OPTS)
        return await self.settle(leg, order, opening=False)

    # ------------------------------------------------------------------ reads
    async def position(self, venue: str, *, quick: bool = False) -> Position | None:
        """This venue's position in the symbol; ``quick``: one attempt of at most 2 s (a probe)."""
        got = await workflow.execute_activity_method(
            A.get_positions, PositionsRequest(venue=venue, symbols=[self.p.symbol]),
            summary=f"positions {venue}", **(QUICK_READ_OPTS if quick else READ_OPTS),
        )
        return next((x for x in got if x.symbol == self.p.symbol and x.qty != 0), None)

    async def snapshot(self, venue: str) -> MarketSnapshot:
        return await workflow.execute_activity_method(
            A.market_snapshot, SnapshotRequest(venue=venue, symbol=self.p.symbol),
            summary=f"funding {venue}", **READ_OPTS,
        )

    async def refresh_funding(self) -> None:
        since = self.s.open_ms or 0
        got = await self._each_leg(lambda leg: workflow.execute_activity_method(
            A.funding_income, IncomeRequest(venue=leg.venue, symbol=self.p.symbol, since_ms=since),
            summary=f"funding income {leg.venue}", **READ_OPTS), "funding income read failed")
        if got is None:
            return
        for leg, pays in zip(self.s.legs, got, strict=True):
            leg.funding = sum((x.amount for x in pays), ZERO)
        self.s.funding_collected_usd = sum((self._usd(leg.venue, leg.funding) for leg in self.s.legs), ZERO)

    def _usd(self, venue: str, amount: Decimal) -> Decimal:
        """A venue's amount (its settlement currency) in USD; legs keep the venue's own figures."""
        rate = self.p.usd_rate(venue)
        return amount if rate == 1 else amount * rate

    async def settle_pnl(self) -> None:
        """Realised PnL per leg from the venue's own fills and funding income."""
        since = (self.s.open_ms or 0) - 1000
        for leg in self.s.legs:
            # orders whose outcome we never learnt: ask the venue once more by client id
            if len(leg.venue_order_ids) < len(leg.client_order_ids):
                for cid in leg.client_order_ids:
                    found = await self.lookup(leg.venue, cid)
                    if found and found.venue_order_id not in leg.venue_order_ids:
                        leg.venue_order_ids.append(found.venue_order_id)
        fills = await self._each_leg(lambda leg: workflow.execute_activity_method(
            A.order_fills, FillsRequest(venue=leg.venue, symbol=self.p.symbol, since_ms=since,
                                        order_ids=leg.venue_order_ids),
            summary=f"fills {leg.venue}", **READ_OPTS), "PnL not settled: fills unavailable")
        if fills is None:
            return
        await self.refresh_funding()
        total = fees = ZERO
        for leg, leg_fills in zip(self.s.legs, fills, strict=True):
            pnl = leg_pnl([FillLike(str(f.side), f.qty, f.price, f.fee) for f in leg_fills], [leg.funding])
            leg.fees, leg.price_pnl, leg.realized_pnl = pnl.fees, pnl.price_pnl, pnl.total
            total += self._usd(leg.venue, pnl.total)
            fees += self._usd(leg.venue, pnl.fees)
        self.s.fees_usd = fees
        self.s.realized_pnl_usd = total
