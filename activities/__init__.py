"""Activities: every effect (venue I/O, alerts, ledger writes) lives here.

What a worker registers is listed once, in ``workers/registry.py``."""
