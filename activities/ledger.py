"""Ledger activities: the only writers of the ledger. Each write is an upsert keyed by the
venue's identifiers (client order id, fill id, income id) in one transaction, so a retried
activity writes nothing twice; event metrics are counted only when the trade row changes state.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from config import Settings
from domain.lifecycle import TERMINAL, TradeState
from messages.trade import LeaseRelease, LeaseRequest, LeaseResult, TradeRecord, TradeStatus
from telemetry import metrics as m
from venues.errors import VenueError
from venues.models import OrderResult, OrderStatus

if TYPE_CHECKING:  # the worker's pool (ccxt, the gateway) and the ledger (SQLAlchemy): not imported by a
    from ledger import Ledger  # client that only names these activities (the CLI starting a trade)
    from venues.pool import GatewayPool

log = logging.getLogger("hedgeflow.ledger")
ZERO = Decimal(0)


def _ms(iso: str | None) -> int | None:
    return int(datetime.fromisoformat(iso).timestamp() * 1000) if iso else None


#: an order in one of these states changes no more: once in the ledger it is not read again
FINAL_ORDER = frozenset(str(s) for s in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED,
                                         OrderStatus.REJECTED))


async def _none() -> list:
    return []


def trade_row(st: TradeStatus, opened_by: str) -> dict[str, Any]:
    price = None
    if all(leg.price_pnl is not None for leg in st.legs):
        price = sum((leg.price_pnl for leg in st.legs), ZERO)  # type: ignore[misc]
    return dict(
        trade_id=st.trade_id, symbol=st.symbol, long_venue=st.long_venue, short_venue=st.short_venue,
        notional_usd=st.notional_usd, target_qty=st.target_qty, state=st.state, opened_by=opened_by,
        opened_at=st.opened_at, hedged_at=st.hedged_at, closed_at=st.closed_at, open_ms=st.open_ms,
        close_reason=st.close_reason, abort_reason=st.abort_reason, emergency=st.emergency,
        hedge_gap=st.hedge_gap, orphan_exposure_ms=st.orphan_exposure_ms, price_pnl_usd=price,
        fees_usd=st.fees_usd, funding_usd=st.funding_collected_usd, realized_pnl_usd=st.realized_pnl_usd,
    )


def order_row(o: OrderResult, trade_id: str | None, leg: str | None) -> dict[str, Any]:
    return dict(
        venue=o.venue, client_order_id=o.client_order_id, venue_order_id=o.venue_order_id or None,
        trade_id=trade_id, leg=leg, symbol=o.symbol, side=str(o.side), reduce_only=o.reduce_only,
        status=str(o.status), requested_qty=o.requested_qty, filled_qty=o.filled_qty, avg_price=o.avg_price,
        fee=o.fee, timestamp_ms=o.timestamp_ms,
    )


class LedgerActivities:
    def __init__(self, settings: Settings, pool: GatewayPool) -> None:
        self.settings = settings
        self.pool = pool
        self._ledger: Ledger | None = None

    async def ledger(self) -> Ledger:
        if self._ledger is None:
            from ledger import Ledger

            self._ledger = await asyncio.to_thread(Ledger.for_settings, self.settings)
        return self._ledger

    async def _venue_facts(
        self, st: TradeStatus, *, with_funding: bool = True, final: dict[tuple[str, str], str | None] | None = None,
    ) -> tuple[list[OrderResult], list[dict], list[dict], list[dict]]:
        """The trade's orders, fills and funding from the venues' own records. ``final``:
        (venue, client id) → venue order id of orders the ledger already holds in a final state;
        those are not read again (a final order does not change), only their fills are matched."""
        final = final or {}
        orders: list[OrderResult] = []
        order_rows: list[dict] = []
        fill_rows: list[dict] = []
        funding_rows: list[dict] = []
        since = (st.open_ms or 0) - 1000
        until = (_ms(st.closed_at) or 0) + 1000 if st.closed_at else None
        for name, leg in zip(("long", "short"), st.legs, strict=True):
            if not leg.client_order_ids:
                continue  # nothing was sent to this venue (e.g. aborted before placing)
            gw = self.pool.get(leg.venue)
            done = {cid: final[(leg.venue, cid)] for cid in leg.client_order_ids if (leg.venue, cid) in final}
            found = await asyncio.gather(*(gw.get_order(st.symbol, cid) for cid in leg.client_order_ids
                                           if cid not in done))
            mine = [o for o in found if o is not None]
            orders += mine
            order_rows += [order_row(o, st.trade_id, name) for o in mine]
            ids = {o.venue_order_id for o in mine} | {v for v in done.values() if v} | set(leg.venue_order_ids)
            fills, income = await asyncio.gather(
                gw.fills(st.symbol, since, order_ids=sorted(ids)),
                # income is the heaviest read (Binance weight 30): none has settled at the open; shared
                # with every trade on the venue (venues/shared_reads.py) unless tuning.shared_reads is off
                (self.pool.shared(leg.venue).funding_income(st.open_ms or 0, st.symbol) if self.pool.shared_reads
                 else gw.funding_income(st.open_ms or 0, st.symbol)) if with_funding else _none(),
            )
            fills = [f for f in fills if f.venue_order_id in ids]
            fill_rows += [
                dict(venue=leg.venue, venue_trade_id=f.trade_id, venue_order_id=f.venue_order_id, trade_id=st.trade_id,
                     symbol=f.symbol, side=str(f.side), qty=f.qty, price=f.price, fee=f.fee,
                     realized_pnl=f.realized_pnl, timestamp_ms=f.timestamp_ms)
                for f in fills
            ]
            # funding up to the close: income carries the venue's clock, closed_at ours (a venue's
            # clock may run ahead), so the bound is also the leg's last fill on the venue's clock
            end = until
            if until is not None and fills:
                end = max(until, max(f.timestamp_ms for f in fills) + 1000)
            funding_rows += [
                dict(venue=leg.venue, income_id=p.income_id, trade_id=st.trade_id, symbol=p.symbol,
                     amount=p.amount, timestamp_ms=p.timestamp_ms)
                for p in income if end is None or p.timestamp_ms <= end
            ]
        return orders, order_rows, fill_rows, funding_rows

    @activity.defn(name="record_trade")
    async def record_trade(self, rec: TradeRecord) -> None:
        """Upsert the trade, its orders, fills and funding payments (from the venues' own
        records) in one transaction; count the event metrics once."""
        st = rec.status
        ledger = await self.ledger()
        final = {(o.venue, o.client_order_id): o.venue_order_id
                 for o in await asyncio.to_thread(ledger.orders, st.trade_id) if o.status in FINAL_ORDER}
        try:
            orders, order_rows, fill_rows, funding_rows = await self._venue_facts(
                st, with_funding=rec.event != "opened", final=final
            )
        except VenueError as exc:
            raise ApplicationError(f"{exc.type_name} on {exc.venue}: {exc}", type=exc.type_name) from None
        row = trade_row(st, rec.opened_by)
        if rec.event == "opened" and st.state == TradeState.HEDGE_CHECK:
            row["state"] = TradeState.HOLDING.value  # recorded as the hedge check passes, on the way into holding
        prev = await asyncio.to_thread(ledger.record_trade_bundle, row, order_rows, fill_rows, funding_rows)
        if prev != row["state"]:
            self._count(rec, prev, orders)
        await asyncio.to_thread(m.refresh_from_ledger, ledger)
        log.info("ledger: trade %s %s (%d orders, %d fills, %d funding)", st.trade_id, rec.event,
                 len(order_rows), len(fill_rows), len(funding_rows))

    @staticmethod
    def _count(rec: TradeRecord, prev: str | None, orders: list[OrderResult]) -> None:
        st = rec.status
        if rec.event == "opened":
            m.TRADES_OPENED.inc()
            if st.hedge_gap is not None:
                m.HEDGE_GAP.observe(float(st.hedge_gap))
            if st.opened_at and st.hedged_at:
                m.OPEN_TO_HEDGED.observe(max(0.0, (_ms(st.hedged_at) - _ms(st.opened_at)) / 1000))  # type: ignore[operator]
            first = {}
            for o in sorted(orders, key=lambda o: o.timestamp_ms):
                if not o.reduce_only and o.filled_qty > 0:
                    first.setdefault(o.venue, o.timestamp_ms)
            if st.long_venue in first and st.short_venue in first:
                m.LEG_SKEW.observe(abs(first[st.long_venue] - first[st.short_venue]) / 1000)
        elif rec.event == "closed":
            m.TRADES_CLOSED.inc()
            if st.emergency and prev not in TERMINAL:
                m.EMERGENCY_CLOSES.inc()
        elif rec.event == "aborted":
            m.TRADES_ABORTED.labels((st.abort_reason or "unknown").split(":")[0]).inc()
            if st.orphan_exposure_ms:
                m.ORPHAN_EXPOSURE.observe(st.orphan_exposure_ms / 1000)
            if st.emergency:
                m.EMERGENCY_CLOSES.inc()

    @activity.defn(name="open_incidents")
    async def open_incidents(self) -> int:
        """Number of unresolved incidents: the scanner opens nothing while it is above zero."""
        ledger = await self.ledger()
        return await asyncio.to_thread(ledger.open_incident_count)

    @activity.defn(name="acquire_leases")
    async def acquire_leases(self, req: LeaseRequest) -> LeaseResult:
        """Take the (venue, symbol) leases of a trade in one transaction, all or none; the same
        trade taking them again succeeds (retries). A ledger that cannot be reached raises:
        the trade opens nothing (fail closed)."""
        ledger = await self.ledger()
        res = await asyncio.to_thread(
            ledger.acquire_leases, req.trade_id, [(p.venue, p.symbol) for p in req.pairs]
        )
        if not res.acquired:
            log.info("ledger: leases for %s refused, held by %s", req.trade_id, res.held_by)
        return LeaseResult(acquired=res.acquired, held_by=res.held_by)

    @activity.defn(name="release_leases")
    async def release_leases(self, req: LeaseRelease) -> int:
        """Drop every lease the trade holds (idempotent); the number dropped."""
        ledger = await self.ledger()
        return await asyncio.to_thread(ledger.release_leases, req.trade_id)

    def all(self) -> list:
        return [self.record_trade, self.open_incidents, self.acquire_leases, self.release_leases]
