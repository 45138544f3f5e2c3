"""Typed inputs, outputs and state of the scanner workflow and its activities (plain data)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from config.settings import ScannerTuning
from domain.edge import HOUR_MS, Edge, EdgeParams, Level
from domain.risk import OpenTrade, RiskLimits
from domain.venue_time import SCANNER_DURATIONS, to_wall

if TYPE_CHECKING:
    from config import Settings


class ScannerParams(ScannerTuning):
    """Everything a scan cycle needs: the ``scanner`` settings (``ScannerTuning``, embedded, not
    copied) plus the venues, their fees and the portfolio limits; built by :func:`from_settings`.

    The settings' durations are *venue* seconds; here they are **wall** seconds, what the workflow
    sleeps and compares: :func:`from_settings` divides ``cycle_s``, ``min_settlement_lead_s``,
    ``stale_after_s``, ``unhealthy_cooldown_s`` and ``symbol_cooldown_s`` by ``time_scale`` (the
    replay speed), with the wall floors of :mod:`domain.venue_time`. ``horizon_h`` stays in venue
    hours (:attr:`hour_ms` scales it)."""

    venues: list[str]
    taker_fees: dict[str, Decimal] = Field(default_factory=dict)
    maker_fees: dict[str, Decimal] = Field(default_factory=dict)  # absent: as the taker fee
    # how the trade would slice (``trade.slices`` / ``trade.slice_style``): what ``sliced`` is priced at
    slices: int = Field(4, ge=2)
    slice_style: Literal["taker", "maker_first"] = "taker"
    max_open_trades: int = 5
    max_venue_notional_usd: Decimal = Decimal("50000")
    max_total_notional_usd: Decimal = Decimal("100000")
    max_candidates: int = 50  # accepted candidates an activity hands back
    status_rows: int = 30  # candidate rows kept for the status query

    @classmethod
    def from_settings(cls, settings: Settings) -> ScannerParams:
        lim = settings.limits
        tuning = to_wall(settings.scanner.tuning(), settings.scanner.time_scale, SCANNER_DURATIONS)
        tuning["styles"] = settings.scanner.allowed_styles(settings.trade.style)
        return cls(
            venues=[v.name for v in settings.venues],
            taker_fees={v.name: v.taker_fee for v in settings.venues},
            maker_fees={v.name: v.maker_fee for v in settings.venues},
            slices=settings.trade.slices,
            slice_style=settings.trade.slice_style,
            max_open_trades=lim.max_open_trades,
            max_venue_notional_usd=lim.max_venue_notional_usd,
            max_total_notional_usd=lim.max_total_notional_usd,
            **tuning,
        )

    @property
    def hour_ms(self) -> int:
        """Wall ms per venue hour."""
        return int(Decimal(HOUR_MS) / self.time_scale)

    def edge_params(self) -> EdgeParams:
        return EdgeParams(
            notional_usd=self.notional_usd,
            horizon_ms=int(self.horizon_h * self.hour_ms),
            min_spread_bps=self.min_spread_bps,
            buffer_bps=self.buffer_bps,
            max_price_divergence=self.max_price_divergence,
            min_settlement_lead_ms=int(self.min_settlement_lead_s * 1000),
            stale_after_ms=int(self.stale_after_s * 1000),
            est_slippage_bps=self.est_slippage_bps,
            hour_ms=self.hour_ms,
            max_impact=self.max_book_impact,
            styles=tuple(self.allowed_styles("taker")),
            maker_fill_share=self.maker_fill_share,
            slices=self.slices,
            slice_style=self.slice_style,
        )

    def risk_limits(self) -> RiskLimits:
        return RiskLimits(
            max_open_trades=self.max_open_trades,
            max_venue_notional_usd=self.max_venue_notional_usd,
            max_total_notional_usd=self.max_total_notional_usd,
            max_trades_per_day=self.max_trades_per_day,
            max_daily_loss_usd=self.max_daily_loss_usd,
            max_consecutive_emergency=self.max_consecutive_emergency,
            symbol_cooldown_ms=int(self.symbol_cooldown_s * 1000),
        )


# --- activity payloads -------------------------------------------------------------------
class ScanRequest(BaseModel):
    params: ScannerParams
    venues: list[str]  # healthy venues to call
    unhealthy: list[str] = Field(default_factory=list)  # their pairs are counted VENUE_UNHEALTHY


class VenueScan(BaseModel):
    venue: str
    ok: bool
    error: str | None = None
    symbols: int = 0
    ms: int = 0  # wall time of the call


class ScanResult(BaseModel):
    fetched_ms: int
    venues: list[VenueScan]
    api_calls: int
    pairs: int
    accepted: list[Edge]  # best net first, capped
    rejected: list[Edge]  # best net first, capped (for the status)
    counts: dict[str, int]


class BookKey(BaseModel):
    venue: str
    symbol: str


class BooksRequest(BaseModel):
    items: list[BookKey]
    depth: int = 20


class BookOut(BaseModel):
    venue: str
    symbol: str
    bids: list[Level] = Field(default_factory=list)
    asks: list[Level] = Field(default_factory=list)
    error: str | None = None


class BooksResult(BaseModel):
    books: list[BookOut]
    api_calls: int


class RiskBookRequest(BaseModel):
    day_start_ms: int
    cooldown_since_ms: int
    emergency_since_ms: int = 0  # emergency closes before this (an operator's resume) do not count
    # a running trade that can be neither queried nor read from its memo counts at this notional
    fallback_notional_usd: Decimal | None = None


class RiskBookView(BaseModel):
    open_trades: list[OpenTrade]
    trades_today: int
    realized_today_usd: Decimal
    consecutive_emergency: int
    last_close_ms: dict[str, int]
    known_ids: list[str]  # every trade id visibility returned (open or closed)


class StartTradeRequest(BaseModel):
    symbol: str
    long_venue: str
    short_venue: str
    notional_usd: Decimal
    stamp: str  # stable per opportunity: the target settlement epoch
    summary: str = ""
    style: Literal["taker", "maker_first", "sliced"] | None = None  # the scanner's choice; None: trade.style


class StartTradeResult(BaseModel):
    workflow_id: str
    outcome: Literal["started", "existing", "refused"]
    detail: str = ""


class CloseAllRequest(BaseModel):
    reason: str = "halt --close-all"
    also: list[str] = Field(default_factory=list)  # ids visibility may not list yet


# --- workflow state ----------------------------------------------------------------------
class HaltRequest(BaseModel):
    reason: str = "operator halt"
    close_all: bool = False


class VenueHealth(BaseModel):
    failures: int = 0
    unhealthy_until_ms: int | None = None
    last_error: str | None = None
    last_ok_ms: int | None = None


class CandidateRow(BaseModel):
    symbol: str
    long_venue: str
    short_venue: str
    edge: Edge | None = None
    reason: str | None = None
    detail: str = ""
    trade_id: str | None = None


class StartedTrade(BaseModel):
    trade_id: str
    symbol: str
    long_venue: str
    short_venue: str
    notional_usd: Decimal
    started_ms: int
    net_bps: Decimal | None = None
    outcome: str = "started"
    style: str | None = None  # the execution style it was started with


class ScannerStatus(BaseModel):
    paused: bool = False
    halted: bool = False
    halt_reason: str | None = None
    cycles: int = 0
    runs: int = 1
    last_cycle_at: str | None = None
    last_cycle_ms: int | None = None
    api_calls_last_cycle: int = 0
    api_calls_total: int = 0
    pairs_last_cycle: int = 0
    venues: dict[str, VenueHealth] = Field(default_factory=dict)
    candidates: list[CandidateRow] = Field(default_factory=list)
    counts_by_reason: dict[str, int] = Field(default_factory=dict)
    trades_started: list[StartedTrade] = Field(default_factory=list)  # recent, bounded
    trades_started_total: int = 0
    closed_on_halt: list[str] = Field(default_factory=list)
    close_all_done_ms: int | None = None
    emergency_since_ms: int = 0
    open_incidents: int | None = None  # at the last cycle that had candidates (None: not read yet)
    last_error: str | None = None


class ScannerCarry(BaseModel):
    status: ScannerStatus
