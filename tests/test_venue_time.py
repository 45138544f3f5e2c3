"""Decision durations are venue time: divided by the replay speed where the scanner's and the
trade's inputs are built, with wall floors; I/O timeouts stay wall time."""

from __future__ import annotations

from decimal import Decimal

import pytest

from config import load_settings
from control.trades import params_from_settings
from domain.venue_time import (
    CYCLE_FLOOR_S,
    LEAD_FLOOR_S,
    MONITOR_FLOOR_S,
    STALE_FLOOR_S,
    to_wall,
    wall_seconds,
)
from messages.scanner import ScannerParams


def test_wall_seconds_divides_by_the_speed_above_the_floor():
    assert wall_seconds(3600, 3600) == 1.0
    assert wall_seconds(28800, Decimal("14400")) == 2.0
    assert wall_seconds(30, 1) == 30  # speed 1: unchanged
    assert wall_seconds(30, 7200, floor_s=0.5) == 0.5  # 4 ms would be a cycle shorter than a scan
    assert wall_seconds(7200, 7200, floor_s=0.5) == 1.0  # above the floor: just divided
    assert wall_seconds(0.2, 1, floor_s=0.5) == 0.2  # a floor never raises a value above itself
    assert wall_seconds(0, 7200, floor_s=0.5) == 0  # zero stays zero (no cool-down, no lead)
    with pytest.raises(ValueError):
        wall_seconds(1, 0)
    with pytest.raises(ValueError):
        wall_seconds(-1, 2)


def test_to_wall_converts_only_the_named_keys():
    out = to_wall({"cycle_s": 30.0, "notional_usd": Decimal("1000"), "symbol_cooldown_s": 3600.0}, 3600,
                  {"cycle_s": 0.5, "symbol_cooldown_s": 0.0})
    assert out == {"cycle_s": 0.5, "notional_usd": Decimal("1000"), "symbol_cooldown_s": 1.0}


def _settings(speed: str):
    return load_settings(profile="replay", environ={"HEDGEFLOW__SCANNER__TIME_SCALE": speed})


def test_scanner_params_carry_wall_seconds_of_venue_durations():
    venue = ScannerParams.from_settings(_settings("1"))
    x = 3600
    p = ScannerParams.from_settings(_settings(str(x)))
    assert venue.cycle_s == 30 and venue.min_settlement_lead_s == 60  # speed 1: the settings themselves
    assert p.cycle_s == max(30 / x, CYCLE_FLOOR_S) == CYCLE_FLOOR_S  # venue cycle: max(30, 0.5 × 3600) = 1800 s
    assert p.min_settlement_lead_s == LEAD_FLOOR_S  # 60 venue s would be 17 ms: less than an opening takes
    assert p.stale_after_s == STALE_FLOOR_S
    assert p.unhealthy_cooldown_s == pytest.approx(300 / x)
    assert p.symbol_cooldown_s == pytest.approx(3600 / x)
    assert p.hour_ms == 1000  # the horizon was already venue hours
    e = p.edge_params()
    assert e.min_settlement_lead_ms == 500 and e.horizon_ms == 24 * 1000
    assert p.risk_limits().symbol_cooldown_ms == 1000
    # the lead that rejected every candidate of the issue: 3 s was 3 venue hours at 3600; now 3 venue
    # seconds, floored at 0.5 wall s = 30 venue minutes (an hourly settlement opens half of each hour)
    demo = load_settings(environ={"HEDGEFLOW__SCANNER__TIME_SCALE": "3600"})
    assert ScannerParams.from_settings(demo).min_settlement_lead_s == LEAD_FLOOR_S
    assert ScannerParams.from_settings(_settings("60")).min_settlement_lead_s == 1.0  # above the floor


def test_trade_hold_durations_are_venue_time_and_io_timeouts_wall_time():
    s1, sx = _settings("1"), _settings("7200")
    p1 = params_from_settings(s1, "BTC/USDT:USDT", "a", "b", Decimal("1000"), "trade-x")
    px = params_from_settings(sx, "BTC/USDT:USDT", "a", "b", Decimal("1000"), "trade-x")
    assert p1.hold == s1.trade.hold()  # speed 1: unchanged
    assert px.hold.monitor_interval_s == MONITOR_FLOOR_S  # 10 s / 7200 is below a tick's reads
    assert px.hold.max_hold_s == pytest.approx(7 * 24 * 3600 / 7200)  # 84 wall s = 7 venue days
    assert px.hold.reduce_cooldown_s == MONITOR_FLOOR_S
    assert px.hold.exit_checks == p1.hold.exit_checks and px.hold.max_gap == p1.hold.max_gap
    for k in ("verify_timeout_s", "close_retry_max_s", "verify_poll_s"):
        assert getattr(px, k) == getattr(p1, k)  # real calls take wall time at any speed
