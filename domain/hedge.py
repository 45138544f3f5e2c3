"""Hedge gaps, liquidation distance and what to do about it. Pure functions. (Sizing is part
of the pre-trade gate in ``domain.risk``; the funding spread is ``domain.funding``.)"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

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


class LiqAction(StrEnum):
    NONE = "none"  # far enough: nothing to do (and a past reduction is forgotten)
    CLOSE = "close"  # below the close threshold: close both legs
    REDUCE = "reduce"  # below the reduce threshold: halve both legs
    COOLING = "cooling"  # a reduction was just made: let it take effect
    NO_IMPROVEMENT = "no_improvement"  # reduced, cooled down, and still as near: close both legs


def liquidation_action(nearest: Decimal | None, *, close_below: Decimal, reduce_below: Decimal, now_ms: int,
                       last_reduce_ms: int = 0, dist_at_reduce: Decimal | None = None, cooldown_ms: int = 0,
                       hysteresis: bool = True) -> LiqAction:
    """The liquidation rule, with hysteresis: reduce, cool down for ``cooldown_ms``, re-read and
    require the distance to have grown since the reduction, else close. ``nearest`` is the
    smaller of both legs' distances (None: no liquidation price reported). Without
    ``hysteresis`` (trades of earlier versions) every reading below ``reduce_below`` reduces."""
    if nearest is None or nearest >= reduce_below:
        return LiqAction.NONE
    if nearest < close_below:
        return LiqAction.CLOSE
    if hysteresis and last_reduce_ms:
        if now_ms - last_reduce_ms < cooldown_ms:
            return LiqAction.COOLING
        if dist_at_reduce is not None and nearest <= dist_at_reduce:
            return LiqAction.NO_IMPROVEMENT
    return LiqAction.REDUCE
