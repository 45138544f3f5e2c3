"""The one funding-spread formula. Pure.

Each venue's rate is normalised per venue hour by *its own* settlement interval, so an 8-hourly
venue and an hourly one compare per hour, not per settlement. The pair earns the short leg's
hourly rate minus the long leg's; the spread is quoted in basis points of notional per 8 venue
hours. Intervals are in milliseconds of the clock the caller uses (``hour_ms`` of them make one
venue hour: 3 600 000, or 3 600 000 / speed in a replay).
"""

from __future__ import annotations

from decimal import Decimal

BPS = Decimal(10_000)
HOUR_MS = 3_600_000


def hourly_rate(rate: Decimal, interval_ms: int, hour_ms: int = HOUR_MS) -> Decimal:
    """Funding per venue hour: the rate over its own interval (in venue hours)."""
    if interval_ms <= 0:
        raise ValueError("interval_ms must be > 0")
    return rate * Decimal(hour_ms) / Decimal(interval_ms)


def spread_bps_8h(
    long_rate: Decimal, long_interval_ms: int, short_rate: Decimal, short_interval_ms: int, hour_ms: int = HOUR_MS
) -> Decimal:
    """What the pair earns per 8 venue hours in bps: the short leg receives, the long pays."""
    per_hour = hourly_rate(short_rate, short_interval_ms, hour_ms) - hourly_rate(long_rate, long_interval_ms, hour_ms)
    return per_hour * 8 * BPS


def interval_ms_from_hours(hours: Decimal) -> int:
    """A venue's settlement interval in hours (as the gateway reports it) in milliseconds."""
    return int(hours * HOUR_MS)
