"""Scanner activities: the funding snapshot (ONE bulk call per venue, in parallel), books for
the few best candidates, the risk book from visibility, and starting / closing trades.

The I/O halves (:func:`scan_venues`, :func:`fetch_books`) are plain async functions so the
benchmark can run a cycle without Temporal; the arithmetic is :mod:`domain.edge`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus

from activities.common import heartbeating
from config import Settings
from domain.edge import LegQuote, Level, rank_pairs
from domain.risk import OpenTrade
from venues.errors import VenueError
from venues.models import FundingInfo
from venues.pool import GatewayPool
from workflows.models import CloseRequest, TradeStatus
from workflows.scanner_models import (
    BookOut,
    BooksRequest,
    BooksResult,
    CloseAllRequest,
    RiskBookRequest,
    RiskBookView,
    ScannerParams,
    ScanRequest,
    ScanResult,
    StartTradeRequest,
    StartTradeResult,
    VenueScan,
)
from config.names import SA_LONG, SA_SHORT, SA_SYMBOL

log = logging.getLogger("hedgeflow.scanner")


def _short_error(exc: BaseException) -> str:
    if isinstance(exc, VenueError):
        return f"{exc.type_name}: {str(exc)[:200]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


# ---------------------------------------------------------------------------- plain I/O
async def scan_venues(
    pool: GatewayPool, params: ScannerParams, venues: list[str], unhealthy: list[str] = ()
) -> ScanResult:
    """One ``funding_rates()`` per venue, in parallel; then rank every pair (pure)."""

    async def one(v: str) -> tuple[VenueScan, dict[str, FundingInfo]]:
        t0 = time.monotonic()
        try:
            gw = pool.get(v)
            rates = await gw.funding_rates()
        except Exception as exc:  # noqa: BLE001 - one venue failing must not hide the others
            ms = int((time.monotonic() - t0) * 1000)
            return VenueScan(venue=v, ok=False, error=_short_error(exc), ms=ms), {}
        ms = int((time.monotonic() - t0) * 1000)
        return VenueScan(venue=v, ok=True, symbols=len(rates), ms=ms), rates

    results = await asyncio.gather(*(one(v) for v in venues))
    now_ms = int(time.time() * 1000)
    hour_ms = params.hour_ms
    quotes: dict[str, list[LegQuote]] = {}
    for scan, rates in results:
        fee = params.taker_fees.get(scan.venue, Decimal("0.0005"))
        for sym, fi in rates.items():
            if params.symbols and sym not in params.symbols:
                continue
            quotes.setdefault(sym, []).append(
                LegQuote(
                    venue=scan.venue,
                    rate=fi.rate,
                    interval_ms=max(1, int(fi.interval_hours * hour_ms)),
                    next_funding_ms=fi.next_funding_ms,
                    mark_price=fi.mark_price,
                    timestamp_ms=fi.timestamp_ms,
                    taker_fee=fee,
                )
            )
    failed = tuple(s.venue for s, _ in results if not s.ok) + tuple(unhealthy)
    accepted, rejected, counts = rank_pairs(quotes, params.edge_params(), now_ms, unhealthy=failed)
    pairs = sum(len(q) * (len(q) - 1) for q in quotes.values())
    return ScanResult(
        fetched_ms=now_ms,
        venues=[s for s, _ in results],
        api_calls=len(venues),
        pairs=pairs,
        accepted=accepted[: params.max_candidates],
        rejected=rejected[: params.status_rows],
        counts=counts,
    )


async def fetch_books(pool: GatewayPool, req: BooksRequest) -> BooksResult:
    async def one(venue: str, symbol: str) -> BookOut:
        try:
            book = await pool.get(venue).order_book(symbol, req.depth)
        except Exception as exc:  # noqa: BLE001
            return BookOut(venue=venue, symbol=symbol, error=_short_error(exc))
        return BookOut(
            venue=venue,
            symbol=symbol,
            bids=[Level(lv.price, lv.qty) for lv in book.bids],
            asks=[Level(lv.price, lv.qty) for lv in book.asks],
        )

    books = await asyncio.gather(*(one(k.venue, k.symbol) for k in req.items))
    return BooksResult(books=list(books), api_calls=len(req.items))



def _ms(dt: datetime | None) -> int:
    return int(dt.timestamp() * 1000) if dt else 0


async def read_risk_book(
    client: Client, req: RiskBookRequest, cache: dict[str, TradeStatus], task_queue: str
) -> RiskBookView:
    """Open trades (visibility + each trade's ``status`` query for its notional) and today's
    outcomes (results of trades closed since the day / cooldown window started)."""
    open_trades: list[OpenTrade] = []
    known: list[str] = []
    base = f"WorkflowType = 'TradeWorkflow' AND TaskQueue = '{task_queue}'"
    q_open = f"{base} AND ExecutionStatus = 'Running'"
    running = [w async for w in client.list_workflows(q_open)]

    async def notional(wf_id: str) -> Decimal | None:
        try:
            st = await client.get_workflow_handle(wf_id).query("status", result_type=TradeStatus)
            return st.notional_usd
        except Exception:  # noqa: BLE001 - unknown: count it with the scanner's notional
            return None

    notionals = await asyncio.gather(*(notional(w.id) for w in running))
    for w, n in zip(running, notionals, strict=True):
        sa = w.typed_search_attributes
        known.append(w.id)
        open_trades.append(
            OpenTrade(
                trade_id=w.id,
                symbol=sa.get(SA_SYMBOL) or "",
                long_venue=sa.get(SA_LONG) or "",
                short_venue=sa.get(SA_SHORT) or "",
                notional_usd=n if n is not None else Decimal(0),
            )
        )
    since = min(req.day_start_ms, req.cooldown_since_ms, req.emergency_since_ms or req.day_start_ms)
    since_iso = datetime.fromtimestamp(since / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    q_closed = f"{base} AND ExecutionStatus != 'Running' AND CloseTime >= '{since_iso}'"
    closed = [w async for w in client.list_workflows(q_closed)]
    day_iso = datetime.fromtimestamp(req.day_start_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    trades_today = 0
    async for _ in client.list_workflows(f"{base} AND StartTime >= '{day_iso}'"):
        trades_today += 1

    async def result(wf_id: str, run_id: str | None) -> TradeStatus | None:
        key = f"{wf_id}/{run_id}"
        if key in cache:
            return cache[key]
        try:
            st = await client.get_workflow_handle(wf_id, run_id=run_id, result_type=TradeStatus).result()
        except Exception:  # noqa: BLE001 - failed/terminated trades have no status result
            st = None
        if st is not None:
            cache[key] = st
        return st

    outcomes = await asyncio.gather(*(result(w.id, w.run_id) for w in closed))
    realized = Decimal(0)
    last_close: dict[str, int] = {}
    by_time = sorted(zip(closed, outcomes, strict=True), key=lambda x: _ms(x[0].close_time))
    consecutive = 0
    for w, st in by_time:
        known.append(w.id)
        close_ms = _ms(w.close_time)
        sym = w.typed_search_attributes.get(SA_SYMBOL) or ""
        if close_ms >= req.cooldown_since_ms and sym:
            last_close[sym] = max(last_close.get(sym, 0), close_ms)
        if st is not None and close_ms >= req.day_start_ms and st.realized_pnl_usd is not None:
            realized += st.realized_pnl_usd
        if close_ms >= req.emergency_since_ms:
            emergency = st is None or st.emergency  # a trade that failed outright counts too
            consecutive = consecutive + 1 if emergency else 0
    if len(cache) > 5000:
        cache.clear()
    return RiskBookView(
        open_trades=open_trades,
        trades_today=trades_today,
        realized_today_usd=realized,
        consecutive_emergency=consecutive,
        last_close_ms=last_close,
        known_ids=known,
    )


# ---------------------------------------------------------------------------- activities
class ScannerActivities:
    def __init__(self, settings: Settings, pool: GatewayPool) -> None:
        self.settings = settings
        self.pool = pool
        self._results: dict[str, TradeStatus] = {}

    @activity.defn(name="scanner_funding")
    async def scanner_funding(self, req: ScanRequest) -> ScanResult:
        async with heartbeating():
            return await scan_venues(self.pool, req.params, req.venues, req.unhealthy)

    @activity.defn(name="scanner_books")
    async def scanner_books(self, req: BooksRequest) -> BooksResult:
        async with heartbeating():
            return await fetch_books(self.pool, req)

    @activity.defn(name="scanner_risk_book")
    async def scanner_risk_book(self, req: RiskBookRequest) -> RiskBookView:
        async with heartbeating():
            return await read_risk_book(activity.client(), req, self._results, activity.info().task_queue)

    @activity.defn(name="scanner_start_trade")
    async def scanner_start_trade(self, req: StartTradeRequest) -> StartTradeResult:
        """Start a TradeWorkflow with the deterministic id of this opportunity. A retry, a
        replayed or re-run cycle finds the workflow already there and reports ``existing``;
        the id reuse policy REJECT_DUPLICATE keeps a closed one from being started again."""
        from temporalio.exceptions import WorkflowAlreadyStartedError
        from temporalio.service import RPCError, RPCStatusCode

        from domain.ids import trade_workflow_id
        from control.trades import TradeRefused, open_trade

        client = activity.client()
        wf_id = trade_workflow_id(req.symbol, req.long_venue, req.short_venue, req.stamp)
        try:
            await client.get_workflow_handle(wf_id).describe()
            return StartTradeResult(workflow_id=wf_id, outcome="existing", detail="already started")
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        try:
            started = await open_trade(
                client, self.settings, req.symbol, req.long_venue, req.short_venue, req.notional_usd,
                stamp=req.stamp, opened_by="scanner", check_halt=False,
            )
        except WorkflowAlreadyStartedError:
            return StartTradeResult(workflow_id=wf_id, outcome="existing", detail="already started")
        except TradeRefused as exc:
            return StartTradeResult(workflow_id=wf_id, outcome="refused", detail=str(exc))
        log.info("scanner started %s (%s)", started, req.summary)
        return StartTradeResult(workflow_id=started, outcome="started", detail=req.summary)

    @activity.defn(name="scanner_close_all")
    async def scanner_close_all(self, req: CloseAllRequest) -> list[str]:
        return await close_all_trades(activity.client(), req.reason, activity.info().task_queue, req.also)

    def all(self) -> list:
        return [
            self.scanner_funding,
            self.scanner_books,
            self.scanner_risk_book,
            self.scanner_start_trade,
            self.scanner_close_all,
        ]


async def close_all_trades(client: Client, reason: str, task_queue: str, also: list[str] = ()) -> list[str]:
    """Signal ``close`` to every running TradeWorkflow of ``task_queue`` (and to ``also``);
    return the ids signalled."""
    ids = [w.id async for w in client.list_workflows(
        f"WorkflowType = 'TradeWorkflow' AND ExecutionStatus = 'Running' AND TaskQueue = '{task_queue}'")]
    for extra in also:
        if extra not in ids:
            ids.append(extra)
    closed = []
    for wf_id in ids:
        handle = client.get_workflow_handle(wf_id)
        try:
            desc = await handle.describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                continue
            await handle.signal("close", CloseRequest(reason=reason))
            closed.append(wf_id)
        except Exception as exc:  # noqa: BLE001 - keep closing the others
            log.warning("close %s: %s", wf_id, exc)
    return closed
