"""TradeWorkflow: one cross-venue funding arbitrage, open → verify → hedge check → hold → close.

Read top to bottom, this file is the answer to "what happens when one leg fails":

* Both legs are placed in parallel with deterministic client order ids; every placement is an
  idempotent activity (the gateway looks the id up before it ever sends twice).
* Verify: each order is polled by client id until the venue says it is done, or the verify
  timeout passes (then it is cancelled and what filled is kept).
* One leg with nothing filled → the other is flattened at once, the orphan exposure time is
  recorded, the trade ends ``aborted``.
* Partial fills → the lagging leg is topped up with new deterministic ids (up to
  ``topup_attempts``), then the longer leg is trimmed to match.
* Hedge check: ``|long − short| / target ≤ max_gap`` or both legs are closed.
* Hold: every ``monitor_interval_s`` the positions on both venues are compared with what the
  trade holds (a leg changed behind our back → emergency close), liquidation distance (reduce,
  then close), the funding spread (exit after ``exit_checks`` low readings), the maximum hold
  time, and the funding payments. The run continues-as-new before its history grows large.
* Close: reduce-only market orders sized from the venue's *actual* positions, repeated until
  both venues are flat. A close never gives up: a venue that is down is retried with capped
  backoff while the trade shows ``closing``/``emergency_closing``, and an alert fires.
* Cancel (Web UI, ``temporal workflow cancel``) runs the close and ends Canceled.

Workflows decide; activities do I/O; the arithmetic is in ``domain``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from domain.hedge import LegMarket, hedge_gap, liquidation_distance, size_pair, spread_bps_per_8h
    from domain.ids import client_order_id
    from domain.pnl import FillLike, leg_pnl
    from domain.rounding import common_step, round_down
    from venues.errors import NON_RETRYABLE_TYPE_NAMES
    from venues.models import Fill, FundingPayment, OrderResult, Position, Side
    from workflows.models import (
        Alert,
        CloseRequest,
        FillsRequest,
        HoldParams,
        HoldParamsPatch,
        IncomeRequest,
        LegName,
        LegState,
        MarketSnapshot,
        OrderLookup,
        PlaceOrderRequest,
        PlaceOutcome,
        PositionsRequest,
        SnapshotRequest,
        TradeCarry,
        TradeEvent,
        TradeParams,
        TradeRecord,
        TradeStateName,
        TradeStatus,
        VenueCheck,
        VenueCheckRequest,
    )

ZERO = Decimal(0)
SA_STATE = SearchAttributeKey.for_keyword("TradeState")
SA_SYMBOL = SearchAttributeKey.for_keyword("Symbol")
SA_LONG = SearchAttributeKey.for_keyword("LongVenue")
SA_SHORT = SearchAttributeKey.for_keyword("ShortVenue")
MAX_EVENTS = 50

# Order placement: bounded — a stale open order is worse than none.
ORDER_OPTS: dict[str, Any] = dict(
    # the gateway may spend up to ~17 s resolving an unknown outcome (timeout + lookups)
    start_to_close_timeout=timedelta(seconds=30),
    schedule_to_close_timeout=timedelta(seconds=120),
    heartbeat_timeout=timedelta(seconds=5),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=5),
        non_retryable_error_types=NON_RETRYABLE_TYPE_NAMES,
    ),
)
# Opening orders: shorter bound, so that a venue that stays down leaves the other leg
# unhedged for at most this long before it is flattened.
OPEN_ORDER_OPTS: dict[str, Any] = ORDER_OPTS | dict(schedule_to_close_timeout=timedelta(seconds=45))
# Reads: a few quick retries; the workflow decides what a failed read means.
READ_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=15),
    heartbeat_timeout=timedelta(seconds=5),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=3),
        maximum_attempts=5,
        non_retryable_error_types=NON_RETRYABLE_TYPE_NAMES,
    ),
)
ALERT_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=20),
)
# Ledger writes. The "opened" record gets a few attempts, then an event (it must not hold the
# hold phase back, and the final record rewrites everything). The final record (closed,
# aborted) is retried until it lands: the venues are already flat, and nothing may be lost.
LEDGER_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10),
                             maximum_attempts=3),
)
LEDGER_FINAL_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60)),
)


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


class _Abort(Exception):
    """Ends the open phase with a coded reason (no exposure left behind)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@workflow.defn(name="TradeWorkflow")
