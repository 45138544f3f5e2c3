"""The ledger: trades, orders, fills, funding payments, incidents and scanner decisions.

Written only by idempotent activities (``activities/ledger.py``), never from workflow code.
"""

from ledger.repository import Ledger, PnL, mask_url, migrate  # noqa: F401
