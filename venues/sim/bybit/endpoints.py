"""Endpoint table of the Bybit v5 dialect and its :data:`DIALECT` (listed in
:data:`venues.sim.dialects.DIALECTS` as ``bybit``).

Weights are 1 per request against the venue's per-minute limit (Bybit limits per endpoint and
UID; the simulator keeps one budget); answers carry Bybit's ``X-Bapi-Limit*`` headers."""

from __future__ import annotations

from typing import Any

from .. import dead_man
from ..dialects import Dialect
from ..endpoints import Endpoint as E
from . import account, market, orders
from .auth import authenticate
from .errors import render_error

ENDPOINTS: tuple[E, ...] = (
    # public market data
    E("GET", "/v5/market/time", market.server_time),
    E("GET", "/v5/system/status", market.system_status),
    E("GET", "/v5/market/instruments-info", market.instruments_info),
    E("GET", "/v5/market/tickers", market.tickers),
    E("GET", "/v5/market/orderbook", market.orderbook),
    E("GET", "/v5/market/funding/history", market.funding_history),
    # account (signed)
    E("GET", "/v5/user/query-api", account.query_api, signed=True),
    E("GET", "/v5/account/info", account.account_info, signed=True),
    E("GET", "/v5/asset/coin/query-info", account.coin_info, signed=True),
    E("GET", "/v5/account/wallet-balance", account.wallet_balance, signed=True),
    E("GET", "/v5/account/fee-rate", account.fee_rate, signed=True),
    E("GET", "/v5/account/transaction-log", account.transaction_log, signed=True),
    E("POST", "/v5/account/set-margin-mode", account.set_margin_mode, signed=True),
    E("GET", "/v5/position/list", account.position_list, signed=True),
    E("POST", "/v5/position/set-leverage", account.set_leverage, signed=True),
    E("POST", "/v5/position/switch-mode", account.switch_mode, signed=True),
    # orders and executions (signed)
    E("POST", "/v5/order/create", orders.create, signed=True),
    E("POST", "/v5/order/cancel", orders.cancel, signed=True),
    E("POST", "/v5/order/cancel-all", orders.cancel_all, signed=True),
    E("POST", "/v5/order/disconnected-cancel-all", dead_man.bybit_handler(), signed=True),
    E("GET", "/v5/order/realtime", orders.realtime, signed=True),
    E("GET", "/v5/order/history", orders.history, signed=True),
    E("GET", "/v5/execution/list", orders.executions, signed=True),
)


def _headers(sim: Any) -> dict[str, str]:
    lim = sim.limiter
    reset = (lim.minute + 1) * 60_000
    return {"X-Bapi-Limit": str(lim.limit), "X-Bapi-Limit-Status": str(max(0, lim.limit - lim.used)),
            "X-Bapi-Limit-Reset-Timestamp": str(reset)}


#: base tier of Bybit USDT perpetuals: taker 0.055 %, maker 0.02 %
DIALECT = Dialect("bybit", ENDPOINTS, authenticate, render_error=render_error, headers=_headers,
                  taker_fee="0.00055", maker_fee="0.0002")