class TradeWorkflow:
    @workflow.init
    def __init__(self, params: TradeParams, carry: TradeCarry | None = None) -> None:
        self.p = params
        if carry is not None:
            self.s = carry.status
            self.s.runs += 1
            self._low_spread = carry.low_spread_checks
            self._hold_started_ms = carry.hold_started_ms
            self._close_req = carry.close_requested
            self._emergency_req = carry.emergency_requested
        else:
            self.s = TradeStatus(
                trade_id=params.trade_id,
                state="opening",
                symbol=params.symbol,
                long_venue=params.long_venue,
                short_venue=params.short_venue,
                notional_usd=params.notional_usd,
                legs=[
                    LegState(venue=params.long_venue, side=Side.BUY),
                    LegState(venue=params.short_venue, side=Side.SELL),
                ],
                hold=params.hold,
            )
            self._low_spread = 0
            self._hold_started_ms = 0
            self._close_req = None
            self._emergency_req = None
        self._step = Decimal("0.001")
        self._min_qty = ZERO
        self._next_funding_ms = 0
        self._monitor_failures = 0
        self._filled_ms: dict[str, int] = {}
        self._marks: dict[str, Decimal] = {}

    # ------------------------------------------------------------------ handlers
    @workflow.query(name="status")
    def status(self) -> TradeStatus:
        return self.s

    @workflow.signal(name="close")
    def close(self, req: CloseRequest) -> None:
        self._close_req = req.reason or "requested"
        self._event(f"close requested: {self._close_req}")

    @workflow.signal(name="emergency_close")
    def emergency_close(self, req: CloseRequest) -> None:
        self._emergency_req = req.reason or "requested"
        self._event(f"emergency close requested: {self._emergency_req}")

    @workflow.update(name="update_hold")
    def update_hold(self, patch: HoldParamsPatch) -> HoldParams:
        self.s.hold = self._patched(patch)
        self._event(f"hold parameters updated: {patch.model_dump(exclude_none=True)}")
        return self.s.hold

    @update_hold.validator
    def _validate_hold(self, patch: HoldParamsPatch) -> None:
        if self.s.state in ("closed", "aborted"):
            raise ValueError(f"trade is {self.s.state}; hold parameters can no longer change")
        self._patched(patch)  # raises a pydantic ValidationError naming the field

    def _patched(self, patch: HoldParamsPatch) -> HoldParams:
        merged = self.s.hold.model_dump() | patch.model_dump(exclude_none=True)
        return HoldParams.model_validate(merged)

    # ------------------------------------------------------------------ main
    @workflow.run
    async def run(self, params: TradeParams, carry: TradeCarry | None = None) -> TradeStatus:
        self._upsert_all()
        try:
            if carry is None or self.s.state in ("opening", "verifying", "hedge_check"):
                hedged = await self._open()
                if not hedged:
                    return self.s
                await self._alert("trade_opened", f"{self._summary()} hedged, qty {self.s.target_qty}")
                await self._record("opened")
            if self.s.state in ("closing", "emergency_closing"):
                await self._close(self.s.state == "emergency_closing", self.s.close_reason or "resumed")
            else:
                emergency, reason = await self._hold()
                await self._close(emergency, reason)
            await self._finish("closed")
            return self.s
        except BaseException as exc:
            if isinstance(exc, workflow.ContinueAsNewError):
                raise
            if is_cancellation(exc):
                self._event("cancel received: closing both legs")
                await self._close(False, "cancelled")
                await self._finish("closed")
                raise
            # anything else: never leave a leg behind
            self._event(f"unexpected error {error_type(exc)}: {exc}; emergency close")
            await self._alert("emergency_close", f"{self._summary()}: unexpected error {exc}", "critical")
            await self._close(True, f"error: {error_type(exc)}")
            await self._finish("closed")
            raise ApplicationError(f"trade failed and was flattened: {exc}", non_retryable=True) from exc

    # ------------------------------------------------------------------ open
    async def _open(self) -> bool:
        p = self.p
        self._set_state("opening")
        try:
            long_chk, short_chk = await self._pre_trade_checks()
        except _Abort as ab:
            await self._abort(ab.reason, str(ab))
            return False

        self._marks = {c.venue: c.mark_price for c in (long_chk, short_chk) if c.mark_price}
        lm, sm = long_chk.market, short_chk.market
        assert lm is not None and sm is not None
        self._step = common_step(lm.qty_step, sm.qty_step)
        self._min_qty = max(lm.min_qty, sm.min_qty)
        sizing = size_pair(
            p.notional_usd,
            LegMarket(lm.qty_step, lm.min_qty, lm.min_notional, long_chk.mark_price or ZERO),
            LegMarket(sm.qty_step, sm.min_qty, sm.min_notional, short_chk.mark_price or ZERO),
        )
        if sizing.reason:
            await self._abort(sizing.reason, sizing.detail)
            return False
        self.s.target_qty = sizing.qty

        self.s.open_ms = self._now_ms()
        self.s.opened_at = workflow.now().isoformat()
        self._event(f"placing both legs: {sizing.qty} {p.symbol}")
        self._set_state("verifying")
        long_res, short_res = await self._open_both(sizing.qty)
        L, S = self.s.leg("long"), self.s.leg("short")

        if L.filled_qty == 0 or S.filled_qty == 0:
            failed = [n for n, r in (("long", long_res), ("short", short_res)) if self.s.leg(n).filled_qty == 0]
            why = "; ".join(f"{n}: {self._why(r)}" for n, r in (("long", long_res), ("short", short_res)) if n in failed)
            self._event(f"leg failed ({why}); flattening the other")
            await self._close(True, f"LEG_FAILED {why}")
            # from the moment the lone leg's fill was known to the moment both venues were flat
            self.s.orphan_exposure_ms = (
                self._now_ms() - min(self._filled_ms.values()) if self._filled_ms else 0
            )
            await self._abort("LEG_FAILED", why)
            return False

        await self._equalise()

        self._set_state("hedge_check")
        gap = hedge_gap(L.filled_qty, S.filled_qty, self.s.target_qty)
        self.s.hedge_gap = gap
        if gap > self.s.hold.max_gap:
            self._event(f"hedge gap {gap:.4f} above {self.s.hold.max_gap}; closing both")
            await self._close(True, "HEDGE_GAP")
            await self._abort("HEDGE_GAP", f"gap {gap:.4f} > max {self.s.hold.max_gap}")
            return False
        self.s.hedged_at = workflow.now().isoformat()
        return True

    async def _pre_trade_checks(self) -> tuple[VenueCheck, VenueCheck]:
        p = self.p
        try:
            long_chk, short_chk = await asyncio.gather(
                *(
                    workflow.execute_activity(
                        "check_venue",
                        VenueCheckRequest(venue=v, symbol=p.symbol, leverage=p.leverage),
                        result_type=VenueCheck,
                        summary=f"pre-trade check {v}, leverage {p.leverage}x",
                        **READ_OPTS,
                    )
                    for v in (p.long_venue, p.short_venue)
                )
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            raise _Abort("VENUE_UNREACHABLE", f"{error_type(exc)}: {exc.cause or exc}") from None
        if p.notional_usd > p.max_order_notional_usd:
            raise _Abort("NOTIONAL_LIMIT", f"{p.notional_usd} > max per order {p.max_order_notional_usd}")
        for chk in (long_chk, short_chk):
            if chk.error:
                raise _Abort("BAD_SYMBOL", f"{chk.venue}: {chk.error}")
            if not chk.one_way:
                raise _Abort("NOT_ONE_WAY_MODE", f"{chk.venue} is in hedge (dual-side) position mode")
            if chk.position_qty != 0:
                raise _Abort(
                    "POSITION_EXISTS",
                    f"{chk.venue} already holds {chk.position_qty} {p.symbol}; one trade per symbol and venue",
                )
            need = p.notional_usd / p.leverage * p.margin_buffer
            if chk.free_margin < need:
                raise _Abort("INSUFFICIENT_MARGIN", f"{chk.venue} free {chk.free_margin} < needed {need:.2f}")
            if not chk.mark_price:
                raise _Abort("NO_PRICE", f"{chk.venue} has no mark price for {p.symbol}")
        return long_chk, short_chk

    async def _equalise(self) -> None:
        """Top up the lagging leg, then trim the longer one, until both hold the same qty."""
        L, S = self.s.leg("long"), self.s.leg("short")
        for attempt in range(1, self.p.topup_attempts + 1):
            diff = round_down(abs(L.filled_qty - S.filled_qty), self._step)
            if diff == 0 or diff < self._min_qty:
                break
            lagging: LegName = "long" if L.filled_qty < S.filled_qty else "short"
            self._event(f"partial fill: topping up {lagging} by {diff} (attempt {attempt})")
            await self._place_verified(lagging, diff, f"t{attempt}", reduce_only=False)
        diff = round_down(abs(L.filled_qty - S.filled_qty), self._step)
        if diff > 0:
            longer: LegName = "long" if L.filled_qty > S.filled_qty else "short"
            self._event(f"trimming {longer} by {diff} to match")
            await self._place_verified(longer, diff, "m1", reduce_only=True)

    # ------------------------------------------------------------------ orders
    def _order_request(
        self, leg: LegName, qty: Decimal, step: str, *, reduce_only: bool, lookup_first: bool = False
    ) -> PlaceOrderRequest:
        state = self.s.leg(leg)
        side = state.side if not reduce_only else (Side.SELL if state.side == Side.BUY else Side.BUY)
        cid = client_order_id(self.p.trade_id, leg, step)
        if cid not in state.client_order_ids:
            state.client_order_ids.append(cid)
        return PlaceOrderRequest(
            venue=state.venue, symbol=self.p.symbol, side=side, qty=qty, client_order_id=cid,
            reduce_only=reduce_only, ref_price=self._marks.get(state.venue), lookup_first=lookup_first,
        )

    async def _open_both(self, qty: Decimal) -> tuple[OrderResult | str, OrderResult | str]:
        """Both opening orders go out together from ONE activity (one task pick-up, so the two
        arrive at their venues within milliseconds of each other). A leg whose outcome stayed
        unknown falls back to its own retried placement, which looks the id up first."""
        reqs = [self._order_request(leg, qty, "o", reduce_only=False) for leg in ("long", "short")]
        try:
            outcomes = await workflow.execute_activity(
                "place_orders",
                reqs,
                result_type=list[PlaceOutcome],
                summary=f"open both legs: {qty} {self.p.symbol} on {self.p.long_venue} / {self.p.short_venue}",
                **OPEN_ORDER_OPTS,
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            outcomes = [PlaceOutcome(error_type=error_type(exc), retryable=True) for _ in reqs]

        async def finish(leg: LegName, req: PlaceOrderRequest, out: PlaceOutcome) -> OrderResult | str:
            if out.order is not None:
                return await self._settle_order(leg, out.order, opening=True)
            if out.retryable:
                self._event(f"{leg} open: {out.error_type}; retrying on its own (looks the id up first)")
                return await self._place_verified(leg, qty, "o", reduce_only=False, lookup_first=True)
            self._event(f"{leg} open refused: {out.error_type} {out.error or ''}".rstrip())
            return out.error_type or "refused"

        long_res, short_res = await asyncio.gather(
            *(finish(leg, req, out) for leg, req, out in zip(("long", "short"), reqs, outcomes, strict=True))
        )
        return long_res, short_res

    async def _place_verified(
        self, leg: LegName, qty: Decimal, step: str, *, reduce_only: bool, lookup_first: bool = False
    ) -> OrderResult | str:
        """Place one market order and wait until the venue reports it done. Returns the final
        order, or the error type that prevented it. Updates the leg's fills."""
        req = self._order_request(leg, qty, step, reduce_only=reduce_only, lookup_first=lookup_first)
        try:
            order = await workflow.execute_activity(
                "place_order",
                req,
                result_type=OrderResult,
                summary=f"{req.side} {qty} {self.p.symbol} on {req.venue}{' reduce-only' if reduce_only else ''}",
                **(ORDER_OPTS if reduce_only else OPEN_ORDER_OPTS),
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            # the outcome may be unknown (timeouts): ask the venue what happened to this id
            order = await self._lookup(req.venue, req.client_order_id)
            if order is None:
                self._event(f"{leg} {step} not placed: {error_type(exc)}")
                return error_type(exc)
        return await self._settle_order(leg, order, opening=not reduce_only)

    async def _settle_order(self, leg: LegName, order: OrderResult, *, opening: bool) -> OrderResult:
        order = await self._await_done(order)
        self._apply_fill(leg, order, opening)
        if opening and order.filled_qty > 0:
            self._filled_ms.setdefault(leg, self._now_ms())
        return order

    async def _lookup(self, venue: str, cid: str) -> OrderResult | None:
        try:
            return await workflow.execute_activity(
                "get_order",
                OrderLookup(venue=venue, symbol=self.p.symbol, client_order_id=cid),
                result_type=OrderResult | None,
                summary=f"look up {cid}",
                **READ_OPTS,
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            return None

    async def _await_done(self, order: OrderResult) -> OrderResult:
        deadline = workflow.time() + self.p.verify_timeout_s
        while not order.is_closed and workflow.time() < deadline:
            await workflow.sleep(self.p.verify_poll_s)
            found = await self._lookup(order.venue, order.client_order_id)
            order = found or order
        if not order.is_closed:
            self._event(f"{order.client_order_id} not done after {self.p.verify_timeout_s}s: cancelling")
            try:
                cancelled = await workflow.execute_activity(
                    "cancel_order",
                    OrderLookup(venue=order.venue, symbol=order.symbol, client_order_id=order.client_order_id),
                    result_type=OrderResult | None,
                    **READ_OPTS,
                )
                order = cancelled or order
            except ActivityError as exc:
                if is_cancellation(exc):
                    raise
        return order

    def _apply_fill(self, leg: LegName, order: OrderResult, opening: bool) -> None:
        st = self.s.leg(leg)
        if order.venue_order_id and order.venue_order_id not in st.venue_order_ids:
            st.venue_order_ids.append(order.venue_order_id)
        q = order.filled_qty
        if q <= 0:
            return
        if opening:
            prev = st.opened_qty
            st.opened_qty = prev + q
            if order.avg_price is not None:
                st.avg_price = ((st.avg_price or ZERO) * prev + order.avg_price * q) / st.opened_qty
            st.filled_qty += q
        else:
            st.filled_qty = max(ZERO, st.filled_qty - q)
        st.fees += order.fee
        self._event(f"{leg} {order.side} {q} @ {order.avg_price} ({order.client_order_id}, {order.status})")

    # ------------------------------------------------------------------ hold
    async def _hold(self) -> tuple[bool, str]:
        self._set_state("holding")
        if not self._hold_started_ms:
            self._hold_started_ms = self._now_ms()
        while True:
            if self._emergency_req:
                return True, f"signal: {self._emergency_req}"
            if self._close_req:
                return False, f"signal: {self._close_req}"
            held_s = (self._now_ms() - self._hold_started_ms) / 1000
            if held_s >= self.s.hold.max_hold_s:
                return False, "MAX_HOLD"
            if self._should_continue_as_new():
                await self._continue_as_new()
            try:
                await workflow.wait_condition(
                    lambda: bool(self._close_req or self._emergency_req),
                    timeout=self.s.hold.monitor_interval_s,
                    timeout_summary="monitor interval",
                )
                continue  # a signal arrived
            except TimeoutError:
                pass
            verdict = await self._monitor()
            if verdict is not None:
                return verdict

    async def _monitor(self) -> tuple[bool, str] | None:
        p = self.p
        L, S = self.s.leg("long"), self.s.leg("short")
        try:
            (lpos, spos), (lsnap, ssnap) = await asyncio.gather(
                asyncio.gather(self._positions(p.long_venue), self._positions(p.short_venue)),
                asyncio.gather(self._snapshot(p.long_venue), self._snapshot(p.short_venue)),
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            self._monitor_failures += 1
            self._event(f"monitor read failed ({error_type(exc)}), #{self._monitor_failures}")
            if self._monitor_failures == 3:
                await self._alert("venue_unreachable", f"{self._summary()}: monitor reads failing: {exc.cause}",
                                  "warning")
            return None
        self._monitor_failures = 0
        L.position, S.position = lpos, spos
        tol = self._step / 2
        lq = lpos.qty if lpos else ZERO
        sq = spos.qty if spos else ZERO
        if abs(lq - L.filled_qty) > tol or abs(sq + S.filled_qty) > tol:
            msg = f"positions changed outside hedgeflow: long {lq} (expected {L.filled_qty}), short {sq} (expected -{S.filled_qty})"
            self._event(msg)
            await self._alert("emergency_close", f"{self._summary()}: {msg}", "critical")
            return True, "LEG_CHANGED"

        gap = hedge_gap(L.filled_qty, S.filled_qty, self.s.target_qty)
        self.s.hedge_gap = gap
        if gap > self.s.hold.max_gap:
            return True, "HEDGE_DRIFT"

        dists = [
            d
            for d in (
                liquidation_distance(lsnap.funding.mark_price, lpos.liquidation_price if lpos else None),
                liquidation_distance(ssnap.funding.mark_price, spos.liquidation_price if spos else None),
            )
            if d is not None
        ]
        if dists:
            nearest = min(dists)
            if nearest < self.s.hold.close_liq_distance:
                await self._alert("emergency_close", f"{self._summary()}: liquidation {nearest:.2%} away", "critical")
                return True, "LIQUIDATION_RISK"
            if nearest < self.s.hold.reduce_liq_distance:
                await self._reduce_both(f"liquidation {nearest:.2%} away")

        spread = spread_bps_per_8h(
            lsnap.funding.rate, lsnap.funding.interval_hours, ssnap.funding.rate, ssnap.funding.interval_hours
        )
        self.s.spread_bps_8h = spread.quantize(Decimal("0.01"))
        self._low_spread = self._low_spread + 1 if spread < self.s.hold.exit_spread_bps else 0
        if self._low_spread >= self.s.hold.exit_checks:
            return False, f"SPREAD_EXIT ({spread:.2f} bps/8h < {self.s.hold.exit_spread_bps})"

        # funding: fetch income only once a settlement time has passed
        nxt = min(lsnap.funding.next_funding_ms, ssnap.funding.next_funding_ms)
        now = self._now_ms()
        if self._next_funding_ms and now >= self._next_funding_ms:
            await self._refresh_funding()
        self._next_funding_ms = nxt if nxt > now else now + 60_000
        self._details()
        return None

    async def _reduce_both(self, why: str) -> None:
        L, S = self.s.leg("long"), self.s.leg("short")
        half = round_down(min(L.filled_qty, S.filled_qty) / 2, self._step)
        if half < self._min_qty or half == 0:
            return
        self.s.reductions += 1
        n = self.s.reductions  # kept in the status: the event log is truncated
        self._event(f"reducing both legs by {half}: {why}")
        await asyncio.gather(
            self._place_verified("long", half, f"r{n}", reduce_only=True),
            self._place_verified("short", half, f"r{n}", reduce_only=True),
        )
        await self._alert("reduced", f"{self._summary()}: reduced both legs by {half} ({why})", "warning")

    async def _positions(self, venue: str) -> Position | None:
        got = await workflow.execute_activity(
            "get_positions",
            PositionsRequest(venue=venue, symbols=[self.p.symbol]),
            result_type=list[Position],
            summary=f"positions {venue}",
            **READ_OPTS,
        )
        return next((x for x in got if x.symbol == self.p.symbol and x.qty != 0), None)

    async def _snapshot(self, venue: str) -> MarketSnapshot:
        return await workflow.execute_activity(
            "market_snapshot",
            SnapshotRequest(venue=venue, symbol=self.p.symbol),
            result_type=MarketSnapshot,
            summary=f"funding {venue}",
            **READ_OPTS,
        )

    async def _refresh_funding(self) -> None:
        since = self.s.open_ms or 0
        try:
            lf, sf = await asyncio.gather(
                *(
                    workflow.execute_activity(
                        "funding_income",
                        IncomeRequest(venue=leg.venue, symbol=self.p.symbol, since_ms=since),
                        result_type=list[FundingPayment],
                        summary=f"funding income {leg.venue}",
                        **READ_OPTS,
                    )
                    for leg in self.s.legs
                )
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            self._event(f"funding income read failed: {error_type(exc)}")
            return
        for leg, pays in zip(self.s.legs, (lf, sf), strict=True):
            leg.funding = sum((x.amount for x in pays), ZERO)
        self.s.funding_collected_usd = sum((leg.funding for leg in self.s.legs), ZERO)

    # ------------------------------------------------------------------ close
    async def _close(self, emergency: bool, reason: str) -> None:
        """Flatten both venues' positions in this symbol. Never gives up."""
        self.s.close_reason = self.s.close_reason or reason
        self.s.emergency = self.s.emergency or emergency
        self._set_state("emergency_closing" if emergency else "closing")
        if emergency:
            await self._alert("emergency_close", f"{self._summary()}: emergency close ({reason})", "critical")
        delay = 0.5
        alerted = False
        pause = False
        while True:
            if pause:  # back off after a round without progress, capped: a close never gives up
                await self._sleep_uncancellable(delay)
                delay = min(delay * 2, self.p.close_retry_max_s)
            pause = True
            self.s.close_attempts += 1
            n = self.s.close_attempts
            try:
                lpos, spos = await asyncio.gather(self._positions(self.p.long_venue), self._positions(self.p.short_venue))
            except ActivityError as exc:
                if is_cancellation(exc):
                    continue  # a cancel during a close changes nothing: keep closing
                self._event(f"close #{n}: positions unavailable ({error_type(exc)}); retrying")
                alerted = await self._close_stuck(n, alerted, exc)
                continue
            open_legs = [(name, pos) for name, pos in (("long", lpos), ("short", spos)) if pos is not None]
            if not open_legs:
                # venues are flat: this is the only way out of the loop
                for leg in self.s.legs:
                    leg.filled_qty = ZERO
                    leg.position = None
                break
            results = await asyncio.gather(
                *(self._close_leg(name, pos, f"c{n}") for name, pos in open_legs), return_exceptions=True
            )
            progressed = any(r is True for r in results)
            bad = [r for r in results if isinstance(r, BaseException) and not is_cancellation(r)]
            if bad:
                self._event(f"close #{n} failed: {error_type(bad[0])}; retrying")
                alerted = await self._close_stuck(n, alerted, bad[0])
            elif progressed:
                pause, delay = False, 0.5  # something filled: verify flat at once
        self.s.closed_at = workflow.now().isoformat()
        self._event("both venues flat")
        await self._settle_pnl()

    async def _close_leg(self, leg: LegName, pos: Position, step: str) -> bool:
        """One reduce-only market order for the whole position; True when something filled."""
        st = self.s.leg(leg)
        cid = client_order_id(self.p.trade_id, leg, step)
        if cid not in st.client_order_ids:
            st.client_order_ids.append(cid)
        side = Side.SELL if pos.qty > 0 else Side.BUY
        qty = abs(pos.qty)
        req = PlaceOrderRequest(
            venue=st.venue, symbol=self.p.symbol, side=side, qty=qty, client_order_id=cid, reduce_only=True
        )
        try:
            order = await workflow.execute_activity(
                "place_order", req, result_type=OrderResult,
                summary=f"close {leg}: {side} {qty} on {st.venue}", **ORDER_OPTS,
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            order = await self._lookup(st.venue, cid)
            if order is None:
                raise
        order = await self._settle_order(leg, order, opening=False)
        return order.filled_qty > 0

    async def _close_stuck(self, attempt: int, alerted: bool, exc: BaseException) -> bool:
        if attempt >= 3 and not alerted:
            await self._alert(
                "close_stuck",
                f"{self._summary()}: close attempt {attempt} failed ({error_type(exc)}); still retrying",
                "critical",
            )
            return True
        return alerted

    async def _sleep_uncancellable(self, seconds: float) -> None:
        try:
            await workflow.sleep(seconds)
        except asyncio.CancelledError:
            pass  # a cancel while closing: the close goes on

    async def _settle_pnl(self) -> None:
        """Realised PnL per leg from the venue's own fills and funding income."""
        since = (self.s.open_ms or 0) - 1000
        for leg in self.s.legs:
            # orders whose outcome we never learnt: ask the venue once more by client id
            known = len(leg.venue_order_ids)
            if known < len(leg.client_order_ids):
                for cid in leg.client_order_ids:
                    found = await self._lookup(leg.venue, cid)
                    if found and found.venue_order_id not in leg.venue_order_ids:
                        leg.venue_order_ids.append(found.venue_order_id)
        try:
            fills = await asyncio.gather(
                *(
                    workflow.execute_activity(
                        "order_fills",
                        FillsRequest(venue=leg.venue, symbol=self.p.symbol, since_ms=since,
                                     order_ids=leg.venue_order_ids),
                        result_type=list[Fill],
                        summary=f"fills {leg.venue}",
                        **READ_OPTS,
                    )
                    for leg in self.s.legs
                )
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            self._event(f"PnL not settled: fills unavailable ({error_type(exc)})")
            return
        await self._refresh_funding()
        total = ZERO
        fees = ZERO
        for leg, leg_fills in zip(self.s.legs, fills, strict=True):
            pnl = leg_pnl(
                [FillLike(str(f.side), f.qty, f.price, f.fee) for f in leg_fills],
                [leg.funding],
            )
            leg.fees = pnl.fees
            leg.price_pnl = pnl.price_pnl
            leg.realized_pnl = pnl.total
            total += pnl.total
            fees += pnl.fees
        self.s.fees_usd = fees
        self.s.realized_pnl_usd = total

    # ------------------------------------------------------------------ endings
    async def _abort(self, reason: str, detail: str) -> None:
        self.s.abort_reason = f"{reason}: {detail}" if detail else reason
        self._event(f"aborted: {self.s.abort_reason}")
        await self._alert("trade_aborted", f"{self._summary()}: {self.s.abort_reason}", "warning")
        self._set_state("aborted")
        await self._record("aborted")

    async def _finish(self, state: TradeStateName) -> None:
        if self.s.state != "aborted":
            self._set_state(state)
            await self._alert(
                "trade_closed",
                f"{self._summary()} closed ({self.s.close_reason}); realised PnL {self.s.realized_pnl_usd}",
            )
            await self._record("closed")

    async def _record(self, event: str) -> None:
        """Write the trade, its orders, fills and funding to the ledger (idempotent activity);
        a failed write is an event, never an obstacle."""
        try:
            await workflow.execute_activity(
                "record_trade",
                TradeRecord(event=event, status=self.s, opened_by=self.p.opened_by),  # type: ignore[arg-type]
                summary=f"ledger: {event}",
                **(LEDGER_OPTS if event == "opened" else LEDGER_FINAL_OPTS),
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                return
            self._event(f"ledger write {event} failed: {error_type(exc)}")

    async def _alert(self, kind: str, message: str, severity: str = "info") -> None:
        try:
            await workflow.execute_activity(
                "send_alert",
                Alert(kind=kind, trade_id=self.p.trade_id, message=message, severity=severity),  # type: ignore[arg-type]
                summary=f"alert {kind}",
                **ALERT_OPTS,
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                return
            self._event(f"alert {kind} not delivered: {error_type(exc)}")

    # ------------------------------------------------------------------ continue-as-new
    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > self.p.history_limit

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._event(f"continue-as-new after {workflow.info().get_current_history_length()} events")
        carry = TradeCarry(
            status=self.s,
            low_spread_checks=self._low_spread,
            hold_started_ms=self._hold_started_ms,
            close_requested=self._close_req,
            emergency_requested=self._emergency_req,
        )
        workflow.continue_as_new(args=[self.p, carry])

    # ------------------------------------------------------------------ visibility
    def _set_state(self, state: TradeStateName) -> None:
        if self.s.state != state:
            self._event(f"state {self.s.state} → {state}")
        self.s.state = state
        workflow.upsert_search_attributes([SA_STATE.value_set(state)])
        self._details()

    def _upsert_all(self) -> None:
        workflow.upsert_search_attributes(
            [
                SA_STATE.value_set(self.s.state),
                SA_SYMBOL.value_set(self.p.symbol),
                SA_LONG.value_set(self.p.long_venue),
                SA_SHORT.value_set(self.p.short_venue),
            ]
        )
        self._details()

    def _summary(self) -> str:
        return summary_line(self.p)

    def _details(self) -> None:
        s = self.s
        rows = "\n".join(
            f"| {name} | {leg.venue} | {leg.side} | {leg.filled_qty} | {leg.avg_price or '-'} | {leg.fees} | "
            f"{leg.funding} | {leg.realized_pnl if leg.realized_pnl is not None else '-'} |"
            for name, leg in zip(("long", "short"), s.legs, strict=True)
        )
        workflow.set_current_details(
            f"**{s.state}** — {summary_line(self.p)}\n\n"
            f"| leg | venue | side | qty | avg price | fees | funding | PnL |\n|---|---|---|---|---|---|---|---|\n{rows}\n\n"
            f"target qty {s.target_qty} · gap {s.hedge_gap if s.hedge_gap is not None else '-'} · "
            f"spread {s.spread_bps_8h if s.spread_bps_8h is not None else '-'} bps/8h · "
            f"funding {s.funding_collected_usd} · realised PnL {s.realized_pnl_usd if s.realized_pnl_usd is not None else '-'}"
            + (f"\n\naborted: {s.abort_reason}" if s.abort_reason else "")
            + (f"\n\nclose reason: {s.close_reason}" if s.close_reason else "")
        )

    def _event(self, what: str) -> None:
        self.s.events.append(TradeEvent(t=workflow.now().isoformat(timespec="milliseconds"), what=what))
        del self.s.events[:-MAX_EVENTS]

    def _now_ms(self) -> int:
        return int(workflow.now().timestamp() * 1000)

    @staticmethod
    def _why(result: OrderResult | str) -> str:
        if isinstance(result, str):
            return result
        return f"{result.status}, filled {result.filled_qty}"


def summary_line(p: TradeParams) -> str:
    return f"{p.symbol} long {p.long_venue} / short {p.short_venue} ${p.notional_usd:,.0f}"


def search_attributes_for(p: TradeParams, state: str = "opening") -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(SA_STATE, state),
            SearchAttributePair(SA_SYMBOL, p.symbol),
            SearchAttributePair(SA_LONG, p.long_venue),
            SearchAttributePair(SA_SHORT, p.short_venue),
        ]
    )
