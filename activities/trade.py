"""Venue activities: every exchange call a trade makes, each idempotent and retry-safe.

Activities translate the gateway's typed ``VenueError`` into ``ApplicationError`` whose
``type`` is the error class name; the non-retryable ones are raised ``non_retryable`` and
also listed in the workflow's retry policies (``NON_RETRYABLE_TYPE_NAMES``).

Placing is idempotent: the client order id comes from the workflow (deterministic from
trade, leg and step), and on any retry attempt the gateway looks the id up before sending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import close_step, close_whole, lone_leg, maker_unit, monitor
from activities.common import heartbeating, venue_call
from config import Settings
from messages.execution import MakerUnitOutcome, MakerUnitRequest
from messages.monitor import MonitorReadAnswer, MonitorReadRequest
from messages.trade import (
    Alert,
    FillsRequest,
    IncomeRequest,
    MarketSnapshot,
    OrderLookup,
    PlaceOrderRequest,
    PlaceOutcome,
    PositionsRequest,
    SnapshotRequest,
    StepCloseOutcome,
    StepCloseRequest,
    VenueCheck,
    VenueCheckRequest,
    WholeCloseOutcome,
)
from venues.errors import VenueError
from venues.models import Fill, FundingPayment, OrderResult, Position

if TYPE_CHECKING:  # the pool (ccxt, the gateway) is the worker's: code that only names these
    from venues.pool import GatewayPool  # activities (a client starting a workflow) never imports it

log = logging.getLogger("hedgeflow.activities")
SNAPSHOT_MAX_AGE_S = 1.0
#: once one opening leg has filled, the others get at most this long to answer (the trade is naked)
OPEN_COMPANION_GRACE_S = 0.3


class TradeActivities:
    """Activities bound to one worker's gateway pool (one ccxt client per venue)."""

    def __init__(self, settings: Settings, pool: GatewayPool) -> None:
        self.settings = settings
        self.pool = pool
        self._notifier = None

    @activity.defn(name="check_venue")
    async def check_venue(self, req: VenueCheckRequest) -> VenueCheck:
        gw = self.pool.get(req.venue)

        async def run() -> VenueCheck:
            markets = await gw.markets()
            market = markets.get(req.symbol)
            if market is None:
                return VenueCheck(
                    venue=req.venue, symbol=req.symbol, reachable=True, error=f"unknown symbol {req.symbol}"
                )
            reads = [
                gw.is_one_way_mode(),
                gw.balance(),
                gw.funding_rates(max_age_s=SNAPSHOT_MAX_AGE_S),
                self.pool.shared(req.venue).own_positions([req.symbol]),  # its symbol's rows parsed, no others
                gw.margin_mode(req.symbol),
            ]
            if req.leverage is not None:  # set in the same round trip; harmless if the trade aborts
                reads.append(gw.set_leverage(req.symbol, req.leverage))
            one_way, balance, rates, positions, margin_mode, *_ = await asyncio.gather(*reads)
            fi = rates.get(req.symbol)
            qty = sum((p.qty for p in positions if p.symbol == req.symbol), start=0)
            return VenueCheck(
                venue=req.venue,
                symbol=req.symbol,
                reachable=True,
                one_way=one_way,
                free_margin=balance.free,
                market=market,
                mark_price=fi.mark_price if fi else None,
                position_qty=qty,
                margin_mode=margin_mode,
            )

        return await venue_call(run())

    def _place(self, req: PlaceOrderRequest) -> Awaitable[OrderResult]:
        attempt = activity.info().attempt
        log.info(
            "place %s %s %s qty=%s cid=%s reduce_only=%s attempt=%d",
            req.venue, req.symbol, req.side, req.qty, req.client_order_id, req.reduce_only, attempt,
        )
        return self.pool.get(req.venue).place_market_order(
            req.symbol,
            req.side,
            req.qty,
            req.client_order_id,
            reduce_only=req.reduce_only,
            # a retry, or an order that may already exist: look the id up before sending
            lookup_first=req.lookup_first or attempt > 1,
            ref_price=req.ref_price,
            wait_window=not (req.resend_fresh and req.reduce_only),
            whole=req.resend_fresh and req.reduce_only,  # everything held: rounded up (a step that grew)
        )

    @activity.defn(name="place_order")
    async def place_order(self, req: PlaceOrderRequest) -> OrderResult:
        return await venue_call(self._place(req))

    @activity.defn(name="close_whole")
    async def close_whole(self, req: PlaceOrderRequest) -> WholeCloseOutcome:
        """lifecycle-v9: a whole-position reduce-only close and, when it fills only part, its rests
        at once from this activity (activities/close_whole.py)."""
        return await venue_call(close_whole.close_whole(self.pool, req, self._place, activity.info().attempt))

    @activity.defn(name="place_orders")
    async def place_orders(self, reqs: list[PlaceOrderRequest]) -> list[PlaceOutcome]:
        """Several orders sent concurrently (both legs of an open). Each leg's outcome is
        reported separately, so one leg's refusal never hides the other's fill.

        A leg with a ``deadline_s`` not answered by then is reported ``VenueTimeout``; once
        another leg has filled, it gets at most ``OPEN_COMPANION_GRACE_S`` more, because
        from that fill on the trade is naked and the filled leg must be flattened soon."""
        loop = asyncio.get_running_loop()
        filled = asyncio.Event()
        attempt = activity.info().attempt

        async def bounded(req: PlaceOrderRequest) -> OrderResult:
            task = asyncio.ensure_future(self._place(req))
            if req.deadline_s is None:
                return await task
            deadline = loop.time() + req.deadline_s
            if not filled.is_set():  # until another leg fills, or the deadline
                waiter = asyncio.ensure_future(filled.wait())
                await asyncio.wait({task, waiter}, timeout=req.deadline_s, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            if not task.done() and filled.is_set():  # on a retry the other leg is not being sent anew:
                # it waits for its look-up (a validity window); the lone leg does not wait with it (v6)
                grace = 0.0 if attempt > 1 and lone_leg.enabled(reqs) else OPEN_COMPANION_GRACE_S
                deadline = min(deadline, loop.time() + grace)
            remaining = deadline - loop.time()
            if not task.done() and remaining > 0:
                await asyncio.wait({task}, timeout=remaining)
            if not task.done():
                task.cancel()
                raise TimeoutError
            return task.result()

        async def one(req: PlaceOrderRequest) -> PlaceOutcome:
            t0 = time.monotonic()
            try:
                out = PlaceOutcome(order=await bounded(req))
                if out.order.filled_qty > 0:
                    filled.set()
            except VenueError as exc:
                out = PlaceOutcome(error_type=exc.type_name, error=str(exc), retryable=exc.retryable)
            except TimeoutError:  # no answer in time: it may still land; the workflow looks it up
                out = PlaceOutcome(error_type="VenueTimeout", error=f"no answer within {req.deadline_s} s"
                                   " (or the companion grace after the other leg filled)", retryable=True)
            out.elapsed_ms = int((time.monotonic() - t0) * 1000)
            return out

        async with heartbeating():
            if lone_leg.enabled(reqs) and attempt > 1:
                earlier = await venue_call(lone_leg.earlier_attempt(self.pool, reqs))
                if earlier is not None:
                    return earlier
            outs = list(await asyncio.gather(*(one(r) for r in reqs)))
            if lone_leg.enabled(reqs):  # lifecycle-v6: a lone filled leg is flattened in this step
                await lone_leg.resolve(self.pool, reqs, outs, attempt)
            return outs

    @activity.defn(name="close_in_step")
    async def close_in_step(self, req: StepCloseRequest) -> StepCloseOutcome:
        """lifecycle-v7: a hedged pair's leader close and the follower's match in one step
        (activities/close_step.py)."""
        return await venue_call(close_step.close_in_step(self.pool, req, activity.info().attempt))

    @activity.defn(name="maker_unit")
    async def maker_unit(self, req: MakerUnitRequest) -> MakerUnitOutcome:
        """Issue 15: one maker-first unit — post-only quotes on the passive leg, each maker fill hedged
        at once by a taker order on the active leg, under the cap (activities/maker_unit.py)."""
        return await venue_call(maker_unit.maker_unit(self.pool, req, activity.info().attempt))

    @activity.defn(name="get_order")
    async def get_order(self, req: OrderLookup) -> OrderResult | None:
        return await venue_call(self.pool.get(req.venue).get_order(req.symbol, req.client_order_id))

    @activity.defn(name="cancel_order")
    async def cancel_order(self, req: OrderLookup) -> OrderResult | None:
        return await venue_call(self.pool.get(req.venue).cancel_order(req.symbol, req.client_order_id))

    # Reads of a holding trade: shared by every trade on the venue account in this worker
    # (``tuning.shared_reads``, venues/shared_reads.py): each answer is what the trade's own read
    # gave, from a read fresh by the rule of its kind; stale is a failed read (StaleRead).
    @activity.defn(name="get_positions")
    async def get_positions(self, req: PositionsRequest) -> list[Position]:
        if self.pool.shared_reads:  # from a read begun after this call: never before the trade's own orders
            return await venue_call(self.pool.shared(req.venue).positions(req.symbols))
        return await venue_call(self.pool.get(req.venue).positions(req.symbols))

    @activity.defn(name="market_snapshot")
    async def market_snapshot(self, req: SnapshotRequest) -> MarketSnapshot:
        if self.pool.shared_reads:  # one bulk read at most read_max_age_s old serves every trade
            rates = await venue_call(self.pool.shared(req.venue).funding_rates(req.symbol))
        else:  # a snapshot up to a second old serves every trade monitoring this venue
            rates = await venue_call(self.pool.get(req.venue).funding_rates(max_age_s=SNAPSHOT_MAX_AGE_S))
        fi = rates.get(req.symbol)
        if fi is None:
            raise ApplicationError(f"no funding rate for {req.symbol} on {req.venue}", type="BadSymbol",
                                   non_retryable=True)
        return MarketSnapshot(venue=req.venue, symbol=req.symbol, funding=fi)

    @activity.defn(name="monitor_read")
    async def monitor_read(self, req: MonitorReadRequest) -> MonitorReadAnswer:
        """monitor-v1: a holding trade's tick, both venues' position and snapshot in one activity,
        each venue's answer or error on its own (activities/monitor.py)."""
        async with heartbeating():
            return await monitor.monitor_read(self.pool, req)

    @activity.defn(name="funding_income")
    async def funding_income(self, req: IncomeRequest) -> list[FundingPayment]:
        if self.pool.shared_reads:  # one read of every symbol's income per venue per settlement
            return await venue_call(self.pool.shared(req.venue).funding_income(req.since_ms, req.symbol))
        return await venue_call(self.pool.get(req.venue).funding_income(req.since_ms, req.symbol))

    @activity.defn(name="order_fills")
    async def order_fills(self, req: FillsRequest) -> list[Fill]:
        fills = await venue_call(self.pool.get(req.venue).fills(req.symbol, req.since_ms, order_ids=req.order_ids))
        wanted = set(req.order_ids)
        return [f for f in fills if f.venue_order_id in wanted]

    @activity.defn(name="send_alert")
    async def send_alert(self, alert: Alert) -> None:
        """Always logged; also POSTed to ``alerts.webhook_url`` when set (a failed delivery
        raises, so Temporal retries it)."""
        from telemetry.alerts import AlertDeliveryError, Notifier

        if self._notifier is None:
            self._notifier = Notifier.from_settings(self.settings)
        try:
            await self._notifier.send(alert.kind, alert.message, alert.severity, alert.trade_id)
        except AlertDeliveryError as exc:
            raise ApplicationError(str(exc), type="AlertDeliveryError") from None

    def all(self) -> list:
        return [
            self.check_venue,
            self.place_order,
            self.place_orders,
            self.close_whole,
            self.close_in_step,
            self.maker_unit,
            self.get_order,
            self.cancel_order,
            self.get_positions,
            self.market_snapshot,
            self.monitor_read,
            self.funding_income,
            self.order_fills,
            self.send_alert,
        ]
