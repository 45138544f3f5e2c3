"""Scanner activities: the funding snapshot (ONE bulk call per venue, in parallel), books for
the few best candidates, the risk book from visibility, and starting / closing trades (the
last three through the injected :class:`activities.ports.TradeDirectory`).

The I/O halves (:func:`scan_venues`, :func:`fetch_books`) are plain async functions so the
benchmark can run a cycle without Temporal; the arithmetic is :mod:`domain.edge`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from decimal import Decimal

from temporalio import activity

from activities.common import heartbeating
from activities.ports import TradeDirectory
from config import Settings
from domain.edge import LegQuote, Level, rank_pairs
from messages.scanner import (
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
from messages.trade import TradeStatus
from venues.errors import VenueError
from venues.models import FundingInfo
from venues.pool import GatewayPool

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

    async def one(v: str) -> tuple[VenueScan, Mapping[str, FundingInfo]]:
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
        maker_fee = params.maker_fees.get(scan.venue)
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
                    maker_fee=maker_fee,
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



def settings_for_style(settings: Settings, style: str | None) -> Settings:
    """``settings`` with ``trade.style`` set to ``style`` (the trade's input embeds the trade
    settings: ``control.trades.params_from_settings``); unchanged when ``style`` is None."""
    if style is None or style == settings.trade.style:
        return settings
    return settings.model_copy(update={"trade": settings.trade.model_copy(update={"style": style})})


# ---------------------------------------------------------------------------- activities
class ScannerActivities:
    def __init__(self, settings: Settings, pool: GatewayPool, trades: TradeDirectory) -> None:
        self.settings = settings
        self.pool = pool
        self.trades = trades  # control.trades, injected by the worker
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
            return await self.trades.read_risk_book(activity.client(), req, self._results, activity.info().task_queue)

    @activity.defn(name="scanner_start_trade")
    async def scanner_start_trade(self, req: StartTradeRequest) -> StartTradeResult:
        """Start a TradeWorkflow with the deterministic id of this opportunity (a retry or a
        re-run cycle finds it already there: ``existing``). The trade runs in the style the
        scanner chose (``req.style``), whatever ``trade.style`` says."""
        res = await self.trades.start_for_scanner(activity.client(), settings_for_style(self.settings, req.style), req)
        if res.outcome == "started":
            log.info("scanner started %s (%s)", res.workflow_id, req.summary)
        return res

    @activity.defn(name="scanner_close_all")
    async def scanner_close_all(self, req: CloseAllRequest) -> list[str]:
        return await self.trades.close_all_trades(activity.client(), req.reason, activity.info().task_queue, req.also)

    def all(self) -> list:
        return [
            self.scanner_funding,
            self.scanner_books,
            self.scanner_risk_book,
            self.scanner_start_trade,
            self.scanner_close_all,
        ]
