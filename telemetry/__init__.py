"""Telemetry: metrics and alerts. They observe trading and never gate it."""
