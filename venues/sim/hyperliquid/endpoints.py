"""The Hyperliquid dialect's endpoint table and :data:`DIALECT`.

Both endpoints are unsigned at the HTTP level (the server's ``authenticate`` is a no-op):
``/info`` needs no credentials and ``/exchange`` verifies each action's signature itself
(:mod:`.exchange`). Weights: 2 per call (Hyperliquid weighs l2Book, allMids,
clearinghouseState and orderStatus 2, other info queries 20, actions 1 + batch/40; the body is
JSON, which the server's weight functions do not see).

Funding is hourly: the venue reports Hyperliquid's hourly ``funding`` and, unless started with
its own ``--funding-interval`` (or a replay file), settles every hour (:func:`.wire.state`)."""

from __future__ import annotations

from typing import Any

from ..dialects import Dialect
from ..endpoints import Endpoint
from . import exchange, info
from . import wire as w

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/info", info.info, 2),
    Endpoint("POST", "/exchange", exchange.exchange, 2),
)


def _no_auth(headers: Any, raw_query: str, body: str, params: dict, **kw: Any) -> None:
    """Nothing to check at the HTTP level: /exchange verifies the action's signature."""


def _headers(sim: Any) -> dict[str, str]:
    w.state(sim)  # first contact sets the hourly funding schedule
    return {}


DIALECT = Dialect("hyperliquid", ENDPOINTS, _no_auth, render_error=w.render_error, headers=_headers,
                  unified=w.unified, funding_interval_s=3600,  # Hyperliquid settles every hour
                  taker_fee="0.00045", maker_fee="0.00015")  # the base tier of perpetuals
