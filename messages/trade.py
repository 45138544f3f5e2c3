"""Typed inputs, outputs and state of the trade workflow and its activities.

Everything here is plain data (pydantic, Decimal money) serialised by the pydantic data
converter. Nothing here holds a secret: venues are named, credentials live in the worker.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, create_model

from config.settings import HoldParams, TradeExecution
from domain.execution import LegName as LegName  # re-exported: the leg names have one definition
from domain.lifecycle import TradeState
from venues.models import FundingInfo, MarketInfo, OrderResult, Position, Side

#: every field of HoldParams, optional: what ``update_hold`` takes (derived, not retyped)
HoldParamsPatch = create_model(
    "HoldParamsPatch",
    __doc__="A partial HoldParams for the ``update_hold`` update: only the fields to change.",
    **{name: (f.annotation | None, None) for name, f in HoldParams.model_fields.items()},
)


ONE = Decimal(1)

class TradeParams(TradeExecution):
    """A trade's input: what to trade, the limits it was opened under, how it works its orders
    (``TradeExecution``) and how it holds (``HoldParams``), all from the settings."""

    trade_id: str
    symbol: str
    long_venue: str
    short_venue: str
    notional_usd: Decimal = Field(gt=0)
    leverage: int = Field(3, ge=1, le=125)
    margin_buffer: Decimal = Decimal("1.1")
    max_order_notional_usd: Decimal = Decimal("10000")
    verify_poll_s: float = 0.25
    history_limit: int = Field(1000, ge=100, description="continue-as-new past this many events")
    trim_rounds: int = Field(8, ge=1, le=20, description="trims of a partly filled opening (lifecycle-v5)")
    hold: HoldParams = Field(default_factory=HoldParams)
    opened_by: str = "manual"
    #: venue → USD per unit of its settlement currency (``venues[].settle_usd_rate``); absent = 1
    usd_rates: dict[str, Decimal] = Field(default_factory=dict)
    #: venue → its taker fee (``venues[].taker_fee``): maker_first quotes on the costlier one
    taker_fees: dict[str, Decimal] = Field(default_factory=dict)

    def usd_rate(self, venue: str) -> Decimal:
        return self.usd_rates.get(venue, ONE)


class CloseRequest(BaseModel):
    reason: str = "requested"


# --- activity payloads -------------------------------------------------------------------
class VenueCheckRequest(BaseModel):
    venue: str
    symbol: str
    leverage: int | None = None  # also set this leverage (one round trip for both)


class VenueCheck(BaseModel):
    venue: str
    symbol: str
    reachable: bool
    error: str | None = None
    one_way: bool = True
    free_margin: Decimal = Decimal(0)
    market: MarketInfo | None = None
    mark_price: Decimal | None = None
    position_qty: Decimal = Decimal(0)
    margin_mode: str = "cross"  # cross | isolated | unknown


class PlaceOrderRequest(BaseModel):
    venue: str
    symbol: str
    side: Side
    qty: Decimal
    client_order_id: str
    reduce_only: bool = False
    ref_price: Decimal | None = None  # a recent mark, for the venue's minimum-notional check
    lookup_first: bool = False  # the order may already exist: look the id up before sending
    deadline_s: float | None = None  # opening legs: no answer by then = outcome unknown (the other leg won't wait)
    #: a reduce-only close of a whole position (lifecycle-v4): an unknown outcome gets one look-up and
    #: no validity-window wait; the workflow reads and resends under a fresh id
    resend_fresh: bool = False
    #: lifecycle-v6, opening legs of ``place_orders``: the client id under which the activity itself
    #: flattens this leg when it filled and the other leg did not (a lone leg is closed in the same
    #: step that learns it is alone; the workflow still verifies flat)
    flatten_client_order_id: str | None = None
    #: lifecycle-v6: ids for the rest when that flatten fills only part (a thin book), sent at once
    flatten_rest_ids: list[str] = Field(default_factory=list)
    #: lifecycle-v6: the id of the reduce-only close that chases this opening when its outcome stays
    #: unknown while the other leg filled alone (the workflow's ``b1``), sent by the activity
    chase_client_order_id: str | None = None
    #: lifecycle-v9, a whole-position reduce-only close (``close_whole``): when it fills only part
    #: (a thin book), the rest goes out at once from the same activity under these ids, in turn
    rest_ids: list[str] = Field(default_factory=list)
    #: lifecycle-v9, an opening chased by ``place_orders``: its id is looked up every 0.1 s for this
    #: long after the chase, and what it executed late is closed at once under ``chase_rest_ids``
    chase_watch_s: float = 0.0
    chase_rest_ids: list[str] = Field(default_factory=list)
    #: lifecycle-v9, opening legs of ``place_orders``: when both legs fill, unequal, the longer one is
    #: trimmed reduce-only in the same step under this id (then its rests on a thin book)
    trim_client_order_id: str | None = None
    trim_rest_ids: list[str] = Field(default_factory=list)


class WholeCloseOutcome(BaseModel):
    """lifecycle-v9: a whole-position close and the rests ``close_whole`` sent behind it, in order."""

    order: OrderResult
    rest: list[OrderResult] = Field(default_factory=list)
    rest_sent_ids: list[str] = Field(default_factory=list)  # every rest id sent (the last may be unanswered)
    rest_error: str | None = None  # why the last rest has no answer (its id is issued: looked up)
    refused_ids: list[str] = Field(default_factory=list)  # rests refused outright: nothing of them is on the venue


class PlaceOutcome(BaseModel):
    """One leg's result from ``place_orders``: the order, or why it was not placed."""

    order: OrderResult | None = None
    error_type: str | None = None
    error: str | None = None
    retryable: bool = False  # outcome unknown or transient: place it again (id looked up first)
    elapsed_ms: int | None = None  # how long the venue took to answer (a slow venue closes first)
    #: lifecycle-v6: the activity cancelled this leg's opening (accepted, not executed while the
    #: other leg had filled) and ``order`` is the venue's answer to the cancel
    cancelled: bool = False
    #: lifecycle-v6: this leg filled alone and the activity sent its reduce-only flatten: the
    #: venue's answer (``flatten``) or why it is not known (``flatten_error``; the id is issued)
    flatten: OrderResult | None = None
    flatten_error: str | None = None
    #: the remainders sent when the flatten filled only part, and every flatten id the activity sent
    flatten_rest: list[OrderResult] = Field(default_factory=list)
    flatten_sent: list[str] = Field(default_factory=list)
    #: lifecycle-v6: this leg's opening outcome stayed unknown and the activity sent its chase
    chase_sent: bool = False
    chase: OrderResult | None = None
    chase_error: str | None = None
    #: lifecycle-v9: the closes of what the chased opening executed late (found by the watch), every id sent
    chase_rest: list[OrderResult] = Field(default_factory=list)
    chase_rest_sent: list[str] = Field(default_factory=list)
    #: lifecycle-v9: this leg filled more than the other and was trimmed in the same step: every trim id
    #: sent, the answers, why the last is not known
    trim: list[OrderResult] = Field(default_factory=list)
    trim_sent: list[str] = Field(default_factory=list)
    trim_error: str | None = None
    #: ids of this leg the venue refused outright (nothing of them is on the venue: never looked up)
    refused_ids: list[str] = Field(default_factory=list)


