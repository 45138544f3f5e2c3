"""The one registry of what a worker runs: its workflows and its activities.

Activities that ask about running trades get ``control.trades`` injected as their
``activities.ports.TradeDirectory`` (it needs the workflow definitions, which sit above them).
"""

from __future__ import annotations

from typing import Any

from activities.ledger import LedgerActivities
from activities.reconcile import ReconcileActivities
from activities.scanner import ScannerActivities
from activities.trade import TradeActivities
from config import Settings
from control import trades as control_trades
from workflows.alerts import AlertWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.scanner import ScannerWorkflow
from workflows.trade import TradeWorkflow

WORKFLOWS: list[type] = [TradeWorkflow, ScannerWorkflow, ReconcileWorkflow, AlertWorkflow]


def build_activities(settings: Settings, pool: Any) -> list:
    """Every activity of the worker, bound to its gateway pool (one ccxt client per venue)."""
    return [
        *TradeActivities(settings, pool).all(),
        *LedgerActivities(settings, pool).all(),
        *ReconcileActivities(settings, pool, control_trades).all(),
        *ScannerActivities(settings, pool, control_trades).all(),
    ]
