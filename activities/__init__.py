"""Activities: every effect (venue I/O, alerts, ledger writes) lives here."""

from __future__ import annotations

from config import Settings
from venues.pool import GatewayPool


def build_activities(settings: Settings, pool: GatewayPool) -> list:
    from activities.ledger import LedgerActivities
    from activities.reconcile import ReconcileActivities
    from activities.scanner import ScannerActivities
    from activities.trade import TradeActivities

    return [
        *TradeActivities(settings, pool).all(),
        *LedgerActivities(settings, pool).all(),
        *ReconcileActivities(settings, pool).all(),
        *ScannerActivities(settings, pool).all(),
    ]