class StepCloseRequest(BaseModel):
    """lifecycle-v7: one round of a hedged pair closed in step, in one activity: the follower's
    venue is read first (unreachable: the leader is not sent, the workflow lets the follower lead),
    then the leader's close, then, in the same step, the follower's reduce-only match of what the
    leader filled (no workflow round trip while the pair is unequal)."""

    leader: PlaceOrderRequest
    follower: PlaceOrderRequest  # side and id of the match; ``qty`` is the most it may close
    leader_held: Decimal  # what the leader holds before its close (it matches down to what is left)
    follower_rest_ids: list[str] = Field(default_factory=list)  # for the rest of a match filled in part
    probe_s: float = 1.0  # the follower's read may take this long
    #: lifecycle-v8: the leader leg's ids of a re-hedge (the re-open, then its re-close): a match accepted
    #: but not executed soon (its venue executes late) is covered on the leader's venue and cancelled
    rehedge_ids: list[str] = Field(default_factory=list)


class StepCloseOutcome(BaseModel):
    follower_unreachable: bool = False  # its read failed: nothing was sent
    follower_held: Decimal | None = None  # what that read found (abs)
    leader: OrderResult | None = None
    follower: OrderResult | None = None
    follower_rest: list[OrderResult] = Field(default_factory=list)  # the rest orders, in order
    follower_sent_ids: list[str] = Field(default_factory=list)  # every follower id sent (or found sent)

    @property
    def follower_sent(self) -> bool:
        return bool(self.follower_sent_ids)
    error: str | None = None  # why the probe or the follower's match failed
    #: a match its venue refused as below its step or minimum (``OrderBelowMinimum``, nothing sent: the
    #: step grew since the trade opened): the quantity asked
    follower_refused_qty: Decimal | None = None
    #: v8: the re-hedge on the leader's venue (the re-open of what the late match had not covered, and
    #: the re-close of what that match executed after all) and every re-hedge id sent
    rehedge: OrderResult | None = None
    rehedge_close: OrderResult | None = None
    rehedge_sent_ids: list[str] = Field(default_factory=list)


