"""ScannerWorkflow (id ``scanner``): find funding spreads worth more than their costs and start
trades safely. One cycle, top to bottom:

1. Venue health: a venue whose calls failed ``unhealthy_after_failures`` times in a row is
   skipped for ``unhealthy_cooldown_s`` (its pairs count as VENUE_UNHEALTHY), then probed again.
2. ``scanner_funding``: ONE bulk funding call per healthy venue, in parallel; every pair of
   every symbol is costed by ``domain.edge`` (fees, estimated slippage, buffer) and ranked.
3. ``scanner_risk_book``: open trades and today's outcomes from visibility; the risk gates of
   ``domain.risk`` drop busy, cooling-down and over-limit candidates.
4. ``scanner_books``: books only for the ``top_n_books`` best survivors; slippage is re-costed
   by walking them (``domain.edge.apply_books``), and the execution style chosen again: the
   cheapest expected of ``styles`` (ties: taker).
5. ``scanner_start_trade``: each survivor starts an independent TradeWorkflow in the chosen
   style (``StartTradeRequest.style``; the command sequence is the same whatever the style, and a
   scanner started before styles prices taker only, so no version marker), whose id is derived
   from (symbol, long, short, target settlement epoch). A retried activity, a replayed
   or re-run cycle, or a restarted scanner computes the same id, and the server refuses a
   second workflow with it (REJECT_DUPLICATE), so one opportunity starts at most one trade.

Signals ``pause``/``resume`` (scanning), ``halt``/``unhalt`` (opening; ``halt`` may close every
open trade); query ``status``. The halted flag is also in the memo, so ``hedgeflow trade open``
can refuse without a worker. Continue-as-new after ``cycles_per_run`` cycles.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.scanner import ScannerActivities
    from domain.edge import VENUE_UNHEALTHY, Edge, apply_books
    from domain.risk import HALTED, INCIDENT_OPEN, OpenTrade, RiskBook, check_gates
    from messages.scanner import (
        BookKey,
        BooksRequest,
        BooksResult,
        CandidateRow,
        CloseAllRequest,
        HaltRequest,
        RiskBookRequest,
        RiskBookView,
        ScannerCarry,
        ScannerParams,
        ScannerStatus,
        ScanRequest,
        ScanResult,
        StartedTrade,
        StartTradeRequest,
        StartTradeResult,
        VenueHealth,
    )

DAY_MS = 86_400_000
RECENT_START_MS = 120_000  # visibility may lag: a just-started trade counts as open this long
MAX_STARTED_SHOWN = 50

READ_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=30),
    heartbeat_timeout=timedelta(seconds=4),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        maximum_interval=timedelta(seconds=2),
        maximum_attempts=3,
    ),
)
START_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=10),
    schedule_to_close_timeout=timedelta(minutes=5),
    retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5)),
)


def scanner_args(settings: Any) -> list:
    """Arguments ``hedgeflow up`` (workers.supervisor.ensure_scanner) starts the scanner with.

    Both of ``run``'s parameters, always: the SDK uses the type hints only when the number of
    payloads matches them, so a lone ``params`` would arrive as a plain dict."""
    return [ScannerParams.from_settings(settings), None]


def _err(exc: BaseException) -> str:
    cause = exc.cause if isinstance(exc, ActivityError) and exc.cause else exc
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'ApplicationError'}: {cause.message}"
    return f"{type(cause).__name__}: {cause}"


@workflow.defn(name="ScannerWorkflow")
class ScannerWorkflow:
    @workflow.init
    def __init__(self, params: ScannerParams, carry: ScannerCarry | None = None) -> None:
        # a run started with fewer arguments than ``run`` declares gets them untyped (plain dicts)
        if isinstance(params, dict):
            params = ScannerParams.model_validate(params)
        if isinstance(carry, dict):
            carry = ScannerCarry.model_validate(carry)
        self.p = params
        self.s = carry.status if carry is not None else ScannerStatus()
        if carry is not None:
            self.s.runs += 1
        self._wake = False
        self._close_all_pending: str | None = None
        self._cycles_this_run = 0
        self._recent: list[StartedTrade] = [
            t for t in self.s.trades_started if t.outcome in ("started", "existing")
        ]

    # ------------------------------------------------------------------ handlers
    @workflow.query(name="status")
    def status(self) -> ScannerStatus:
        return self.s

    @workflow.signal(name="pause")
    def pause(self) -> None:
        self.s.paused = True
        self._memo()

    @workflow.signal(name="resume")
    def resume(self) -> None:
        self.s.paused = False
        self._wake = True
        self._memo()

    @workflow.signal(name="halt")
    def halt(self, req: HaltRequest | None = None) -> None:
        req = req or HaltRequest()
        self.s.halted = True
        self.s.halt_reason = req.reason
        if req.close_all:
            self._close_all_pending = req.reason
            self.s.close_all_done_ms = None
        self._wake = True
        self._memo()

    @workflow.signal(name="unhalt")
    def unhalt(self) -> None:
        self.s.halted = False
        self.s.halt_reason = None
        # emergency closes before this moment no longer count towards the automatic halt
        self.s.emergency_since_ms = self._now_ms()
        self._wake = True
        self._memo()

    # ------------------------------------------------------------------ main
    @workflow.run
    async def run(self, params: ScannerParams, carry: ScannerCarry | None = None) -> None:
        self._memo()
        while True:
            if self._close_all_pending is not None:
                await self._close_all(self._close_all_pending)
            if not self.s.paused:
                try:
                    await self._cycle()
                except ActivityError as exc:
                    self.s.last_error = f"cycle failed: {_err(exc)}"
            if self._close_all_pending is not None:
                continue  # a halt --close-all arrived during the cycle: include what it started
            self._cycles_this_run += 1
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(args=[self.p, ScannerCarry(status=self.s)],  # onto the current version
                                         initial_versioning_behavior=workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE)
            self._wake = False
            try:
                await workflow.wait_condition(lambda: self._wake, timeout=timedelta(seconds=self.p.cycle_s))
            except TimeoutError:
                pass

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return self._cycles_this_run >= self.p.cycles_per_run or info.is_continue_as_new_suggested()

    # ------------------------------------------------------------------ one cycle
    async def _cycle(self) -> None:
        started_at = workflow.now()
        now = self._now_ms()
        p = self.p
        healthy, unhealthy = self._venues_to_scan(now)
        rows: list[CandidateRow] = []
        counts: dict[str, int] = {}
        calls = 0

        def reject(e: Edge, reason: str, detail: str) -> None:
            counts[reason] = counts.get(reason, 0) + 1
            rows.append(CandidateRow(symbol=e.symbol, long_venue=e.long_venue, short_venue=e.short_venue,
                                     edge=e, reason=reason, detail=detail))

        scan: ScanResult = await workflow.execute_activity_method(
            ScannerActivities.scanner_funding, ScanRequest(params=p, venues=healthy, unhealthy=unhealthy),
            summary=f"funding x{len(healthy)}", **READ_OPTS,
        )
        calls += scan.api_calls
        for vs in scan.venues:
            self._health(vs.venue, vs.ok, vs.error, now)
        for k, v in scan.counts.items():
            counts[k] = counts.get(k, 0) + v
        for v in unhealthy:
            h = self.s.venues[v]
            rows.append(CandidateRow(symbol="*", long_venue=v, short_venue="*", reason=VENUE_UNHEALTHY,
                                     detail=f"until {h.unhealthy_until_ms}: {h.last_error}"))

        # risk gates before any book is fetched
        book = await self._risk_book(now) if scan.accepted else RiskBook()
        incidents = await self._incidents() if scan.accepted else None
        picked: list[Edge] = []
        seen: set[str] = set()
        for e in scan.accepted:
            if len(picked) >= p.top_n_books:
                break
            gate = self._gate(e, book, now) or incidents
            if gate is None and e.symbol in seen:
                gate = ("SYMBOL_BUSY", "a better pair of this symbol is ahead")
            if gate is not None:
                reject(e, *gate)
                continue
            seen.add(e.symbol)
            picked.append(e)

        if picked:
            keys = {(v, e.symbol) for e in picked for v in (e.long_venue, e.short_venue)}
            books: BooksResult = await workflow.execute_activity_method(
                ScannerActivities.scanner_books,
                BooksRequest(items=[BookKey(venue=v, symbol=s) for v, s in sorted(keys)], depth=p.book_depth),
                summary=f"books x{len(keys)}", **READ_OPTS,
            )
            calls += books.api_calls
            by_key = {(b.venue, b.symbol): b for b in books.books}
            for b in books.books:
                if b.error:
                    self._health(b.venue, False, b.error, now)
            for e in picked:
                lb, sb = by_key.get((e.long_venue, e.symbol)), by_key.get((e.short_venue, e.symbol))
                bad = [b for b in (lb, sb) if b is None or b.error]
                if bad:
                    reject(e, VENUE_UNHEALTHY, f"book unavailable: {bad[0].error if bad[0] else 'missing'}")
                    continue
                assert lb is not None and sb is not None
                full = apply_books(e, (lb.bids, lb.asks), (sb.bids, sb.asks), p.edge_params())
                if full.reason is not None:
                    reject(full, full.reason, full.detail)
                    continue
                gate = self._gate(full, book, self._now_ms())  # signals may have arrived meanwhile
                if gate is not None:
                    reject(full, *gate)
                    continue
                row = CandidateRow(symbol=e.symbol, long_venue=e.long_venue, short_venue=e.short_venue, edge=full)
                rows.append(row)
                await self._start(full, row, book)

        # accepted candidates not looked at this cycle, then the best rejected ones
        shown = {(r.symbol, r.long_venue, r.short_venue) for r in rows}
        for e in scan.accepted:
            if (e.symbol, e.long_venue, e.short_venue) not in shown and len(rows) < p.status_rows:
                rows.append(CandidateRow(symbol=e.symbol, long_venue=e.long_venue, short_venue=e.short_venue,
                                         edge=e, detail="ranked below top_n_books"))
        for e in scan.rejected:
            if len(rows) >= p.status_rows:
                break
            rows.append(CandidateRow(symbol=e.symbol, long_venue=e.long_venue, short_venue=e.short_venue,
                                     edge=e, reason=e.reason, detail=e.detail))
        self.s.cycles += 1
        self.s.last_cycle_at = started_at.isoformat(timespec="milliseconds")
        self.s.last_cycle_ms = int((workflow.now() - started_at).total_seconds() * 1000)
        self.s.api_calls_last_cycle = calls
        self.s.api_calls_total += calls
        self.s.pairs_last_cycle = scan.pairs
        self.s.candidates = rows[: p.status_rows]
        self.s.counts_by_reason = counts
        self.s.last_error = None

    async def _start(self, e: Edge, row: CandidateRow, book: RiskBook) -> None:
        req = StartTradeRequest(
            symbol=e.symbol, long_venue=e.long_venue, short_venue=e.short_venue,
            notional_usd=self.p.notional_usd, stamp=f"s{e.target_settlement_ms}",
            summary=f"net {e.net_bps:.2f} bps / {e.net_usd:.2f} USD over the horizon, {e.style}",
            style=e.style,
        )
        res: StartTradeResult = await workflow.execute_activity_method(
            ScannerActivities.scanner_start_trade, req, summary=f"start {e.symbol}", **START_OPTS,
        )
        row.trade_id = res.workflow_id
        if res.outcome == "refused":
            row.reason, row.detail = "SYMBOL_BUSY", res.detail
            return
        row.detail = res.outcome
        trade = StartedTrade(
            trade_id=res.workflow_id, symbol=e.symbol, long_venue=e.long_venue, short_venue=e.short_venue,
            notional_usd=self.p.notional_usd, started_ms=self._now_ms(), net_bps=e.net_bps, outcome=res.outcome,
            style=e.style,
        )
        book.add(OpenTrade(trade.trade_id, e.symbol, e.long_venue, e.short_venue, self.p.notional_usd))
        self._recent.append(trade)
        if res.outcome == "started":
            self.s.trades_started_total += 1
        self.s.trades_started.append(trade)
        del self.s.trades_started[:-MAX_STARTED_SHOWN]

    # ------------------------------------------------------------------ gates
    def _gate(self, e: Edge, book: RiskBook, now: int) -> tuple[str, str] | None:
        if self.s.halted:
            return HALTED, self.s.halt_reason or "halted"
        if self.s.paused:
            return HALTED, "scanner paused"
        return check_gates(e.symbol, e.long_venue, e.short_venue, self.p.notional_usd, book,
                           self.p.risk_limits(), now)

    async def _incidents(self) -> tuple[str, str] | None:
        """INCIDENT_OPEN while the ledger holds an unresolved reconciliation incident (activity
        ``open_incidents``). Fails closed: an unreadable count opens nothing either."""
        try:
            n: int = await workflow.execute_activity_method(
                LedgerActivities.open_incidents, summary="open incidents",
                start_to_close_timeout=timedelta(seconds=30),  # the first call may migrate the ledger
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=2), maximum_attempts=3),
            )
        except ActivityError as exc:
            return INCIDENT_OPEN, f"incident count unavailable: {_err(exc)}"
        self.s.open_incidents = n
        if n > 0:
            return INCIDENT_OPEN, f"{n} open incident(s); `hedgeflow reconcile` to review"
        return None

    async def _risk_book(self, now: int) -> RiskBook:
        day_start = now - now % DAY_MS
        view: RiskBookView = await workflow.execute_activity_method(
            ScannerActivities.scanner_risk_book,
            RiskBookRequest(day_start_ms=day_start, cooldown_since_ms=now - int(self.p.symbol_cooldown_s * 1000),
                            emergency_since_ms=self.s.emergency_since_ms,
                            fallback_notional_usd=self.p.notional_usd),
            summary="risk book", **READ_OPTS,
        )
        book = RiskBook(
            open_trades=list(view.open_trades),
            trades_today=view.trades_today,
            realized_today_usd=view.realized_today_usd,
            consecutive_emergency=view.consecutive_emergency,
            last_close_ms=dict(view.last_close_ms),
        )
        # trades this scanner started moments ago may not be visible yet
        known = set(view.known_ids)
        self._recent = [t for t in self._recent if now - t.started_ms < RECENT_START_MS]
        for t in self._recent:
            if t.trade_id not in known:
                book.add(OpenTrade(t.trade_id, t.symbol, t.long_venue, t.short_venue, t.notional_usd))
        return book

    # ------------------------------------------------------------------ venue health
    def _venues_to_scan(self, now: int) -> tuple[list[str], list[str]]:
        healthy, unhealthy = [], []
        for v in self.p.venues:
            h = self.s.venues.setdefault(v, VenueHealth())
            if h.unhealthy_until_ms is not None and now < h.unhealthy_until_ms:
                unhealthy.append(v)
            else:
                healthy.append(v)  # healthy, or its cooldown is over: probe it again
        return healthy, unhealthy

    def _health(self, venue: str, ok: bool, error: str | None, now: int) -> None:
        h = self.s.venues.setdefault(venue, VenueHealth())
        if ok:
            h.failures, h.unhealthy_until_ms, h.last_ok_ms = 0, None, now
            return
        h.failures += 1
        h.last_error = error
        if h.failures >= self.p.unhealthy_after_failures:
            h.unhealthy_until_ms = now + int(self.p.unhealthy_cooldown_s * 1000)

    # ------------------------------------------------------------------ halt
    async def _close_all(self, reason: str) -> None:
        also = [t.trade_id for t in self._recent]
        try:
            closed: list[str] = await workflow.execute_activity_method(
                ScannerActivities.scanner_close_all, CloseAllRequest(reason=reason, also=also),
                summary="close all trades", start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=5), maximum_attempts=10),
            )
        except ActivityError as exc:
            self.s.last_error = f"close-all failed: {_err(exc)}"
            return
        finally:
            self._close_all_pending = None
        self.s.closed_on_halt = closed
        self.s.close_all_done_ms = self._now_ms()

    # ------------------------------------------------------------------ helpers
    def _memo(self) -> None:
        workflow.upsert_memo({"halted": self.s.halted, "halt_reason": self.s.halt_reason or "",
                              "paused": self.s.paused})

    def _now_ms(self) -> int:
        return int(workflow.now().timestamp() * 1000)
