"""Hedge gaps and liquidation distance. Pure functions. (Sizing is part of the pre-trade gate in
``domain.risk``; the funding spread is ``domain.funding``.)"""

from __future__ import annotations

from decimal import Decimal

ZERO = Decimal(0)


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
