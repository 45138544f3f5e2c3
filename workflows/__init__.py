"""Workflows: decisions and durable state. No I/O here; every effect is an activity."""

from workflows.trade import TradeWorkflow

WORKFLOWS: list[type] = [TradeWorkflow]
