"""The one pre-trade gate: may this trade open, and at what size? Pure; coded refusals.

Every refusal before an order is sent lives here, each with its code, and is called by the
command line and the scanner (through ``control.trades.open_trade``), by the scanner's
portfolio check and by the trade workflow:

* :func:`check_request` — the request itself (venues known and distinct, notional, symbol);
* :func:`check_gates` — the portfolio (halt, one trade per symbol, cool-down, counts, exposure,
  daily limits), asked by the scanner each cycle;
* :func:`check_venues` — what both venues report (symbol, position mode, existing position,
  free margin, a mark price), asked by the workflow right before its first order;
* :func:`size_pair` — the one quantity both legs can trade (steps and minimums).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from domain.rounding import below_minimum, common_step, round_down

ZERO = Decimal(0)
ONE = Decimal(1)

# --- request
UNKNOWN_VENUE = "UNKNOWN_VENUE"
SAME_VENUE = "SAME_VENUE"
NOTIONAL_INVALID = "NOTIONAL_INVALID"
NOTIONAL_LIMIT = "NOTIONAL_LIMIT"
BAD_SYMBOL = "BAD_SYMBOL"
# --- venues
VENUE_UNREACHABLE = "VENUE_UNREACHABLE"
NOT_ONE_WAY_MODE = "NOT_ONE_WAY_MODE"
ISOLATED_MARGIN = "ISOLATED_MARGIN"  # halving an isolated position does not move its liquidation price
POSITION_EXISTS = "POSITION_EXISTS"
INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
NO_PRICE = "NO_PRICE"
LEASE_HELD = "LEASE_HELD"  # another trade holds this (venue, symbol): one trade per symbol and venue
LEASE_UNAVAILABLE = "LEASE_UNAVAILABLE"  # the ledger could not be asked: fail closed
# --- sizing
BELOW_MIN_QTY = "BELOW_MIN_QTY"
# --- portfolio
HALTED = "HALTED"
SYMBOL_BUSY = "SYMBOL_BUSY"
COOLDOWN = "COOLDOWN"
MAX_TRADES = "MAX_TRADES"
EXPOSURE_LIMIT = "EXPOSURE_LIMIT"
DAILY_LIMIT = "DAILY_LIMIT"
INCIDENT_OPEN = "INCIDENT_OPEN"  # reconciliation found something unresolved: open nothing


@dataclass(frozen=True)
class Refusal:
    """Why a trade must not open: a code from this module and a sentence for a person."""

    code: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


# ---------------------------------------------------------------------------- the request
def check_request(
    symbol: str, long_venue: str, short_venue: str, notional_usd: Decimal, *,
    venues: Sequence[str], max_order_notional_usd: Decimal,
) -> Refusal | None:
    """The request as typed by a person or built by the scanner; the detail names the flag
    and the fix."""
    for flag, v in (("--long", long_venue), ("--short", short_venue)):
        if v not in venues:
            return Refusal(UNKNOWN_VENUE, f"{flag}: unknown venue {v!r}; configured venues: {', '.join(venues)}")
    if long_venue == short_venue:
        return Refusal(SAME_VENUE, "--long and --short must be different venues")
    if notional_usd <= 0:
        return Refusal(NOTIONAL_INVALID, f"--notional must be > 0 (got {notional_usd})")
    if notional_usd > max_order_notional_usd:
        return Refusal(
            NOTIONAL_LIMIT,
            f"--notional {notional_usd} exceeds limits.max_order_notional_usd "
            f"({max_order_notional_usd}); lower it or raise the limit",
        )
    if "/" not in symbol or ":" not in symbol:
        return Refusal(BAD_SYMBOL, f"--symbol must be a ccxt unified perpetual symbol like BTC/USDT:USDT (got {symbol!r})")
    return None


# ---------------------------------------------------------------------------- the venues
class VenueFacts(Protocol):
    """What the pre-trade read of one venue reports (``messages.trade.VenueCheck``)."""

    venue: str
    error: str | None
    one_way: bool
    position_qty: Decimal
    free_margin: Decimal
    mark_price: Decimal | None
    margin_mode: str


def check_venues(
    symbol: str, notional_usd: Decimal, *, leverage: int, margin_buffer: Decimal,
    max_order_notional_usd: Decimal, checks: Sequence[VenueFacts], usd_rates: Mapping[str, Decimal] | None = None,
) -> Refusal | None:
    """Both venues, read right before the first order. First that applies: NOTIONAL_LIMIT,
    then per venue BAD_SYMBOL, NOT_ONE_WAY_MODE, ISOLATED_MARGIN, POSITION_EXISTS, INSUFFICIENT_MARGIN, NO_PRICE."""
    if notional_usd > max_order_notional_usd:
        return Refusal(NOTIONAL_LIMIT, f"{notional_usd} > max per order {max_order_notional_usd}")
    for chk in checks:
        if chk.error:
            return Refusal(BAD_SYMBOL, f"{chk.venue}: {chk.error}")
        if not chk.one_way:
            return Refusal(NOT_ONE_WAY_MODE, f"{chk.venue} is in hedge (dual-side) position mode")
        if chk.margin_mode == "isolated":
            return Refusal(ISOLATED_MARGIN, f"{chk.venue} holds {symbol} on isolated margin: reductions would not move "
                           "the liquidation price; switch the symbol to cross margin")
        if chk.position_qty != 0:
            return Refusal(
                POSITION_EXISTS,
                f"{chk.venue} already holds {chk.position_qty} {symbol}; one trade per symbol and venue",
            )
        need = notional_usd / leverage * margin_buffer
        rate = (usd_rates or {}).get(chk.venue, ONE)  # free margin is in the venue's settlement currency
        if chk.free_margin * rate < need:
            return Refusal(INSUFFICIENT_MARGIN, f"{chk.venue} free {chk.free_margin} < needed {need / rate:.2f}")
        if not chk.mark_price:
            return Refusal(NO_PRICE, f"{chk.venue} has no mark price for {symbol}")
    return None


# ---------------------------------------------------------------------------- sizing
@dataclass(frozen=True)
class LegMarket:
    """What sizing needs to know of one venue's market (base units, quote prices)."""

    qty_step: Decimal
    min_qty: Decimal
    min_notional: Decimal
    price: Decimal  # reference price for sizing (mark, or the side of the book we hit)
    usd_rate: Decimal = Decimal(1)  # USD per unit of the venue's quote (settlement) currency


