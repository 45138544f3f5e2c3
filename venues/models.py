"""Typed values that cross the gateway port. Money and quantities are Decimal, always.

Quantities are in *base units* (e.g. BTC), never contracts: the gateway converts with the
market's ``contract_size`` on the way in and out.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        """The side that closes a position this side opened."""
        return Side.SELL if self == Side.BUY else Side.BUY


class OrderStatus(StrEnum):
    NEW = "new"  # accepted, not (fully) filled, still open
    PARTIALLY_FILLED = "partially_filled"  # open with some fill
    FILLED = "filled"
    CANCELED = "canceled"  # closed; may carry a partial fill (filled_qty > 0)
    EXPIRED = "expired"  # IOC / market remainder expired; may carry a partial fill
    REJECTED = "rejected"


class MarketInfo(_Model):
    symbol: str  # ccxt unified, e.g. BTC/USDT:USDT
    venue_symbol: str  # venue id, e.g. BTCUSDT
    contract_size: Decimal  # base units per contract
    qty_step: Decimal  # base units
    min_qty: Decimal  # base units
    min_notional: Decimal  # quote units (USDT)
    price_tick: Decimal
    #: False while the venue does not trade the market (Binance status SETTLING, BREAK,
    #: PENDING_TRADING, CLOSE ...): positions in it still exist and are still reported
    active: bool = True
    status: str | None = None  # the venue's own market status when it says one
    #: the venue's price band around the mark (Binance PERCENT_PRICE multiplierUp / multiplierDown):
    #: orders may execute up to mark × up (BUY) and down to mark × down (SELL); None when not said
    price_band_up: Decimal | None = None
    price_band_down: Decimal | None = None

    def band_edge(self, side: Side, mark: Decimal) -> Decimal | None:
        """The furthest price on the tick the band lets ``side`` execute at around ``mark``:
        BUY mark × up rounded down, SELL mark × down rounded up; None without a band."""
        if self.price_band_up is None or self.price_band_down is None:
            return None
        if side is Side.BUY:
            ticks = (mark * self.price_band_up / self.price_tick).to_integral_value(rounding=ROUND_FLOOR)
        else:
            ticks = (mark * self.price_band_down / self.price_tick).to_integral_value(rounding=ROUND_CEILING)
        return (ticks * self.price_tick).quantize(self.price_tick)


class FundingInfo(_Model):
    symbol: str
    rate: Decimal  # the rate that settles at next_funding_ms (per interval)
    interval_hours: Decimal
    next_funding_ms: int
    mark_price: Decimal
    index_price: Decimal | None = None
    timestamp_ms: int


class BookLevel(_Model):
    price: Decimal
    qty: Decimal  # base units


class OrderBook(_Model):
    symbol: str
    bids: list[BookLevel]  # best first
    asks: list[BookLevel]  # best first
    timestamp_ms: int


class Balance(_Model):
    currency: str = "USDT"
    total: Decimal  # wallet balance + unrealized PnL
    free: Decimal  # available for new margin
    used: Decimal


class Position(_Model):
    symbol: str
    qty: Decimal  # signed, base units: > 0 long, < 0 short
    entry_price: Decimal
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal
    liquidation_price: Decimal | None = None
    leverage: Decimal | None = None
    #: False when the gateway has no market for the symbol even after reloading markets:
    #: ``symbol`` is then the venue's raw symbol and ``qty`` assumes contract size 1
    market_known: bool = True


class OrderResult(_Model):
    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str
    side: Side
    reduce_only: bool
    status: OrderStatus
    requested_qty: Decimal  # base units
    filled_qty: Decimal  # base units
    avg_price: Decimal | None
    fee: Decimal  # quote units, >= 0 when paid
    timestamp_ms: int
    duplicate_prevented: bool = False  # True when placing found the order already on the venue
    #: when the venue created the order, where its answer says (``timestamp_ms`` is its last update)
    created_ms: int | None = None

    def executed_late(self, threshold_ms: int) -> bool:
        """Filled at least ``threshold_ms`` after the venue accepted it (a venue that matches late)."""
        return self.filled_qty > 0 and self.created_ms is not None and self.timestamp_ms - self.created_ms >= threshold_ms

    @property
    def is_closed(self) -> bool:
        return self.status in (
            OrderStatus.FILLED,
            OrderStatus.CANCELED,
            OrderStatus.EXPIRED,
            OrderStatus.REJECTED,
        )


class Fill(_Model):
    symbol: str
    venue_order_id: str
    trade_id: str
    side: Side
    qty: Decimal  # base units
    price: Decimal
    fee: Decimal  # quote units
    realized_pnl: Decimal
    timestamp_ms: int
    #: True: a maker fill (a resting order's), False: a taker's; None where the venue does not say
    maker: bool | None = None


class FundingPayment(_Model):
    symbol: str
    amount: Decimal  # signed, quote units: > 0 received, < 0 paid
    timestamp_ms: int
    income_id: str
