"""Faked trade activities for fast in-process workflow tests: the same activity *names* as
``activities.trade`` / ``activities.ledger``, backed by a tiny in-memory venue per name.

A unit-test double only: it exists to drive one workflow branch in seconds. The real-process
tests (simulators over HTTP, real ccxt) prove the same behaviour end to end.

Each :class:`FakeVenue` keeps positions, orders by client id (so a look-up finds an order whose
answer was lost), rounds quantities down to its own step as a venue does, and has knobs for the
faults a branch needs: ``refuse`` (every new opening order rejected), ``lose_answer`` (the next
order executes but its answer is lost), ``partial`` (fill ratio of opening orders), ``down``
(reads and orders fail), ``orders_down`` (reads answer, orders fail), ``down_after_answer`` (down right after its next order), ``down_after_reads`` (after N reads), ``slow_s`` /
``reduce_slow_s`` / ``check_slow_s`` (placing / the pre-trade read take this long), ``liq_price`` (reported
liquidation price until a reduce-only order fills, or always with ``liq_sticky``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import heartbeating
from messages.execution import MakerUnitOutcome, MakerUnitRequest
from messages.monitor import MonitorReadAnswer, MonitorReadRequest, VenueRead
from messages.trade import (
    Alert,
    FillsRequest,
    IncomeRequest,
    LeaseRelease,
    LeaseRequest,
    LeaseResult,
    MarketSnapshot,
    OrderLookup,
    PlaceOrderRequest,
    PlaceOutcome,
    PositionsRequest,
    SnapshotRequest,
    StepCloseOutcome,
    StepCloseRequest,
    TradeRecord,
    VenueCheck,
    VenueCheckRequest,
    WholeCloseOutcome,
)
from venues.models import (
    Fill,
    FundingInfo,
    FundingPayment,
    MarketInfo,
    OrderResult,
    OrderStatus,
    Position,
    Side,
)

D = Decimal


@dataclass
class FakeVenue:
    name: str
    step: Decimal = D("0.001")
    price: Decimal = D("100")
    refuse: bool = False
    lose_answer: int = 0
    partial: Decimal = D("1")
    close_partial: Decimal = D("1")  # fill ratio of reduce-only orders
    down: bool = False
    reads: int = 0  # position reads asked of this venue
    orders_down: bool = False  # reads answer, every order fails (the order path is broken)
    slow_s: float = 0.0
    reduce_slow_s: float = 0.0  # reduce-only orders take this long (a trim or a close in flight)
    check_slow_s: float = 0.0  # the pre-trade read takes this long
    read_slow_s: float = 0.0  # every position read takes this long (a quick probe times out)
    down_after_answer: bool = False  # goes down right after answering its next order
    down_after_reads: int | None = None  # goes down right after answering this many more position reads
    #: the next opening's answer is lost and the order is invisible (unknown to look-ups, nothing
    #: executed) until this many more position reads of the venue: then it executes (late)
    land_after_reads: int = 0
    landing: PlaceOrderRequest | None = None
    close_errors: int = 0  # the next N reduce-only orders fail (a flaky venue: 5xx, nothing executed)
    exec_late_ms: int = 0  # orders report being filled this long after the venue accepted them
    log: list[str] = field(default_factory=list)  # "read", "fail <cid>", "order <cid>", in order
    liq_price: Decimal | None = None
    liq_sticky: bool = False  # keep reporting liq_price after a reduction (isolated margin: it does not move)
    position: Decimal = D(0)
    orders: dict[str, OrderResult] = field(default_factory=dict)
    executions: dict[str, int] = field(default_factory=dict)  # client id → times executed

    def check(self) -> None:
        if self.down:
            raise ApplicationError(f"{self.name} is down", type="VenueUnavailable", non_retryable=True)

    def execute(self, req: PlaceOrderRequest) -> OrderResult:
        if req.client_order_id in self.orders:  # ids are unique: never twice
            return self.orders[req.client_order_id]
        self.log.append(f"order {req.client_order_id}")
        qty = (req.qty / self.step).to_integral_value(ROUND_DOWN) * self.step
        signed = 1 if req.side == Side.BUY else -1
        if req.reduce_only:
            qty = min(qty, abs(self.position))
            if self.position * signed >= 0:
                qty = D(0)
            qty = max(min(qty, self.step), (qty * self.close_partial / self.step).to_integral_value(ROUND_DOWN) * self.step)
        elif self.refuse:
            raise ApplicationError(f"{self.name} rejects the order", type="OrderRejected", non_retryable=True)
        else:
            qty = (qty * self.partial / self.step).to_integral_value(ROUND_DOWN) * self.step
        self.position += signed * qty
        if req.reduce_only and qty > 0 and not self.liq_sticky:
            self.liq_price = None
        self.executions[req.client_order_id] = self.executions.get(req.client_order_id, 0) + 1
        order = OrderResult(
            venue=self.name, symbol=req.symbol, client_order_id=req.client_order_id,
            venue_order_id=f"{self.name}-{len(self.orders) + 1}", side=req.side, reduce_only=req.reduce_only,
            status=OrderStatus.FILLED if qty == req.qty else OrderStatus.EXPIRED, requested_qty=req.qty,
            filled_qty=qty, avg_price=self.price, fee=D(0), timestamp_ms=self.exec_late_ms,
            created_ms=0 if self.exec_late_ms else None)
        self.orders[req.client_order_id] = order
        return order


async def slow(seconds: float) -> None:
    """A slow venue call, heartbeating as the real activities do (``activities.common``)."""
    async with heartbeating():
        await asyncio.sleep(seconds)


class FakeActivities:
    def __init__(self, *venues: FakeVenue) -> None:
        self.v = {x.name: x for x in venues}
        self.alerts: list[Alert] = []
        self.records: list[str] = []
        self.imbalance: list[tuple[str, Decimal]] = []  # (venue, long + short) after every execution
        self.leases: dict[tuple[str, str], str] = {}
        self.final_record_failures = 0  # the next N final ledger writes (closed, aborted) fail
        self.calls: list[tuple[str, str]] = []  # (activity, client id) of every order activity, in order
        self.even_in_step = False  # place_orders trims the longer of two unequal legs itself (v9, activities/lone_leg.py)

    async def _place(self, req: PlaceOrderRequest) -> OrderResult:
        v = self.v[req.venue]
        if delay := v.slow_s + (v.reduce_slow_s if req.reduce_only else 0.0):
            try:
                await slow(delay)
            except asyncio.CancelledError:
                # the request is on its way (a slow answer, not a slow send): the venue executes
                # it, the activity's cancel loses only the answer
                if not (v.down or v.orders_down or v.refuse) and req.client_order_id not in v.orders:
                    v.execute(req)
                raise
        v.check()
        if v.orders_down:
            raise ApplicationError(f"{v.name} order path down", type="VenueUnavailable", non_retryable=True)
        if req.lookup_first and req.client_order_id in v.orders:
            return v.orders[req.client_order_id]
        if v.land_after_reads and not req.reduce_only and v.landing is None:
            v.landing = req  # on its way: it executes after ``land_after_reads`` reads
            raise ApplicationError("no answer", type="VenueTimeout")
        if v.close_errors and req.reduce_only:
            v.close_errors -= 1
            v.log.append(f"fail {req.client_order_id}")
            raise ApplicationError(f"{v.name} answered 503", type="VenueUnavailable")
        try:
            order = v.execute(req)
            self.imbalance.append((v.name, sum((x.position for x in self.v.values()), D(0))))
        finally:
            if v.down_after_answer:  # the venue goes down right after this answer
                v.down, v.down_after_answer = True, False
        if v.lose_answer:
            v.lose_answer -= 1
            raise ApplicationError("answer lost", type="VenueTimeout")
        return order

    @activity.defn(name="check_venue")
    async def check_venue(self, req: VenueCheckRequest) -> VenueCheck:
        v = self.v[req.venue]
        if v.check_slow_s:
            await slow(v.check_slow_s)
        v.check()
        market = MarketInfo(symbol=req.symbol, venue_symbol=req.symbol, contract_size=D(1), qty_step=v.step,
                            min_qty=v.step, min_notional=D(5), price_tick=D("0.1"))
        return VenueCheck(venue=v.name, symbol=req.symbol, reachable=True, one_way=True, free_margin=D(10**6),
                          market=market, mark_price=v.price, position_qty=v.position)

    @activity.defn(name="place_orders")
    async def place_orders(self, reqs: list[PlaceOrderRequest]) -> list[PlaceOutcome]:
        async def one(req: PlaceOrderRequest) -> PlaceOutcome:
            try:
                return PlaceOutcome(order=await self._place(req))
            except ApplicationError as exc:
                return PlaceOutcome(error_type=exc.type, error=str(exc), retryable=not exc.non_retryable)
        outs = list(await asyncio.gather(*(one(r) for r in reqs)))
        filled = [o.order.filled_qty if o.order else D(0) for o in outs]
        if self.even_in_step and all(q > 0 for q in filled) and filled[0] != filled[1] and reqs[0].trim_client_order_id:
            k = 0 if filled[0] > filled[1] else 1  # v9: the longer leg trimmed in the same step
            r, side = reqs[k], Side.SELL if reqs[k].side == Side.BUY else Side.BUY
            trim = r.model_copy(update={"client_order_id": r.trim_client_order_id, "side": side, "reduce_only": True,
                                        "qty": abs(filled[0] - filled[1])})
            outs[k].trim_sent = [trim.client_order_id]
            outs[k].trim = [await self._place(trim)]
        if len(reqs) == 2 and all(r.flatten_client_order_id for r in reqs):  # lifecycle-v6 (activities/lone_leg.py)
            for i, j in ((0, 1), (1, 0)):
                mine, r = outs[i], reqs[i]
                if mine.order is not None and mine.order.filled_qty > 0 and outs[j].order is None:
                    side = Side.SELL if r.side == Side.BUY else Side.BUY
                    flat = r.model_copy(update={"client_order_id": r.flatten_client_order_id, "side": side,
                                                "qty": mine.order.filled_qty, "reduce_only": True})
                    left = mine.order.filled_qty
                    for k, cid in enumerate([r.flatten_client_order_id, *r.flatten_rest_ids]):  # rests of a thin book
                        mine.flatten_sent.append(cid)
                        try:
                            got = await self._place(flat.model_copy(update={"client_order_id": cid, "qty": left}))
                        except ApplicationError as exc:
                            mine.flatten_error = str(exc)
                            break
                        if k == 0:
                            mine.flatten = got
                        else:
                            mine.flatten_rest.append(got)
                        left -= got.filled_qty
                        if got.filled_qty <= 0 or left <= 0:
                            break
        return outs

    @activity.defn(name="close_whole")
    async def close_whole(self, req: PlaceOrderRequest) -> WholeCloseOutcome:
        """lifecycle-v9 (activities/close_whole.py): a whole close, then its rests from this activity."""
        self.calls.append(("close_whole", req.client_order_id))
        if activity.info().attempt > 1:
            req = req.model_copy(update={"lookup_first": True})
        out = WholeCloseOutcome(order=await self._place(req))
        got, left = out.order, req.qty - out.order.filled_qty
        for cid in req.rest_ids:
            if got.filled_qty <= 0 or left <= 0:
                break
            out.rest_sent_ids.append(cid)
            try:
                got = await self._place(req.model_copy(update={"client_order_id": cid, "qty": left}))
            except ApplicationError as exc:
                out.rest_error = str(exc)
                break
            out.rest.append(got)
            left -= got.filled_qty
        return out

    @activity.defn(name="close_in_step")
    async def close_in_step(self, req: StepCloseRequest) -> StepCloseOutcome:
        """lifecycle-v7 (activities/close_step.py): read the follower, close the leader, match."""
        f = self.v[req.follower.venue]
        f.reads += 1
        f.log.append("read")
        if f.down:
            return StepCloseOutcome(follower_unreachable=True, error=f"{f.name} is down")
        out = StepCloseOutcome(follower_held=abs(f.position))
        out.leader = await self._place(req.leader)
        left = max(req.leader_held - out.leader.filled_qty, D(0))
        qty = min(abs(f.position) - left, req.follower.qty)
        if out.leader.filled_qty <= 0 or qty <= 0:
            return out
        whole, retries = left == 0 and qty == abs(f.position), 0
        for cid in [req.follower.client_order_id, *req.follower_rest_ids]:
            out.follower_sent_ids.append(cid)
            try:
                got = await self._place(req.follower.model_copy(update={"qty": qty, "client_order_id": cid}))
            except ApplicationError as exc:
                out.error = str(exc)
                if not (whole and not exc.non_retryable and retries < 3):
                    return out
                retries += 1
                continue
            if out.follower is None:
                out.follower = got
            else:
                out.follower_rest.append(got)
            qty -= got.filled_qty
            if got.filled_qty <= 0 or qty <= 0:
                return out
        return out

    @activity.defn(name="maker_unit")
    async def maker_unit(self, req: MakerUnitRequest) -> MakerUnitOutcome:
        """Issue 15 (activities/maker_unit.py), in the fake's terms: the passive quote fills in two
        halves (as a maker), each hedged at once by a taker order on the active leg; an active leg
        that cannot trade gets the passive fill flattened under the first flatten id."""
        out = MakerUnitOutcome()
        half = (req.qty / 2 / req.step).to_integral_value(ROUND_DOWN) * req.step or req.qty
        for k, q in enumerate([x for x in (half, req.qty - half) if x > 0]):
            quote = PlaceOrderRequest(venue=req.passive_venue, symbol=req.symbol, side=req.passive_side, qty=q,
                                      client_order_id=req.quote_ids[k], reduce_only=req.reduce_only)
            out.sent_ids.append(quote.client_order_id)
            out.passive.append(await self._place(quote))
            out.maker_qty += out.passive[-1].filled_qty
            hedge = PlaceOrderRequest(venue=req.active_venue, symbol=req.symbol, side=req.active_side,
                                      qty=out.passive[-1].filled_qty, client_order_id=req.hedge_ids[k],
                                      reduce_only=req.reduce_only)
            out.sent_ids.append(hedge.client_order_id)
            try:
                out.active.append(await self._place(hedge))
            except ApplicationError as exc:
                if exc.non_retryable:  # refused: never on the venue
                    out.sent_ids.remove(hedge.client_order_id)
                out.active_failed = str(exc)
                held = sum((o.filled_qty for o in out.passive), D(0))
                flat = quote.model_copy(update={"client_order_id": req.flatten_ids[0], "qty": held,
                                                "side": req.passive_side.opposite, "reduce_only": True})
                out.sent_ids.append(flat.client_order_id)
                out.passive.append(await self._place(flat))
                return out
        return out

    @activity.defn(name="place_order")
    async def place_order(self, req: PlaceOrderRequest) -> OrderResult:
        self.calls.append(("place_order", req.client_order_id))
        if activity.info().attempt > 1:
            req = req.model_copy(update={"lookup_first": True})
        return await self._place(req)

    @activity.defn(name="get_order")
    async def get_order(self, req: OrderLookup) -> OrderResult | None:
        v = self.v[req.venue]
        v.check()
        return v.orders.get(req.client_order_id)

    @activity.defn(name="cancel_order")
    async def cancel_order(self, req: OrderLookup) -> OrderResult | None:
        return self.v[req.venue].orders.get(req.client_order_id)

    @activity.defn(name="get_positions")
    async def get_positions(self, req: PositionsRequest) -> list[Position]:
        v = self.v[req.venue]
        v.reads += 1
        v.log.append("read")
        if v.read_slow_s:
            await slow(v.read_slow_s)
        v.check()
        if v.down_after_reads is not None:
            v.down_after_reads -= 1
            v.down = v.down_after_reads <= 0
        if v.landing is not None and v.land_after_reads:
            v.land_after_reads -= 1
            if v.land_after_reads == 0:  # the late opening executes now, before this read answers
                v.execute(v.landing)
        if v.position == 0:
            return []
        return [Position(symbol=req.symbols[0], qty=v.position, entry_price=v.price, unrealized_pnl=D(0),
                         liquidation_price=v.liq_price)]

    @activity.defn(name="market_snapshot")
    async def market_snapshot(self, req: SnapshotRequest) -> MarketSnapshot:
        v = self.v[req.venue]
        v.check()
        fi = FundingInfo(symbol=req.symbol, rate=D("0.0001"), interval_hours=D(8), next_funding_ms=2**41,
                         mark_price=v.price, timestamp_ms=0)
        return MarketSnapshot(venue=v.name, symbol=req.symbol, funding=fi)

    @activity.defn(name="monitor_read")
    async def monitor_read(self, req: MonitorReadRequest) -> MonitorReadAnswer:
        """monitor-v1 (activities/monitor.py): each venue's position read (counted, slowed and
        failing as ``get_positions``) and snapshot, each venue's answer or error on its own."""
        async def one(venue: str) -> VenueRead:
            try:
                pos = await self.get_positions(PositionsRequest(venue=venue, symbols=[req.symbol]))
                snap = await self.market_snapshot(SnapshotRequest(venue=venue, symbol=req.symbol))
            except ApplicationError as exc:
                return VenueRead(venue=venue, error_type=exc.type, error=str(exc))
            return VenueRead(venue=venue, position=next(iter(pos), None), snapshot=snap)
        return MonitorReadAnswer(reads=list(await asyncio.gather(*(one(v) for v in req.venues))))

    @activity.defn(name="funding_income")
    async def funding_income(self, req: IncomeRequest) -> list[FundingPayment]:
        return []

    @activity.defn(name="order_fills")
    async def order_fills(self, req: FillsRequest) -> list[Fill]:
        v = self.v[req.venue]
        return [Fill(symbol=o.symbol, venue_order_id=o.venue_order_id, trade_id=o.venue_order_id, side=o.side,
                     qty=o.filled_qty, price=o.avg_price or v.price, fee=o.fee, realized_pnl=D(0), timestamp_ms=0)
                for o in v.orders.values() if o.venue_order_id in req.order_ids and o.filled_qty > 0]

    @activity.defn(name="send_alert")
    async def send_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    @activity.defn(name="acquire_leases")
    async def acquire_leases(self, req: LeaseRequest) -> LeaseResult:
        held = {f"{p.venue}|{p.symbol}": self.leases[(p.venue, p.symbol)] for p in req.pairs
                if self.leases.get((p.venue, p.symbol), req.trade_id) != req.trade_id}
        if held:
            return LeaseResult(acquired=False, held_by=held)
        self.leases.update({(p.venue, p.symbol): req.trade_id for p in req.pairs})
        return LeaseResult(acquired=True)

    @activity.defn(name="release_leases")
    async def release_leases(self, req: LeaseRelease) -> int:
        mine = [k for k, v in self.leases.items() if v == req.trade_id]
        for k in mine:
            del self.leases[k]
        return len(mine)

    @activity.defn(name="record_trade")
    async def record_trade(self, rec: TradeRecord) -> None:
        if rec.event != "opened" and self.final_record_failures > 0:
            self.final_record_failures -= 1
            raise ApplicationError("ledger database unavailable", type="OperationalError")
        self.records.append(rec.event)

    def all(self) -> list:
        return [self.check_venue, self.place_orders, self.close_whole, self.close_in_step, self.maker_unit, self.place_order, self.get_order, self.cancel_order,
                self.get_positions, self.market_snapshot, self.monitor_read, self.funding_income, self.order_fills,
                self.send_alert, self.record_trade, self.acquire_leases, self.release_leases]
