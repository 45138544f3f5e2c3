"""Paper venue simulator speaking the Binance USD-M futures REST dialect.

``python -m venues.sim --name sim-a --port 8701`` (also ``hedgeflow sim``) runs one venue;
:func:`start_sim` runs one inside the current event loop (tests, benchmarks).

Layout: ``options`` (settings, defaults) · ``cli`` (command line) · ``server`` (aiohttp app,
middleware, :func:`start_sim`) · ``endpoints`` (the endpoint tables) · ``api_market`` /
``api_account`` / ``api_orders`` (Binance handlers) · ``admin`` (``/_sim/`` API) · ``auth``,
``ratelimit``, ``faults``, ``wire`` (request plumbing) · ``venue`` (live state, funding) ·
``engine``, ``resting`` (resting orders matched per tick), ``liquidation``, ``records``, ``errors`` (accounting) · ``market`` (prices, rates, books, replay) ·
``store`` (SQLite). The simulator imports only ``domain`` and ``config`` from the rest of
the project.
"""

from .cli import build_parser, options_from_args, run
from .options import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_FUNDING_INTERVAL_S,
    ENV_API_KEY,
    ENV_API_SECRET,
    SimOptions,
)
from .server import SimHandle, start_sim

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_FUNDING_INTERVAL_S",
    "ENV_API_KEY",
    "ENV_API_SECRET",
    "SimHandle",
    "SimOptions",
    "build_parser",
    "options_from_args",
    "run",
    "start_sim",
]
