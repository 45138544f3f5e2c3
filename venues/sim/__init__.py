"""Paper venue simulator speaking the Binance USD-M futures REST dialect.

``python -m venues.sim --name sim-a --port 8701`` (also ``hedgeflow sim``) runs one venue;
:func:`start_sim` runs one inside the current event loop (tests, benchmarks).
"""

DEFAULT_API_KEY = "hedgeflow-demo-key"
DEFAULT_API_SECRET = "hedgeflow-demo-secret"
DEFAULT_FUNDING_INTERVAL_S = 28800
ENV_API_KEY = "HEDGEFLOW_SIM_API_KEY"
ENV_API_SECRET = "HEDGEFLOW_SIM_API_SECRET"

from .app import SimHandle, SimOptions, start_sim  # noqa: E402
from .cli import build_parser, options_from_args, run  # noqa: E402

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