@dataclass(frozen=True)
class Sizing:
    qty: Decimal  # the same base quantity on both legs
    step: Decimal  # the common step both venues accept
    reason: str | None = None  # coded refusal, None when OK
    detail: str = ""

    @property
    def refusal(self) -> Refusal | None:
        return Refusal(self.reason, self.detail) if self.reason else None


def size_pair(notional_usd: Decimal, long: LegMarket, short: LegMarket) -> Sizing:
    """Quantity for both legs: notional / the higher price in USD (each venue's price × its
    ``usd_rate``), rounded down to the coarser of the two venues' steps, refused when below
    either venue's minimum quantity or notional (those in the venue's own currency)."""
    if notional_usd <= 0:
        return Sizing(ZERO, ZERO, NOTIONAL_INVALID, f"notional {notional_usd} must be > 0")
    step = common_step(long.qty_step, short.qty_step)
    price = max(long.price if long.usd_rate == 1 else long.price * long.usd_rate,
                short.price if short.usd_rate == 1 else short.price * short.usd_rate)
    if price <= 0:
        return Sizing(ZERO, step, NO_PRICE, "no positive price on one of the venues")
    qty = round_down(notional_usd / price, step)
    for name, leg in (("long", long), ("short", short)):
        why = below_minimum(qty, leg.price, leg.min_qty, leg.min_notional)
        if why:
            return Sizing(qty, step, BELOW_MIN_QTY, f"{name} leg: {why}")
    return Sizing(qty, step)


