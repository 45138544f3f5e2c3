"""Venue time and wall time: the one conversion of a decision duration for a replay at speed X.

Every duration the scanner and the trade *decide* with (a cycle, the settlement lead, staleness,
cool-downs, the monitor interval, the maximum hold) is configured in **venue** seconds: what
the live system would wait. A replay at speed X (``scanner.time_scale``, set by ``hedgeflow up
--speed X``) runs the venues X times faster than the wall clock, so the workflows, which sleep
and compare in wall time, get ``venue_s / X`` wall seconds. At X = 1 nothing changes.

Some waits cost real work whatever the speed, so a few durations have a **wall floor**: the
scanner cannot cycle faster than a cycle takes, an opening cannot beat a settlement closer than
the opening takes, and a trade cannot look at both venues faster than four reads take. At speed X such a duration is ``max(venue_s / X, floor)`` wall seconds,
i.e. ``max(venue_s, floor × X)`` venue seconds: at X = 7200 the 0.5 s cycle floor is one venue
hour, so the scanner looks once a venue hour, not every 30 venue seconds. A floor never raises a
duration above its own venue value (``min(floor, venue_s)``), so at X = 1 a short test setting
stays what it is.

I/O timeouts (an order's verify timeout, the close retry backoff, polling) are not converted:
they measure real calls, which take wall time at any speed.
"""

from __future__ import annotations

from decimal import Decimal

#: a scan cycle: one funding call per venue, books of the best candidates, the gates, the starts —
#: 0.1–0.6 s on loopback (README "Cycle cost"); a shorter cycle only queues cycles behind each other
CYCLE_FLOOR_S = 0.5
#: a funding answer's age is mostly the wall time of its own fetch (tens to hundreds of ms); below
#: this every answer would be "stale" at high speed
STALE_FLOOR_S = 2.0
#: an opening: the cycle's books and start, the trade's venue checks, both legs placed and filled —
#: 0.3–0.7 s here; a settlement closer than this is one the opening would land after
LEAD_FLOOR_S = 0.5
#: one monitor tick reads position and mark on both venues (four calls) and writes history events;
#: the reduce cool-down is judged at ticks, so it gets the same floor (at least the next tick)
MONITOR_FLOOR_S = 0.5

#: scanner settings (``config.ScannerTuning``) that are venue durations → their wall floor. The
#: lead's floor costs hourly venues at high speed: at X ≥ 7200 an hourly settlement is always less
#: than 0.5 wall s away (refused as SETTLEMENT_TOO_CLOSE); at X = 3600 a pair with an hourly leg
#: opens in the first half of each venue hour. Hourly data wants X ≤ 3600.
SCANNER_DURATIONS: dict[str, float] = {
    "cycle_s": CYCLE_FLOOR_S,
    "min_settlement_lead_s": LEAD_FLOOR_S,
    "stale_after_s": STALE_FLOOR_S,
    "unhealthy_cooldown_s": 0.0,
    "symbol_cooldown_s": 0.0,
}
#: hold settings (``config.HoldParams``) that are venue durations → their wall floor
HOLD_DURATIONS: dict[str, float] = {
    "monitor_interval_s": MONITOR_FLOOR_S,
    "max_hold_s": 0.0,
    "reduce_cooldown_s": MONITOR_FLOOR_S,
}


def wall_seconds(venue_s: float, speed: Decimal | float | int, floor_s: float = 0.0) -> float:
    """Wall seconds of ``venue_s`` venue seconds at replay speed ``speed`` (venue seconds per wall
    second), at least ``min(floor_s, venue_s)``."""
    x = Decimal(str(speed))
    if x <= 0:
        raise ValueError(f"replay speed must be positive, got {speed}")
    if venue_s < 0:
        raise ValueError(f"a duration cannot be negative, got {venue_s}")
    wall = float(Decimal(str(venue_s)) / x)
    return max(wall, min(floor_s, venue_s))


def to_wall(values: dict[str, float], speed: Decimal | float | int, floors: dict[str, float]) -> dict[str, float]:
    """``values`` with each key of ``floors`` converted by :func:`wall_seconds` (others unchanged)."""
    return {k: wall_seconds(v, speed, floors[k]) if k in floors else v for k, v in values.items()}
