"""TradeWorkflow: one cross-venue funding arbitrage, open → verify → hedge check → hold → close.

Read top to bottom, this file is the answer to "what happens when one leg fails". The states
and the legal steps between them are the table in ``domain/lifecycle.py``; order mechanics
(place, poll, look up, cancel, close a leg) are one level down in ``workflows/trade_orders.py``;
every refusal before the first order is a pure function of ``domain/risk.py``.

* Pre-trade: both venues are read and the gate decides; refused → ``aborted``, nothing sent.
* Open: both legs go out together with deterministic client ids, each polled until done.
* **One leg with nothing filled → the other is flattened at once** (emergency close, orphan
  exposure recorded) and the trade ends ``aborted`` with ``LEG_FAILED``.
* Partial fills → top up the lagging leg, then trim the longer; a gap above ``max_gap`` closes both.
* Hold: every ``monitor_interval_s`` positions (changed behind our back → emergency close),
  liquidation distance (reduce, then close), spread exit, maximum hold, funding income; the run
  continues-as-new carrying ``TradeCarry`` before its history grows large.
* Close: reduce-only orders sized from the venues' *actual* positions until both are flat; it
  never gives up (capped backoff, a ``close_stuck`` alert). Cancel runs the close, ends Canceled.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.trade import TradeActivities
    from domain import risk
    from domain.funding import interval_ms_from_hours, spread_bps_8h
    from domain.hedge import hedge_gap, liquidation_distance
    from domain.lifecycle import CLOSING_STATES, TERMINAL, Exit, ExitReason, TradeState, check_transition
    from domain.rounding import common_step, round_down
    from messages.trade import (
        CloseRequest,
        HoldParams,
        HoldParamsPatch,
        LegState,
        TradeCarry,
        TradeEvent,
        TradeMarket,
        TradeParams,
        TradeStatus,
        VenueCheckRequest,
    )
    from venues.models import Side
    from workflows import trade_orders as orders
    from workflows.options import READ_OPTS
    from workflows.trade_orders import OrderDesk, error_type, is_cancellation, why
    from workflows.visibility import SA_STATE, details_markdown, search_attribute_updates, summary_line

ZERO = Decimal(0)
MAX_EVENTS = 50
St = TradeState
#: step assumed by runs carried from versions that did not carry the market (their behaviour)
LEGACY_STEP = Decimal("0.001")


@workflow.defn(name="TradeWorkflow")
class TradeWorkflow:
    @workflow.init
    def __init__(self, params: TradeParams, carry: TradeCarry | None = None) -> None:
        self.p = params
        if carry is None:
            legs = [LegState(venue=params.long_venue, side=Side.BUY), LegState(venue=params.short_venue, side=Side.SELL)]
            carry = TradeCarry(status=TradeStatus(
                trade_id=params.trade_id, state=St.OPENING, symbol=params.symbol, long_venue=params.long_venue,
                short_venue=params.short_venue, notional_usd=params.notional_usd, legs=legs, hold=params.hold))
        else:
            carry.status.runs += 1
            carry.market = carry.market or TradeMarket(step=LEGACY_STEP)
        self.c = carry  # the whole state of the trade, handed on by continue-as-new
        self.s = carry.status
        self.desk = OrderDesk(params, carry, self._event)

    # ------------------------------------------------------------------ handlers
    @workflow.query(name="status")
    def status(self) -> TradeStatus:
        return self.s

    @workflow.signal(name="close")
    def close(self, req: CloseRequest) -> None:
        self.c.close_requested = req.reason or "requested"
        self._event(f"close requested: {self.c.close_requested}")

    @workflow.signal(name="emergency_close")
    def emergency_close(self, req: CloseRequest) -> None:
        self.c.emergency_requested = req.reason or "requested"
        self._event(f"emergency close requested: {self.c.emergency_requested}")

    @workflow.update(name="update_hold")
    def update_hold(self, patch: HoldParamsPatch) -> HoldParams:
        self.s.hold = self._patched(patch)
        self._event(f"hold parameters updated: {patch.model_dump(exclude_none=True)}")
        return self.s.hold

    @update_hold.validator
    def _validate_hold(self, patch: HoldParamsPatch) -> None:
        if self.s.state in TERMINAL:
            raise ValueError(f"trade is {self.s.state}; hold parameters can no longer change")
        self._patched(patch)  # raises a pydantic ValidationError naming the field

    def _patched(self, patch: HoldParamsPatch) -> HoldParams:
        return HoldParams.model_validate(self.s.hold.model_dump() | patch.model_dump(exclude_none=True))

    # ------------------------------------------------------------------ main
    @workflow.run
    async def run(self, params: TradeParams, carry: TradeCarry | None = None) -> TradeStatus:
        workflow.upsert_search_attributes(search_attribute_updates(self.p, self.s.state.value))
        self._details()
        try:
            if carry is None:
                failed = await self._open()
                if failed is not None:
                    return self.s
                await self._alert("trade_opened", f"{summary_line(self.p)} hedged, qty {self.s.target_qty}")
                await orders.record(self.p, self.s, "opened", self._event)
            if self.s.state in CLOSING_STATES:
                verdict = Exit(ExitReason.RESUMED, self.s.state == St.EMERGENCY_CLOSING)
            else:
                verdict = await self._hold()
            await self._close(verdict.emergency, self.s.close_reason or verdict.text)
            await self._finish()
            return self.s
        except BaseException as exc:
            if isinstance(exc, workflow.ContinueAsNewError):
                raise
            if is_cancellation(exc):
                self._event("cancel received: closing both legs")
                await self._close(False, Exit(ExitReason.CANCELLED).text)
                await self._finish()
                raise
            # anything else: never leave a leg behind
            self._event(f"unexpected error {error_type(exc)}: {exc}; emergency close")
            await self._alert("emergency_close", f"{summary_line(self.p)}: unexpected error {exc}", "critical")
            await self._close(True, Exit(ExitReason.ERROR, True, error_type(exc)).text)
            await self._finish()
            raise ApplicationError(f"trade failed and was flattened: {exc}", non_retryable=True) from exc

    # ------------------------------------------------------------------ open
    async def _open(self) -> Exit | None:
        """None when both legs are on and hedged; otherwise the exit, with nothing left open."""
        p = self.p
        self._set_state(St.OPENING)
        try:
            checks = await asyncio.gather(*(
                workflow.execute_activity_method(
                    TradeActivities.check_venue, VenueCheckRequest(venue=v, symbol=p.symbol, leverage=p.leverage),
                    summary=f"pre-trade check {v}, leverage {p.leverage}x", **READ_OPTS,
                ) for v in (p.long_venue, p.short_venue)))
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            return await self._abort(risk.Refusal(risk.VENUE_UNREACHABLE, f"{error_type(exc)}: {exc.cause or exc}"))
        refusal = risk.check_venues(
            p.symbol, p.notional_usd, leverage=p.leverage, margin_buffer=p.margin_buffer,
            max_order_notional_usd=p.max_order_notional_usd, checks=checks)
        if refusal is not None:
            return await self._abort(refusal)

        lc, sc = checks
        lm, sm = lc.market, sc.market
        assert lm is not None and sm is not None
        self.c.market = TradeMarket(step=common_step(lm.qty_step, sm.qty_step), min_qty=max(lm.min_qty, sm.min_qty),
                                    marks={c.venue: c.mark_price for c in checks if c.mark_price})
        sizing = risk.size_pair(
            p.notional_usd,
            risk.LegMarket(lm.qty_step, lm.min_qty, lm.min_notional, lc.mark_price or ZERO),
            risk.LegMarket(sm.qty_step, sm.min_qty, sm.min_notional, sc.mark_price or ZERO),
        )
        if sizing.refusal is not None:
            return await self._abort(sizing.refusal)
        self.s.target_qty = sizing.qty

        self.s.open_ms = self._now_ms()
        self.s.opened_at = workflow.now().isoformat()
        self._event(f"placing both legs: {sizing.qty} {p.symbol}")
        self._set_state(St.VERIFYING)
        results = dict(zip(("long", "short"), await self.desk.open_both(sizing.qty), strict=True))
        L, S = self.s.leg("long"), self.s.leg("short")

        # ONE LEG FAILED: flatten whatever the other one got, at once, and end aborted.
        failed = [n for n in ("long", "short") if self.s.leg(n).filled_qty == 0]
        if failed:
            detail = "; ".join(f"{n}: {why(results[n])}" for n in failed)
            self._event(f"leg failed ({detail}); flattening the other")
            await self._close(True, Exit(ExitReason.LEG_FAILED, True, detail).text)
            # from the moment the lone leg's fill was known to the moment both venues were flat
            self.s.orphan_exposure_ms = self._now_ms() - min(self.c.filled_ms.values()) if self.c.filled_ms else 0
            return await self._abort(risk.Refusal(ExitReason.LEG_FAILED.value, detail), Exit(ExitReason.LEG_FAILED, True))

        await self.desk.equalise(*self._market())

        self._set_state(St.HEDGE_CHECK)
        gap = hedge_gap(L.filled_qty, S.filled_qty, self.s.target_qty)
        self.s.hedge_gap = gap
        if gap > self.s.hold.max_gap:
            self._event(f"hedge gap {gap:.4f} above {self.s.hold.max_gap}; closing both")
            await self._close(True, ExitReason.HEDGE_GAP.value)
            return await self._abort(risk.Refusal(ExitReason.HEDGE_GAP.value, f"gap {gap:.4f} > max {self.s.hold.max_gap}"),
                                     Exit(ExitReason.HEDGE_GAP, True))
        self.s.hedged_at = workflow.now().isoformat()
        return None

    # ------------------------------------------------------------------ hold
    async def _hold(self) -> Exit:
        self._set_state(St.HOLDING)
        if not self.c.hold_started_ms:
            self.c.hold_started_ms = self._now_ms()
        while True:
            if self.c.emergency_requested:
                return Exit(ExitReason.SIGNAL_EMERGENCY, True, self.c.emergency_requested)
            if self.c.close_requested:
                return Exit(ExitReason.SIGNAL_CLOSE, False, self.c.close_requested)
            if (self._now_ms() - self.c.hold_started_ms) / 1000 >= self.s.hold.max_hold_s:
                return Exit(ExitReason.MAX_HOLD)
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() > self.p.history_limit:
                await self._continue_as_new()
            try:
                await workflow.wait_condition(lambda: bool(self.c.close_requested or self.c.emergency_requested),
                                              timeout=self.s.hold.monitor_interval_s, timeout_summary="monitor interval")
                continue  # a signal arrived
            except TimeoutError:
                pass
            verdict = await self._monitor()
            if verdict is not None:
                return verdict

    async def _monitor(self) -> Exit | None:
        p, d = self.p, self.desk
        L, S = self.s.leg("long"), self.s.leg("short")
        try:
            (lpos, spos), (lsnap, ssnap) = await asyncio.gather(
                asyncio.gather(d.position(p.long_venue), d.position(p.short_venue)),
                asyncio.gather(d.snapshot(p.long_venue), d.snapshot(p.short_venue)),
            )
        except ActivityError as exc:
            if is_cancellation(exc):
                raise
            self.c.monitor_failures += 1
            self._event(f"monitor read failed ({error_type(exc)}), #{self.c.monitor_failures}")
            if self.c.monitor_failures == 3:
                await self._alert("venue_unreachable", f"{summary_line(self.p)}: monitor reads failing: {exc.cause}", "warning")
            return None
        self.c.monitor_failures = 0
        L.position, S.position = lpos, spos
        tol = self._market()[0] / 2
        lq, sq = (lpos.qty if lpos else ZERO), (spos.qty if spos else ZERO)
        if abs(lq - L.filled_qty) > tol or abs(sq + S.filled_qty) > tol:
            msg = f"positions changed outside hedgeflow: long {lq} (expected {L.filled_qty}), short {sq} (expected -{S.filled_qty})"
            self._event(msg)
            await self._alert("emergency_close", f"{summary_line(self.p)}: {msg}", "critical")
            return Exit(ExitReason.LEG_CHANGED, True, msg)

        self.s.hedge_gap = hedge_gap(L.filled_qty, S.filled_qty, self.s.target_qty)
        if self.s.hedge_gap > self.s.hold.max_gap:
            return Exit(ExitReason.HEDGE_DRIFT, True)

        dists = [x for x in (
            liquidation_distance(lsnap.funding.mark_price, lpos.liquidation_price if lpos else None),
            liquidation_distance(ssnap.funding.mark_price, spos.liquidation_price if spos else None),
        ) if x is not None]
        if dists:
            nearest = min(dists)
            if nearest < self.s.hold.close_liq_distance:
                await self._alert("emergency_close", f"{summary_line(self.p)}: liquidation {nearest:.2%} away", "critical")
                return Exit(ExitReason.LIQUIDATION_RISK, True)
            if nearest < self.s.hold.reduce_liq_distance:
                await self._reduce_both(f"liquidation {nearest:.2%} away")

        lf, sf = lsnap.funding, ssnap.funding
        spread = spread_bps_8h(lf.rate, interval_ms_from_hours(lf.interval_hours),
                               sf.rate, interval_ms_from_hours(sf.interval_hours))
        self.s.spread_bps_8h = spread.quantize(Decimal("0.01"))
        self.c.low_spread_checks = self.c.low_spread_checks + 1 if spread < self.s.hold.exit_spread_bps else 0
        if self.c.low_spread_checks >= self.s.hold.exit_checks:
            return Exit(ExitReason.SPREAD_EXIT, False, f"{spread:.2f} bps/8h < {self.s.hold.exit_spread_bps}")

        # funding: fetch income only once a settlement time has passed
        nxt, now = min(lf.next_funding_ms, sf.next_funding_ms), self._now_ms()
        if self.c.next_funding_ms and now >= self.c.next_funding_ms:
            await d.refresh_funding()
        self.c.next_funding_ms = nxt if nxt > now else now + 60_000
        self._details()
        return None

    async def _reduce_both(self, reason: str) -> None:
        L, S = self.s.leg("long"), self.s.leg("short")
        step, min_qty = self._market()
        half = round_down(min(L.filled_qty, S.filled_qty) / 2, step)
        if half < min_qty or half == 0:
            return
        self.s.reductions += 1
        n = self.s.reductions  # kept in the status: the event log is truncated
        self._event(f"reducing both legs by {half}: {reason}")
        await asyncio.gather(
            self.desk.place_verified("long", half, f"r{n}", reduce_only=True),
            self.desk.place_verified("short", half, f"r{n}", reduce_only=True),
        )
        await self._alert("reduced", f"{summary_line(self.p)}: reduced both legs by {half} ({reason})", "warning")

    # ------------------------------------------------------------------ close
    async def _close(self, emergency: bool, reason: str) -> None:
        """Flatten both venues' positions in this symbol. Never gives up."""
        self.s.close_reason = self.s.close_reason or reason
        self.s.emergency = self.s.emergency or emergency
        self._set_state(St.EMERGENCY_CLOSING if self.s.emergency else St.CLOSING)
        if emergency:
            await self._alert("emergency_close", f"{summary_line(self.p)}: emergency close ({reason})", "critical")
        delay, alerted, pause = 0.5, False, False
        while True:
            if pause:  # back off after a round without progress, capped: a close never gives up
                await orders.sleep_uncancellable(delay)
                delay = min(delay * 2, self.p.close_retry_max_s)
            pause = True
            self.s.close_attempts += 1
            n = self.s.close_attempts
            try:
                lpos, spos = await asyncio.gather(self.desk.position(self.p.long_venue),
                                                  self.desk.position(self.p.short_venue))
            except ActivityError as exc:
                if is_cancellation(exc):
                    continue  # a cancel during a close changes nothing: keep closing
                self._event(f"close #{n}: positions unavailable ({error_type(exc)}); retrying")
                alerted = await self._close_stuck(n, alerted, exc)
                continue
            open_legs = [(name, pos) for name, pos in (("long", lpos), ("short", spos)) if pos is not None]
            if not open_legs:  # venues are flat: the only way out of the loop
                for leg in self.s.legs:
                    leg.filled_qty, leg.position = ZERO, None
                break
            results = await asyncio.gather(
                *(self.desk.close_leg(name, pos, f"c{n}") for name, pos in open_legs), return_exceptions=True)
            bad = [r for r in results if isinstance(r, BaseException) and not is_cancellation(r)]
            if bad:
                self._event(f"close #{n} failed: {error_type(bad[0])}; retrying")
                alerted = await self._close_stuck(n, alerted, bad[0])
            elif any(r is True for r in results):
                pause, delay = False, 0.5  # something filled: verify flat at once
        self.s.closed_at = workflow.now().isoformat()
        self._event("both venues flat")
        await self.desk.settle_pnl()

    async def _close_stuck(self, attempt: int, alerted: bool, exc: BaseException) -> bool:
        if attempt >= 3 and not alerted:  # one alert per close, from the third failed attempt
            await self._alert("close_stuck", f"{summary_line(self.p)}: close attempt {attempt} failed "
                              f"({error_type(exc)}); still retrying", "critical")
        return alerted or attempt >= 3

    # ------------------------------------------------------------------ endings
    async def _abort(self, refusal: risk.Refusal, verdict: Exit | None = None) -> Exit:
        self.s.abort_reason = str(refusal)
        self._event(f"aborted: {self.s.abort_reason}")
        await self._alert("trade_aborted", f"{summary_line(self.p)}: {self.s.abort_reason}", "warning")
        self._set_state(St.ABORTED)
        await orders.record(self.p, self.s, "aborted", self._event)
        return verdict or Exit(ExitReason.REFUSED, False, str(refusal))

    async def _finish(self) -> None:
        if self.s.state != St.ABORTED:
            self._set_state(St.CLOSED)
            await self._alert("trade_closed",
                              f"{summary_line(self.p)} closed ({self.s.close_reason}); realised PnL {self.s.realized_pnl_usd}")
            await orders.record(self.p, self.s, "closed", self._event)

    async def _alert(self, kind: str, message: str, severity: str = "info") -> None:
        await orders.alert(self.p.trade_id, kind, message, severity, self._event)

    # ------------------------------------------------------------------ continue-as-new
    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._event(f"continue-as-new after {workflow.info().get_current_history_length()} events")
        workflow.continue_as_new(args=[self.p, self.c])

    # ------------------------------------------------------------------ visibility
    def _set_state(self, state: TradeState) -> None:
        """The only way the state changes: a step not in ``domain.lifecycle.TRANSITIONS`` raises."""
        new = check_transition(self.s.state, state)
        if self.s.state != new:
            self._event(f"state {self.s.state} → {new}")
        self.s.state = new
        workflow.upsert_search_attributes([SA_STATE.value_set(new.value)])
        self._details()

    def _market(self) -> tuple[Decimal, Decimal]:
        m = self.c.market
        return (m.step, m.min_qty) if m else (LEGACY_STEP, ZERO)

    def _details(self) -> None:
        workflow.set_current_details(details_markdown(self.p, self.s))

    def _event(self, what: str) -> None:
        self.s.events.append(TradeEvent(t=workflow.now().isoformat(timespec="milliseconds"), what=what))
        del self.s.events[:-MAX_EVENTS]

    def _now_ms(self) -> int:
        return int(workflow.now().timestamp() * 1000)