class OrderLookup(BaseModel):
    venue: str
    symbol: str
    client_order_id: str


class PositionsRequest(BaseModel):
    venue: str
    symbols: list[str]


class SnapshotRequest(BaseModel):
    venue: str
    symbol: str


class MarketSnapshot(BaseModel):
    venue: str
    symbol: str
    funding: FundingInfo


class IncomeRequest(BaseModel):
    venue: str
    symbol: str
    since_ms: int


class FillsRequest(BaseModel):
    venue: str
    symbol: str
    since_ms: int
    order_ids: list[str]


class Alert(BaseModel):
    kind: str  # trade_opened, trade_closed, trade_aborted, emergency_close, close_stuck, ...
    trade_id: str | None = None
    message: str
    severity: Literal["info", "warning", "critical"] = "info"


# --- workflow state ----------------------------------------------------------------------
class LegState(BaseModel):
    venue: str
    side: Side
    filled_qty: Decimal = Decimal(0)  # current position qty held by this trade (base, >= 0)
    opened_qty: Decimal = Decimal(0)  # total bought (long) / sold (short) to open
    avg_price: Decimal | None = None  # average open price
    client_order_ids: list[str] = Field(default_factory=list)
    venue_order_ids: list[str] = Field(default_factory=list)
    fees: Decimal = Decimal(0)
    funding: Decimal = Decimal(0)
    price_pnl: Decimal | None = None
    realized_pnl: Decimal | None = None
    position: Position | None = None
    close_attempts: int = 0  # this leg's close orders (numbers their client ids: each venue closes on its own)
    pending: dict[str, int] = Field(default_factory=dict)  # client id → workflow ms sent, outcome not yet final

    def apply_fill(self, order: OrderResult, opening: bool) -> bool:
        """Book what ``order`` filled on this leg (opening adds, reducing subtracts); remember
        its venue id. True when something filled."""
        if order.venue_order_id and order.venue_order_id not in self.venue_order_ids:
            self.venue_order_ids.append(order.venue_order_id)
        q = order.filled_qty
        if q <= 0:
            return False
        if opening:
            prev = self.opened_qty
            self.opened_qty = prev + q
            if order.avg_price is not None:
                self.avg_price = ((self.avg_price or Decimal(0)) * prev + order.avg_price * q) / self.opened_qty
            self.filled_qty += q
        else:
            self.filled_qty = max(Decimal(0), self.filled_qty - q)
        self.fees += order.fee
        return True


class TradeEvent(BaseModel):
    t: str  # ISO time (workflow time)
    what: str


class TradeStatus(BaseModel):
    trade_id: str
    state: TradeState  # domain.lifecycle; serialised as its string
    symbol: str
    long_venue: str
    short_venue: str
    notional_usd: Decimal
    target_qty: Decimal = Decimal(0)
    legs: list[LegState]
    funding_collected_usd: Decimal = Decimal(0)
    fees_usd: Decimal = Decimal(0)
    realized_pnl_usd: Decimal | None = None
    hedge_gap: Decimal | None = None
    spread_bps_8h: Decimal | None = None
    abort_reason: str | None = None
    close_reason: str | None = None
    orphan_exposure_ms: int | None = None
    opened_at: str | None = None
    hedged_at: str | None = None
    closed_at: str | None = None
    open_ms: int | None = None  # workflow time when the first order was sent (ms since epoch)
    close_attempts: int = 0
    reductions: int = 0  # liquidation-distance reductions made (numbers their client order ids)
    emergency: bool = False  # the trade went through an emergency close
    runs: int = 1
    alerts_sent: int = 0  # numbers the alert children (deterministic ids)
    hold: HoldParams = Field(default_factory=HoldParams)
    events: list[TradeEvent] = Field(default_factory=list)

    def leg(self, name: LegName) -> LegState:
        return self.legs[0] if name == "long" else self.legs[1]


class TradeMarket(BaseModel):
    """What the trade learnt of both markets before its first order: the common quantity step,
    the larger minimum quantity and the marks it sized with."""

    step: Decimal
    min_qty: Decimal = Decimal(0)
    marks: dict[str, Decimal] = Field(default_factory=dict)


class PendingAbort(BaseModel):
    """Why an opening failed (a ``domain.risk`` refusal code and its detail), kept until both
    venues are flat."""

    code: str
    detail: str = ""


