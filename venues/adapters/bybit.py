"""Bybit v5, linear perpetuals (``bybit``).

* Client id ``orderLinkId`` (≤ 36 characters): hedgeflow's 32 alphanumerics as they are.
* Look-up: ccxt's ``fetchOrder`` on a unified account reads only the last 500 orders and
  refuses without ``acknowledged``; the adapter reads ``/v5/order/realtime`` (``fetchOpenOrders``)
  and then ``/v5/order/history`` (``fetchCanceledAndClosedOrders``) filtered by ``orderLinkId``.
* Position mode: ccxt 4.5.90 has no ``fetchPositionMode``; every Bybit position says its
  ``positionIdx`` (0 one-way, 1/2 hedge), so open positions are checked. Without any the check
  cannot see the mode; an order sent in hedge mode without ``positionIdx`` is then refused
  by the venue (nothing opens).
* Signed requests carry ``X-BAPI-RECV-WINDOW`` (ccxt ``options['recvWindow']``): the same
  validity bound as Binance's, in a header.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from venues.adapters.base import Adapter, Call
from venues.errors import OrderNotFound
from venues.parse import D
from venues.placing import RECV_WINDOW_MS


class BybitAdapter(Adapter):
    family = "bybit"
    exchange_ids = ("bybit",)
    sim_class = "bybit"
    cid_param = "clientOrderId"  # ccxt sends it as orderLinkId
    lookup_param = "orderLinkId"
    cid_field = "orderLinkId"
    cid_max_len = 36
    cid_format = "32 of [A-Za-z0-9] (venue: ≤ 36)"
    page_size = 100  # execution list (fills and funding): limit ≤ 100
    contract_sized = False  # linear: contractSize 1
    recv_window_ms = RECV_WINDOW_MS
    position_mode_read = "positions' positionIdx"
    funding_interval_source = "instruments fundingInterval (minutes, via the loaded markets)"
    environments: ClassVar[dict[str, str]] = {"live": "", "demo": "demo", "testnet": "sandbox"}
    #: ``POST /v5/order/disconnected-cancel-all`` (DCP): ``timeWindow`` 3–300 s (whole seconds)
    dead_man_min_ms = 3000
    funding_sign = -1  # execType Funding: execFee > 0 when paid
    history_newest_first = True  # /v5/execution/list: newest first

    def ccxt_options(self) -> dict[str, Any]:
        # linear markets only: no spot / inverse / option instrument queries
        return {"defaultType": "swap", "defaultSubType": "linear", "recvWindow": RECV_WINDOW_MS,
                "fetchMarkets": {"types": ["linear"]}}

    def funding_params(self, limit: int, start_ms: int, end_ms: int) -> dict[str, Any]:
        return {"limit": limit}  # ccxt 4.5.90 sends ``size``, which /v5/execution/list ignores (default 50)

    async def fetch_by_client_id(self, call: Call, symbol: str, vcid: str) -> Mapping[str, Any]:
        params = self.lookup_params(vcid)
        for method in ("fetch_open_orders", "fetch_canceled_and_closed_orders"):
            rows = await call(method, symbol, None, None, dict(params))
            found = [o for o in rows or [] if o.get("clientOrderId") == vcid]
            if found:
                return found[-1]
        raise OrderNotFound(f"bybit: no order with orderLinkId {vcid}")

    async def one_way_mode(self, call: Call, has: Mapping[str, Any]) -> bool:
        rows = await call("fetch_positions", None)
        return not any(str((p.get("info") or {}).get("positionIdx", "0")) in ("1", "2") for p in rows or [])

    def market_intervals(self, markets: Mapping[str, Mapping[str, Any]]) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for symbol, m in markets.items():
            minutes = D((m.get("info") or {}).get("fundingInterval"))
            if m.get("swap") and minutes is not None and minutes > 0:
                out[symbol] = minutes / Decimal(60)
        return out

    def validity_text(self) -> str:
        return f"recvWindow {self.recv_window_ms} ms (header) + margins"

    def lookup_text(self) -> str:
        return "open orders, then order history, by `orderLinkId`"

    def margin_text(self) -> str:
        return "fetchMarginMode (account)"
