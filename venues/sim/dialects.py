"""The wire dialects the simulated venue speaks. One shared core (market, engine, funding,
faults, state, the ``/_sim/`` admin API) and, per dialect, only the wire format: the endpoint
table (paths, handlers, weights, which are signed), the venue's authentication, and how a core
:class:`~venues.sim.errors.SimError` (raised with Binance's codes, the core's lingua franca)
is rendered as that venue's error answer.

``hedgeflow sim --dialect NAME`` (``SimOptions.dialect``) picks one. A dialect module builds a
:class:`Dialect` and is listed in :data:`DIALECTS`; nothing else in the server changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SimError

#: (headers, raw query, body, parsed params, api_key=, secret=, server_ms=) → None or raises SimError
Authenticate = Callable[..., None]
#: (error, venue clock ms) → (JSON body, HTTP status)
RenderError = Callable[[SimError, int], tuple[Any, int]]


def binance_error(e: SimError, now_ms: int) -> tuple[Any, int]:
    return e.body(), e.status


@dataclass(frozen=True)
class Dialect:
    name: str
    endpoints: tuple  # of venues.sim.endpoints.Endpoint
    authenticate: Authenticate
    render_error: RenderError = binance_error
    #: response headers every answer carries (e.g. Binance's used-weight header): (sim) → headers
    headers: Callable[[Any], Mapping[str, str]] | None = None
    #: the ccxt unified symbol this venue's clients see for a core spec (``/_sim/state``);
    #: None: the spec's own (``BTC/USDT:USDT``)
    unified: Callable[[Any], str] | None = None
    #: the venue's own settlement interval, used unless ``--funding-interval`` says otherwise
    funding_interval_s: int = 8 * 3600
    #: the venue's base-tier fee rates, used unless ``--taker-fee`` / ``--maker-fee`` say otherwise
    taker_fee: str = "0.0005"
    maker_fee: str = "0.0002"


#: dialect name → module that defines ``DIALECT`` (imported on first use)
DIALECTS: dict[str, str] = {
    "binance": "venues.sim.endpoints",
    "bybit": "venues.sim.bybit.endpoints",
    "okx": "venues.sim.okx.endpoints",
    "hyperliquid": "venues.sim.hyperliquid.endpoints",
}


def get(name: str) -> Dialect:
    if name not in DIALECTS:
        raise ValueError(f"dialect: unknown {name!r}; one of {', '.join(sorted(DIALECTS))}")
    return importlib.import_module(DIALECTS[name]).DIALECT
