"""TradeWorkflow: one cross-venue funding arbitrage, open → verify → hedge check → hold → close.

Read top to bottom, this file is the answer to "what happens when one leg fails". The states
and the legal steps between them are the table in ``domain/lifecycle.py``; order mechanics
(place, poll, look up, cancel, close a leg) are one level down in ``workflows/trade_orders.py``;
every refusal before the first order is a pure function of ``domain/risk.py``.

* Pre-trade: both venues read, the gate decides, the (venue, symbol) leases taken; else ``aborted``.
* **One leg with nothing filled → the other is flattened at once**, whatever its venue does
  (each venue is closed on its own), orphan exposure recorded, ``aborted`` with ``LEG_FAILED``.
* Partial fills → top up, then trim; the venues' positions must agree within ``max_gap``.
* Hold: each leg judged from its own venue's answer (changed behind our back → emergency close;
  liquidation: reduce with hysteresis, then close), spread exit, maximum hold, funding income.
* Close: reduce-only orders sized from the venues' *actual* positions until both are flat; it
  never gives up and continues-as-new when long. Alerts never hold a step back. Cancel closes.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.trade import TradeActivities
    from domain import risk
    from domain.hedge import (
        LEG_SPECIFIC_EXITS,
        hedge_gap,
    )
    from domain.lifecycle import CLOSING_STATES, TERMINAL, Exit, ExitReason, TradeState, check_transition
    from domain.rounding import common_step
    from messages.trade import (
        CloseRequest,
        HoldParams,
        HoldParamsPatch,
        LegState,
        PendingAbort,
        TradeCarry,
        TradeEvent,
        TradeMarket,
        TradeParams,
        TradeStatus,
        VenueCheckRequest,
    )
    from venues.models import Side
    from workflows import execution, monitor
    from workflows import trade_orders as orders
    from workflows.equalise import equalise
    from workflows.options import READ_OPTS, TRADE_TASK_TIMEOUT
    from workflows.trade_close import Closer
    from workflows.trade_orders import OrderDesk, error_type, is_cancellation, why
    from workflows.visibility import SA_STATE, details_markdown, search_attribute_updates, summary_line

ZERO, St = Decimal(0), TradeState
MAX_EVENTS = 50
#: v5: rounds of reading both venues again when one could not be read at the hedge check
HEDGE_CHECK_ROUNDS = 30
#: step assumed by runs carried from versions that did not carry the market (their behaviour)
LEGACY_STEP = Decimal("0.001")
V2 = "lifecycle-v2"  # per-venue close, alert path, leases, hysteresis, hedge check from the venues
#: a hedged pair closes one leg after the other; the `opened` ledger record runs beside the hold
V3 = "lifecycle-v3"
#: an opening order of unknown outcome is followed at once by a reduce-only close (no read first)
V4 = "lifecycle-v4"
#: a cancel that arrives once the venues are flat no longer cuts the lease release or the final record
V5 = "lifecycle-v5"
#: ``place_orders`` flattens a lone filled leg (and cancels a companion accepted but not executed) itself
V6 = "lifecycle-v6"
#: a hedged pair's close round sends the leader and the follower's match from one activity
V7 = "lifecycle-v7"
V8 = "lifecycle-v8"  # a follower whose match is below its venue's grown step waits for its leader, then closes whole
#: a close and its rests in one activity (close_whole), as a trim's; the opening pair trimmed, a lone flatten
#: rested until flat and a chased opening watched inside place_orders; a cancel waits for a trim in flight;
#: a leg whose opening may still land is read every 0.2 s
V9 = "lifecycle-v9"
MONITOR_V1 = monitor.MONITOR_V1  # a holding trade's tick is one activity reading both venues
MONITOR_V2 = monitor.MONITOR_V2  # ... a local activity


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
        self.closer = Closer(params, carry, self.desk, self._event, self._alert, self._history_large)
        self.v2 = self.v3 = self.v5 = self.monitor_v1 = self.monitor_v2 = False
        self.tick_wait_ms: int | None = None  # when the hold's current interval wait began
        self.opened_record: asyncio.Task[None] | None = None  # the `opened` ledger write, running beside the hold
        self._alert_starts: list[asyncio.Task[None]] = []  # v5: alert children being started (awaited before the run ends)

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
    def _patched(self, patch: HoldParamsPatch) -> HoldParams:  # a bad value: ValidationError naming the field
        if self.s.state in TERMINAL:
            raise ValueError(f"trade is {self.s.state}; hold parameters can no longer change")
        return HoldParams.model_validate(self.s.hold.model_dump() | patch.model_dump(exclude_none=True))

    # ------------------------------------------------------------------ main
    @workflow.run
    async def run(self, params: TradeParams, carry: TradeCarry | None = None) -> TradeStatus:
        try:
            return await self._run(carry)
        finally:  # v5: every alert started on the way is accepted before the run ends
            await orders.uncancellable(asyncio.gather(*self._alert_starts))

    async def _run(self, carry: TradeCarry | None) -> TradeStatus:
        self.v2 = self.desk.v2 = workflow.patched(V2)
        self.v3 = self.closer.v3 = self.desk.v3 = self.v2 and workflow.patched(V3)
        self.closer.v4 = self.desk.v4 = self.v3 and workflow.patched(V4)
        self.v5 = self.desk.v5 = self.desk.v4 and workflow.patched(V5)
        self.desk.v6 = self.v5 and workflow.patched(V6)
        self.closer.v7 = self.desk.v7 = self.desk.v6 and workflow.patched(V7)
        self.closer.v8 = self.closer.v7 and workflow.patched(V8)
        self.monitor_v1 = self.desk.v7 and workflow.patched(MONITOR_V1)
        self.monitor_v2 = self.monitor_v1 and workflow.patched(MONITOR_V2)
        self.closer.v9 = self.desk.v9 = self.closer.v8 and workflow.patched(V9)
        workflow.upsert_search_attributes(search_attribute_updates(self.p, self.s.state.value))
        self._details()
        try:
            if carry is None:
                if await self._open() is not None:  # refused, or failed and flattened: aborted
                    return self.s
                await self._alert("trade_opened", f"{summary_line(self.p)} hedged, qty {self.s.target_qty}")
                if self.v3:  # bookkeeping never holds a trading step back
                    self.opened_record = asyncio.ensure_future(
                        orders.record(self.p, self.s.model_copy(deep=True), "opened", self._event))
                else:
                    await orders.record(self.p, self.s, "opened", self._event)
            if self.s.state in CLOSING_STATES:
                verdict = Exit(ExitReason.RESUMED, self.s.state == St.EMERGENCY_CLOSING)
                if self.c.pending_abort:  # an opening that failed, carried into this run mid-close
                    await self._close(True, self.s.close_reason or verdict.text, at_once=True)
                    await self._abort_after_close()
                    return self.s
            else:
                verdict = await self._hold()
            await self._close(verdict.emergency, self.s.close_reason or verdict.text, verdict.detail,
                              at_once=verdict.reason.value in LEG_SPECIFIC_EXITS)
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
            max_order_notional_usd=p.max_order_notional_usd, checks=checks, usd_rates=p.usd_rates)
        if refusal is None and self.v2:
            refusal = await self.desk.acquire_leases()
        if refusal is not None:
            return await self._abort(refusal)

        lc, sc = checks
        lm, sm = lc.market, sc.market
        assert lm is not None and sm is not None
        self.c.market = TradeMarket(step=common_step(lm.qty_step, sm.qty_step), min_qty=max(lm.min_qty, sm.min_qty),
                                    marks={c.venue: c.mark_price for c in checks if c.mark_price})
        sizing = risk.size_pair(
            p.notional_usd,
            risk.LegMarket(lm.qty_step, lm.min_qty, lm.min_notional, lc.mark_price or ZERO, p.usd_rate(p.long_venue)),
            risk.LegMarket(sm.qty_step, sm.min_qty, sm.min_notional, sc.mark_price or ZERO, p.usd_rate(p.short_venue)))
        if sizing.refusal is not None:
            return await self._abort(sizing.refusal)
        self.s.target_qty = sizing.qty
        if self.v2 and (self.c.close_requested or self.c.emergency_requested):  # asked to stop before any order
            return await self._abort(risk.Refusal(ExitReason.REFUSED.value, "close requested before opening"))

        self.s.open_ms = self._now_ms()
        self.s.opened_at = workflow.now().isoformat()
        self._event(f"placing both legs: {sizing.qty} {p.symbol}")
        self._set_state(St.VERIFYING)
        if p.style == "taker":
            results, piece_failed = dict(zip(("long", "short"), await self.desk.open_both(sizing.qty), strict=True)), None
        else:  # maker-first or sliced (workflows/execution.py); earlier pieces + a failed one: they close hedged
            results, piece_failed = await execution.open_styled(self.desk, sizing.qty)
        L, S = self.s.leg("long"), self.s.leg("short")
        if piece_failed:
            self._event(f"{piece_failed}; the pieces that went on close as a hedged pair")
            self.c.pending_abort = PendingAbort(code=ExitReason.LEG_FAILED.value, detail=piece_failed)
            await self._close(True, Exit(ExitReason.LEG_FAILED, True, piece_failed).text)
            return await self._abort_after_close()

        # ONE LEG FAILED: flatten whatever the other one got, at once, and end aborted.
        # (v6: a lone leg may be flat already, flattened in the same step: what it opened counts)
        failed = [n for n in ("long", "short")
                  if (self.s.leg(n).opened_qty if self.desk.v6 else self.s.leg(n).filled_qty) == 0]
        if failed:
            detail = "; ".join(f"{n}: {why(results[n])}" for n in failed)
            self._event(f"leg failed ({detail}); flattening the other")
            self.c.pending_abort = PendingAbort(code=ExitReason.LEG_FAILED.value, detail=detail)
            await self._close(True, Exit(ExitReason.LEG_FAILED, True, detail).text, at_once=True)
            return await self._abort_after_close()

        await equalise(self.desk, *self._market())  # top up, then trim (workflows/equalise.py)

        self._set_state(St.HEDGE_CHECK)
        gap = hedge_gap(L.filled_qty, S.filled_qty, self.s.target_qty)
        if self.v2:  # the venues, not our own fill record, say whether we are hedged
            held = await self.desk.positions_both()
            if held:
                gap = hedge_gap(abs(held[0]), abs(held[1]), self.s.target_qty)
            elif self.v5:
                gap = await self._hedge_check_unreadable(gap)
            else:
                gap = Decimal(1)
        self.s.hedge_gap = gap
        if gap > self.s.hold.max_gap:
            self._event(f"hedge gap {gap:.4f} above {self.s.hold.max_gap}; closing both")
            self.c.pending_abort = PendingAbort(code=ExitReason.HEDGE_GAP.value, detail=f"gap {gap:.4f} > max {self.s.hold.max_gap}")
            await self._close(True, ExitReason.HEDGE_GAP.value, at_once=True)
            return await self._abort_after_close()
        self.s.hedged_at = workflow.now().isoformat()
        return None

    async def _hedge_check_unreadable(self, fills_gap: Decimal) -> Decimal:
        """v5: a venue that cannot be read after the fills is no hedge gap. Closing "at once" here
        flattened the readable leg and left the other naked on the venue that does not answer
        (chaos: 52 s). Read both again every second until both answer; a close or emergency
        signal meanwhile (or ``HEDGE_CHECK_ROUNDS`` rounds) goes on with the gap the fills
        say, and the close that follows keeps the pair hedged leg by leg."""
        self._event(f"hedge check: a venue cannot be read; reading again (the fills say gap {fills_gap:.4f})")
        for _ in range(HEDGE_CHECK_ROUNDS):
            stop = lambda: bool(self.c.close_requested or self.c.emergency_requested)  # noqa: E731
            if stop():
                break
            try:
                await workflow.wait_condition(stop, timeout=1.0, timeout_summary="hedge check: read again")
                break
            except TimeoutError:
                pass
            held = await self.desk.positions_both()
            if held:
                return hedge_gap(abs(held[0]), abs(held[1]), self.s.target_qty)
        return fills_gap

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
            if self._history_large():
                await self._continue_as_new()
            self.tick_wait_ms = self._now_ms()  # every order of the trade was answered before this
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
        """One look at both venues, each leg judged from its own venue's answer (workflows/monitor.py)."""
        return await monitor.tick(self)

    # ------------------------------------------------------------------ close
    async def _close(self, emergency: bool, reason: str, detail: str = "", *, at_once: bool = False) -> None:
        """Flatten both venues' positions in this symbol, each venue on its own
        (``workflows/trade_close.py``): a hedged pair one leg after the other, unless the close
        is about one leg itself (``at_once``). Never gives up; continues-as-new when the history grows."""
        self.s.close_reason = self.s.close_reason or reason
        self.s.emergency = self.s.emergency or emergency
        self._set_state(St.EMERGENCY_CLOSING if self.s.emergency else St.CLOSING)
        if emergency:
            why = f"{reason}: {detail}" if self.v2 and detail and detail not in reason else reason
            await self._alert("emergency_close", f"{summary_line(self.p)}: emergency close ({why})", "critical")
        if self.v2 and not (emergency or at_once or self.c.styled_close_done) and self.p.style != "taker":
            self.c.styled_close_done = True  # once: a resumed close goes straight to the loop
            await execution.close_styled(self.desk, self.closer)  # as far as it goes; the loop does the rest
        if not self.v2:
            await self.closer.legacy_close_loop()
        elif not await self.closer.flatten_each(at_once):
            await self._continue_as_new()  # the next run resumes the close where this one stopped
        self.s.closed_at = workflow.now().isoformat()
        self._event("both venues flat")
        await self.desk.settle_pnl()

    # ------------------------------------------------------------------ endings
    async def _abort(self, refusal: risk.Refusal, verdict: Exit | None = None) -> Exit:
        self.s.abort_reason = str(refusal)
        self._event(f"aborted: {self.s.abort_reason}")
        await self._alert("trade_aborted", f"{summary_line(self.p)}: {self.s.abort_reason}", "warning")
        self._set_state(St.ABORTED)
        await self.desk.release_leases()  # flat (or never traded): the symbol is free again
        await orders.record(self.p, self.s, "aborted", self._event, shielded=self.v5)
        return verdict or Exit(ExitReason.REFUSED, False, str(refusal))

    async def _finish(self) -> None:
        if self.s.state != St.ABORTED:
            self._set_state(St.CLOSED)
            await self.desk.release_leases()
            await self._alert("trade_closed",
                              f"{summary_line(self.p)} closed ({self.s.close_reason}); realised PnL {self.s.realized_pnl_usd}")
            if self.opened_record is not None:  # the venues are flat: the `opened` write lands before the final one
                await (orders.uncancellable(self.opened_record) if self.v5 else self.opened_record)
            await orders.record(self.p, self.s, "closed", self._event, shielded=self.v5)

    async def _alert(self, kind: str, message: str, severity: str = "info") -> None:
        if self.v5:  # the child's start goes out with the next orders: not even a task round trip
            self._alert_starts.append(asyncio.ensure_future(orders.notify(self.s, kind, message, severity, self._event)))
        elif self.v2:  # on its own path: never awaits the webhook
            await orders.notify(self.s, kind, message, severity, self._event)
        else:
            await orders.alert(self.p.trade_id, kind, message, severity, self._event)

    async def _abort_after_close(self) -> Exit:
        """End an opening that failed once its venues are flat (``pending_abort`` says why)."""
        why = self.c.pending_abort
        assert why is not None
        if why.code == ExitReason.LEG_FAILED.value:  # from the lone leg's fill to both venues flat
            self.s.orphan_exposure_ms = self._now_ms() - min(self.c.filled_ms.values()) if self.c.filled_ms else 0
        return await self._abort(risk.Refusal(why.code, why.detail), Exit(ExitReason(why.code), True))

    # ------------------------------------------------------------------ continue-as-new
    def _history_large(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > self.p.history_limit

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._event(f"continue-as-new after {workflow.info().get_current_history_length()} events")
        workflow.continue_as_new(args=[self.p, self.c], task_timeout=TRADE_TASK_TIMEOUT,  # the next run: current version
                                 initial_versioning_behavior=workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE)

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
        return (self.c.market.step, self.c.market.min_qty) if self.c.market else (LEGACY_STEP, ZERO)

    def _details(self) -> None:
        workflow.set_current_details(details_markdown(self.p, self.s))

    def _event(self, what: str) -> None:
        self.s.events.append(TradeEvent(t=workflow.now().isoformat(timespec="milliseconds"), what=what))
        del self.s.events[:-MAX_EVENTS]

    def _now_ms(self) -> int:
        return int(workflow.now().timestamp() * 1000)
