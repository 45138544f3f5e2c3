"""Sizing a hedged pair, hedge gaps, liquidation distance, funding spread. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.rounding import below_minimum, common_step, round_down

ZERO = Decimal(0)


@dataclass(frozen=True)
class LegMarket:
    """What sizing needs to know of one venue's market (base units, quote prices)."""

    qty_step: Decimal
    min_qty: Decimal
    min_notional: Decimal
    price: Decimal  # reference price for sizing (mark, or the side of the book we hit)


@dataclass(frozen=True)
class Sizing:
    qty: Decimal  # the same base quantity on both legs
    step: Decimal  # the common step both venues accept
    reason: str | None = None  # coded refusal, None when OK
    detail: str = ""


def size_pair(notional_usd: Decimal, long: LegMarket, short: LegMarket) -> Sizing:
    """Quantity for both legs: notional / the higher price, rounded down to the coarser of the
    two venues' steps, refused when below either venue's minimum quantity or notional."""
    if notional_usd <= 0:
        return Sizing(ZERO, ZERO, "NOTIONAL_INVALID", f"notional {notional_usd} must be > 0")
    step = common_step(long.qty_step, short.qty_step)
    price = max(long.price, short.price)
    if price <= 0:
        return Sizing(ZERO, step, "NO_PRICE", "no positive price on one of the venues")
    qty = round_down(notional_usd / price, step)
    for name, leg in (("long", long), ("short", short)):
        why = below_minimum(qty, leg.price, leg.min_qty, leg.min_notional)
        if why:
            return Sizing(qty, step, "BELOW_MIN_QTY", f"{name} leg: {why}")
    return Sizing(qty, step)


def hedge_gap(long_qty: Decimal, short_qty: Decimal, target_qty: Decimal) -> Decimal:
    """|long − short| / target, both quantities as positive base amounts."""
    if target_qty <= 0:
        raise ValueError("target_qty must be > 0")
    return abs(abs(long_qty) - abs(short_qty)) / target_qty


def liquidation_distance(mark: Decimal, liquidation_price: Decimal | None) -> Decimal | None:
    """Relative distance from the mark to the liquidation price (0.1 = 10 %); None when the
    venue reports no liquidation price (position fully collateralised)."""
    if liquidation_price is None or liquidation_price <= 0 or mark <= 0:
        return None
    return abs(mark - liquidation_price) / mark


def hourly_rate(rate: Decimal, interval_hours: Decimal) -> Decimal:
    if interval_hours <= 0:
        raise ValueError("interval_hours must be > 0")
    return rate / interval_hours


def spread_bps_per_8h(
    long_rate: Decimal, long_interval_h: Decimal, short_rate: Decimal, short_interval_h: Decimal
) -> Decimal:
    """What the pair earns per 8 hours in basis points of notional: the short leg receives its
    rate, the long leg pays its rate, each normalised by its own settlement interval."""
    per_hour = hourly_rate(short_rate, short_interval_h) - hourly_rate(long_rate, long_interval_h)
    return per_hour * 8 * Decimal(10_000)
