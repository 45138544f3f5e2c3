"""Workflows: decisions and durable state. No I/O here; every effect is an activity."""

from workflows.reconcile import ReconcileWorkflow
from workflows.scanner import ScannerWorkflow
from workflows.trade import TradeWorkflow

WORKFLOWS: list[type] = [TradeWorkflow, ScannerWorkflow, ReconcileWorkflow]