class TradeCarry(BaseModel):
    """Everything one run of a trade hands to the next on continue-as-new: the whole state of
    the workflow (its status and every counter and fact it decides with), in one model."""

    status: TradeStatus
    low_spread_checks: int = 0
    hold_started_ms: int = 0
    close_requested: str | None = None
    emergency_requested: str | None = None
    # added later; absent from carries of earlier versions (then: defaults of that version)
    market: TradeMarket | None = None
    next_funding_ms: int = 0
    monitor_failures: int = 0
    filled_ms: dict[str, int] = Field(default_factory=dict)
    pending_abort: PendingAbort | None = None  # the opening failed: abort with this once flat (survives a new run)
    close_stuck_alerted: bool = False
    last_reduce_ms: int = 0  # liquidation reductions: when, and how far liquidation was then
    dist_at_reduce: Decimal | None = None
    lease: bool = False  # the (venue, symbol) leases are held by this trade
    funding_recheck_ms: int = 0  # read income once more then: a settlement may post late
    # lifecycle-v3: the close sequence (domain.hedge.close_sequence) and when each venue last failed
    close_first: str | None = None  # "long" / "short" (the other follows once it is flat) / "both"
    venue_failed_ms: dict[str, int] = Field(default_factory=dict)
    styled_close_done: bool = False  # issue 15: a graceful close in the trade's style ran (once per close)
    venue_next_funding_ms: dict[str, int] = Field(default_factory=dict)  # venue → next settlement, its clock
    #: lifecycle-v8: venue → the largest close it refused as below its step or minimum (the step grew
    #: since the trade opened): a follower never asks it to match a difference that small
    unmatchable_qty: dict[str, Decimal] = Field(default_factory=dict)


# --- ledger, reconciliation (activities/ledger.py, activities/reconcile.py) ---------------
class TradeRecord(BaseModel):
    """``record_trade``: the trade's status at ``event`` (opened, aborted, closed)."""

    event: Literal["opened", "aborted", "closed"]
    status: TradeStatus
    opened_by: str = "manual"


class ReconcileState(BaseModel):
    """What the reconcile workflow carries from one cycle to the next (alert bookkeeping)."""

    day: str | None = None  # UTC date of the current day's balances
    day_start_balances: dict[str, Decimal] = Field(default_factory=dict)
    balance_alerted: list[str] = Field(default_factory=list)
    unhealthy: list[str] = Field(default_factory=list)
    no_trade_alert_ms: int = 0


class ReconcileRequest(BaseModel):
    state: ReconcileState = Field(default_factory=ReconcileState)
    flatten_orphans: bool = False


class Discrepancy(BaseModel):
    kind: Literal["orphan", "position_mismatch", "order_mismatch", "order_missing"]
    venue: str
    symbol: str
    detail: str
    qty: Decimal | None = None  # venue position (signed) for position kinds
    expected_qty: Decimal | None = None
    incident_id: int | None = None
    new: bool = False


class ReconcileReport(BaseModel):
    at_ms: int
    venues_ok: list[str] = Field(default_factory=list)
    venues_down: dict[str, str] = Field(default_factory=dict)
    trades_checked: int = 0
    orders_checked: int = 0
    discrepancies: list[Discrepancy] = Field(default_factory=list)
    flattened: list[str] = Field(default_factory=list)
    resolved: int = 0
    open_incidents: int = 0
    alerts: list[str] = Field(default_factory=list)
    state: ReconcileState = Field(default_factory=ReconcileState)


class ReconcileParams(BaseModel):
    interval_s: float = Field(60, gt=0)
    iterations_per_run: int = Field(200, ge=1, description="continue-as-new after this many cycles")
    state: ReconcileState = Field(default_factory=ReconcileState)
    cycles: int = 0


# --- leases (activities/ledger.py: acquire_leases, release_leases) -------------------------
class LeasePair(BaseModel):
    venue: str
    symbol: str


class LeaseRequest(BaseModel):
    """``acquire_leases``: take every pair for ``trade_id`` before its first order, or none."""

    trade_id: str
    pairs: list[LeasePair] = Field(min_length=1)


class LeaseResult(BaseModel):
    """All pairs taken (``acquired``), or none: ``held_by`` maps "venue|symbol" to the trade
    holding it."""

    acquired: bool
    held_by: dict[str, str] = Field(default_factory=dict)


class LeaseRelease(BaseModel):
    """``release_leases``: drop every lease ``trade_id`` holds (once flat)."""

    trade_id: str
