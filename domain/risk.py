"""Risk gates of the scanner: may a new trade open now? Pure; coded denial reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)

HALTED = "HALTED"
SYMBOL_BUSY = "SYMBOL_BUSY"
COOLDOWN = "COOLDOWN"
MAX_TRADES = "MAX_TRADES"
EXPOSURE_LIMIT = "EXPOSURE_LIMIT"
DAILY_LIMIT = "DAILY_LIMIT"
INCIDENT_OPEN = "INCIDENT_OPEN"  # reconciliation found something unresolved: open nothing


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
