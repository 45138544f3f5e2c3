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


def pair_excess(long_filled: Decimal, short_filled: Decimal) -> tuple[str, Decimal] | None:
    """Of a pair whose legs both filled something, the leg that filled more and by how much (what a
    trim of it closes to make the pair equal); None when they are equal or a leg filled nothing (a
    lone leg is flattened, not trimmed)."""
    if long_filled <= 0 or short_filled <= 0 or long_filled == short_filled:
        return None
    return ("long", long_filled - short_filled) if long_filled > short_filled else ("short", short_filled - long_filled)


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


#: exits about one leg itself: that leg is the danger, so each venue closes at once
LEG_SPECIFIC_EXITS = frozenset({"LEG_CHANGED", "LIQUIDATION_RISK"})


def close_sequence(long_held: bool, short_held: bool, *, at_once: bool,
                   long_failed_ms: int = 0, short_failed_ms: int = 0) -> str:
    """Which leg of a pair closes first: ``"long"`` or ``"short"`` (the other follows once it
    is flat), or ``"both"`` (each venue at once, on its own).

    A pair that is still hedged closes one leg after the other, so that a venue that fails
    mid-close leaves the pair hedged instead of one leg naked: the leg on the venue that
    failed most recently goes first (if its close never goes through, nothing is unhedged),
    ties to the long leg. Both at once when ``at_once`` (the close is about one leg itself:
    liquidation, a leg changed outside hedgeflow, a failed opening) or when at most one leg
    holds anything (a lone leg has nothing to stay hedged with)."""
    if at_once or not (long_held and short_held):
        return "both"
    return "short" if short_failed_ms > long_failed_ms else "long"
