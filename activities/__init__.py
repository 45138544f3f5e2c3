"""Activities: every effect (venue I/O, alerts, ledger writes) lives here."""

from __future__ import annotations

from config import Settings
from venues.pool import GatewayPool


def build_activities(settings: Settings, pool: GatewayPool) -> list:
    from activities.trade import TradeActivities

    return TradeActivities(settings, pool).all()