# ---------------------------------------------------------------------------- the portfolio
@dataclass(frozen=True)
class OpenTrade:
    trade_id: str
    symbol: str
    long_venue: str
    short_venue: str
    notional_usd: Decimal


@dataclass(frozen=True)
class RiskLimits:
    max_open_trades: int
    max_venue_notional_usd: Decimal
    max_total_notional_usd: Decimal
    max_trades_per_day: int
    max_daily_loss_usd: Decimal
    max_consecutive_emergency: int
    symbol_cooldown_ms: int


@dataclass
class RiskBook:
    """What is open and what happened today, as visibility and the trades' results tell."""

    open_trades: list[OpenTrade] = field(default_factory=list)
    trades_today: int = 0
    realized_today_usd: Decimal = ZERO
    consecutive_emergency: int = 0
    last_close_ms: dict[str, int] = field(default_factory=dict)  # symbol → latest close time

    def add(self, trade: OpenTrade) -> None:
        """Count a trade just started (visibility may not show it yet)."""
        if all(t.trade_id != trade.trade_id for t in self.open_trades):
            self.open_trades.append(trade)
            self.trades_today += 1

    def venue_notional(self, venue: str) -> Decimal:
        return sum((t.notional_usd for t in self.open_trades if venue in (t.long_venue, t.short_venue)), ZERO)

    def total_notional(self) -> Decimal:
        # both legs carry the notional: gross exposure is twice the trade notional
        return sum((t.notional_usd * 2 for t in self.open_trades), ZERO)


def check_gates(
    symbol: str,
    long_venue: str,
    short_venue: str,
    notional_usd: Decimal,
    book: RiskBook,
    limits: RiskLimits,
    now_ms: int,
    *,
    halted: bool = False,
) -> tuple[str, str] | None:
    """``(REASON, detail)`` when a new trade must not open, else None. First that applies:
    HALTED (by operator, or after max consecutive emergency closes), SYMBOL_BUSY (one trade
    per symbol), COOLDOWN, MAX_TRADES, EXPOSURE_LIMIT (per venue, total gross), DAILY_LIMIT
    (trades per UTC day, realised loss per UTC day)."""
    if halted:
        return HALTED, "trading halted"
    if book.consecutive_emergency >= limits.max_consecutive_emergency:
        return HALTED, f"{book.consecutive_emergency} consecutive emergency closes; `hedgeflow resume` to re-arm"
    busy = [t.trade_id for t in book.open_trades if t.symbol == symbol]
    if busy:
        return SYMBOL_BUSY, f"open: {', '.join(busy)}"
    closed = book.last_close_ms.get(symbol)
    if closed is not None and now_ms - closed < limits.symbol_cooldown_ms:
        return COOLDOWN, f"closed {(now_ms - closed) // 1000} s ago"
    if len(book.open_trades) >= limits.max_open_trades:
        return MAX_TRADES, f"{len(book.open_trades)} open (max {limits.max_open_trades})"
    for v in (long_venue, short_venue):
        after = book.venue_notional(v) + notional_usd
        if after > limits.max_venue_notional_usd:
            return EXPOSURE_LIMIT, f"{v}: {after} > {limits.max_venue_notional_usd} USD"
    total = book.total_notional() + notional_usd * 2
    if total > limits.max_total_notional_usd:
        return EXPOSURE_LIMIT, f"total {total} > {limits.max_total_notional_usd} USD"
    if book.trades_today >= limits.max_trades_per_day:
        return DAILY_LIMIT, f"{book.trades_today} trades today (max {limits.max_trades_per_day})"
    if -book.realized_today_usd >= limits.max_daily_loss_usd and book.realized_today_usd < 0:
        return DAILY_LIMIT, f"realised {book.realized_today_usd} USD today (max loss {limits.max_daily_loss_usd})"
    return None
