"""The OKX v5 dialect of the simulated venue (``hedgeflow sim --dialect okx``): the endpoint
table (the paths ccxt's ``okx`` calls for USDT-margined perpetual swaps), OKX authentication
and OKX's error answers. Shared core, faults and the ``/_sim/`` admin API are the venue's own.

Requests: GET parameters in the query, POST parameters as a JSON body (an object, or a list for
the batch endpoints); every answer is OKX's ``{"code": "0", "msg": "", "data": [...]}``."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from .. import dead_man
from ..dialects import Dialect
from ..endpoints import Endpoint
from ..errors import SimError
from ..venue import Sim
from . import account, market, trade
from .auth import authenticate, render_error, verify
from .wire import OkxError, ok

log = logging.getLogger("hedgeflow.sim")

OkxHandler = Callable[[Sim, web.Request, dict], Awaitable[Any]]
API = "/api/v5/"


def _params(raw_query: str, body: str, request: web.Request) -> dict:
    p: dict[str, Any] = dict(parse_qsl(raw_query, keep_blank_values=True))
    if body.strip():
        try:
            data = json.loads(body)
        except ValueError:
            raise OkxError("50002", "Json data format error") from None
        if isinstance(data, list):
            p["_items"] = data
        elif isinstance(data, dict):
            p.update(data)
        else:
            raise OkxError("50002", "Json data format error")
    return p


def _wrap(h: OkxHandler, signed: bool) -> Callable[[Sim, web.Request, dict], Awaitable[Any]]:
    async def handler(sim: Sim, request: web.Request, _: dict) -> Any:
        raw = request.raw_path
        raw_query = raw.split("?", 1)[1] if "?" in raw else ""
        body = (await request.read()).decode("utf-8", "replace") if request.body_exists else ""
        if signed:
            verify(sim, request, body)
        try:
            out = await h(sim, request, _params(raw_query, body, request))
        except (SimError, web.HTTPException, asyncio.CancelledError):
            raise
        except Exception as e:  # pragma: no cover - answered in OKX's shape, not Binance's
            log.exception("okx handler error")
            raise OkxError("50026", f"System error, please try again later. ({type(e).__name__})", 500) from e
        return out if isinstance(out, dict) else ok(out)

    return handler


def E(method: str, path: str, h: OkxHandler, weight: int = 1, signed: bool = False) -> Endpoint:
    return Endpoint(method, API + path, _wrap(h, signed), weight, signed)


ENDPOINTS: tuple[Endpoint, ...] = (
    # public
    E("GET", "public/time", market.server_time),
    E("GET", "system/status", market.system_status),
    E("GET", "public/instruments", market.instruments),
    E("GET", "public/funding-rate", market.funding_rate),
    E("GET", "public/funding-rate-history", market.funding_rate_history),
    E("GET", "public/mark-price", market.mark_price),
    E("GET", "market/books", market.books),
    E("GET", "market/books-full", market.books),
    E("GET", "market/ticker", market.ticker),
    E("GET", "market/tickers", market.tickers),
    # account (signed)
    E("GET", "asset/currencies", market.currencies, signed=True),
    E("GET", "account/config", account.config, signed=True),
    E("GET", "account/balance", account.balance, signed=True),
    E("GET", "account/positions", account.positions, signed=True),
    E("POST", "account/set-leverage", account.set_leverage, signed=True),
    E("GET", "account/leverage-info", account.leverage_info, signed=True),
    E("POST", "account/set-position-mode", account.set_position_mode, signed=True),
    E("GET", "account/bills", account.bills, signed=True),
    E("GET", "account/bills-archive", account.bills, signed=True),
    # trade (signed)
    E("POST", "trade/order", trade.place_order, signed=True),
    E("POST", "trade/batch-orders", trade.batch_orders, signed=True),
    E("GET", "trade/order", trade.get_order, signed=True),
    E("POST", "trade/cancel-order", trade.cancel_order, signed=True),
    E("POST", "trade/cancel-batch-orders", trade.cancel_batch, signed=True),
    E("POST", "trade/cancel-all-after", dead_man.okx_cancel_all_after, signed=True),
    E("GET", "trade/orders-pending", trade.orders_pending, signed=True),
    E("GET", "trade/orders-history", trade.orders_history, signed=True),
    E("GET", "trade/fills", trade.fills, signed=True),
    E("GET", "trade/fills-history", trade.fills_history, signed=True),
)

DIALECT = Dialect("okx", ENDPOINTS, authenticate, render_error=render_error,
                  taker_fee="0.0005", maker_fee="0.0002")  # the base tier (Lv1) of swaps
