"""The endpoint tables of the simulated venue: the one place that says which paths exist,
which handler answers each, what a request costs in weight and whether it must be signed.
:mod:`venues.sim.server` derives its routes, rate limiting and auth from these tables.

Weights approximate Binance's; a weight is an ``int`` or a function of the request's
parameters (for endpoints whose cost depends on ``symbol`` or ``limit``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import admin, dead_man
from . import api_account as account
from . import api_market as market
from . import api_orders as orders
from .auth import authenticate

Handler = Callable[[Any, web.Request, dict], Awaitable[object]]  # (sim, request, params) -> JSON-able
AdminHandler = Callable[[Any, web.Request], Awaitable[web.Response]]  # (sim, request) -> response
Weight = int | Callable[[dict], int]


@dataclass(frozen=True)
class Endpoint:
    """One Binance-dialect endpoint."""

    method: str
    path: str
    handler: Handler
    weight: Weight = 1
    signed: bool = False

    def cost(self, params: dict) -> int:
        """Request weight of one call with these parameters."""
        return self.weight(params) if callable(self.weight) else self.weight


@dataclass(frozen=True)
class AdminEndpoint:
    """One ``/_sim/`` endpoint: unsigned, free of weight and faults."""

    method: str
    path: str
    handler: AdminHandler


def _all_symbols(weight: int) -> Callable[[dict], int]:
    """1 for one symbol, ``weight`` when ``symbol`` is absent (all symbols)."""
    return lambda params: 1 if "symbol" in params else weight


def _depth_weight(params: dict) -> int:
    v = str(params.get("limit") or "500")
    lim = int(v) if v.isdigit() else 500
    return 2 if lim <= 50 else 5 if lim <= 100 else 10 if lim <= 500 else 20


E = Endpoint

ENDPOINTS: tuple[Endpoint, ...] = (
    # public market data
    E("GET", "/fapi/v1/ping", market.ping),
    E("GET", "/fapi/v1/time", market.server_time),
    E("GET", "/fapi/v1/exchangeInfo", market.exchange_info),
    E("GET", "/fapi/v1/premiumIndex", market.premium_index, _all_symbols(10)),
    E("GET", "/fapi/v1/fundingInfo", market.funding_info),
    E("GET", "/fapi/v1/fundingRate", market.funding_rate),
    E("GET", "/fapi/v1/depth", market.depth, _depth_weight),
    E("GET", "/fapi/v1/ticker/bookTicker", market.book_ticker, 2),
    E("GET", "/fapi/v1/ticker/price", market.ticker_price),
    E("GET", "/fapi/v2/ticker/price", market.ticker_price),
    # account (signed)
    E("GET", "/fapi/v2/account", account.account_v2, 5, signed=True),
    E("GET", "/fapi/v3/account", account.account_v3, 5, signed=True),
    E("GET", "/fapi/v2/balance", account.balance, 5, signed=True),
    E("GET", "/fapi/v3/balance", account.balance, 5, signed=True),
    E("GET", "/fapi/v2/positionRisk", account.position_risk_v2, 5, signed=True),
    E("GET", "/fapi/v3/positionRisk", account.position_risk_v3, 5, signed=True),
    E("POST", "/fapi/v1/leverage", account.leverage, signed=True),
    E("GET", "/fapi/v1/leverageBracket", account.leverage_bracket, signed=True),
    E("GET", "/fapi/v1/symbolConfig", account.symbol_config, signed=True),
    E("GET", "/fapi/v1/commissionRate", account.commission_rate, 20, signed=True),
    E("GET", "/fapi/v1/positionSide/dual", account.get_dual, 30, signed=True),
    E("POST", "/fapi/v1/positionSide/dual", account.post_dual, signed=True),
    E("GET", "/fapi/v1/multiAssetsMargin", account.multi_assets, 30, signed=True),
    E("POST", "/fapi/v1/marginType", account.margin_type, signed=True),
    # orders and history (signed)
    E("POST", "/fapi/v1/order", orders.new_order, signed=True),
    E("GET", "/fapi/v1/order", orders.get_order, signed=True),
    E("DELETE", "/fapi/v1/order", orders.cancel_order, signed=True),
    E("DELETE", "/fapi/v1/allOpenOrders", orders.cancel_all, signed=True),
    E("POST", "/fapi/v1/countdownCancelAll", dead_man.binance_countdown, 10, signed=True),
    E("GET", "/fapi/v1/openOrders", orders.open_orders, _all_symbols(40), signed=True),
    E("GET", "/fapi/v1/openOrder", orders.open_order, signed=True),
    E("GET", "/fapi/v1/allOrders", orders.all_orders, 5, signed=True),
    E("GET", "/fapi/v1/userTrades", orders.user_trades, 5, signed=True),
    E("GET", "/fapi/v1/income", orders.income, 30, signed=True),
)

ADMIN_ENDPOINTS: tuple[AdminEndpoint, ...] = (
    AdminEndpoint("GET", "/_sim/state", admin.state),
    AdminEndpoint("GET", "/_sim/health", admin.health),
    AdminEndpoint("GET", "/_sim/faults", admin.get_faults),
    AdminEndpoint("POST", "/_sim/faults", admin.post_faults),
    AdminEndpoint("POST", "/_sim/market", admin.post_market),
    AdminEndpoint("GET", "/_sim/market", admin.get_market),
    AdminEndpoint("POST", "/_sim/settle", admin.post_settle),
)


def _binance_headers(sim: Any) -> dict[str, str]:
    return {"X-MBX-USED-WEIGHT-1M": str(sim.limiter.used)}


def _dialect():
    from .dialects import Dialect

    return Dialect("binance", ENDPOINTS, authenticate, headers=_binance_headers)


DIALECT = _dialect()
