"""Workflows: decisions and durable state. No I/O here; every effect is an activity.

What a worker registers is listed once, in ``workers/registry.py``."""
