"""Binance USD-M (``binanceusdm``, ``binance``) and the simulator's default dialect."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from venues.adapters.base import Adapter, Call
from venues.funding_map import CcxtRates
from venues.placing import RECV_WINDOW_MS


class BinanceAdapter(Adapter):
    family = "binance"
    exchange_ids = ("binanceusdm", "binance")
    sim_class = "binanceusdm"
    cid_param = "newClientOrderId"
    lookup_param = "origClientOrderId"
    cid_field = "newClientOrderId"
    cid_max_len = 36
    cid_format = "32 of [A-Za-z0-9] (venue: ≤ 36)"
    page_size = 1000  # userTrades and income: limit ≤ 1000
    binance_fields = True
    fills_by_order_id = True
    contract_sized = False  # USD-M: contractSize 1, quantities in base units
    recv_window_ms = RECV_WINDOW_MS  # sent as recvWindow with every signed request
    funding_interval_source = "fetchFundingIntervals (fundingInfo; unlisted: 8 h)"
    environments: ClassVar[dict[str, str]] = {"live": "", "demo": "demo", "testnet": "sandbox"}
    #: ``POST /fapi/v1/countdownCancelAll`` (weight 10) takes any ms (the venue checks every ~10 ms
    #: and advises against very short ones): 1 s is our floor
    dead_man_min_ms = 1000
    dead_man_scope = "symbol"

    async def arm_dead_man(self, call: Call, venue_symbol: str, ms: int) -> None:
        await call("fapiPrivatePostCountdownCancelAll", {"symbol": venue_symbol, "countdownTime": ms})

    async def funding_rates(self, call: Call, exchange: Any = None) -> Mapping[str, Mapping[str, Any]]:
        """The request ccxt's ``fetch_funding_rates`` sends (``premiumIndex`` of every market, the
        same weight), its rows parsed by ccxt's own ``parse_funding_rate`` only when asked for
        (``venues/funding_map.py``)."""
        if exchange is None or not hasattr(exchange, "fapiPublicGetPremiumIndex"):
            return await super().funding_rates(call, exchange)
        return CcxtRates(exchange, await call("fapiPublicGetPremiumIndex", {}))

    def ccxt_options(self) -> dict[str, Any]:
        return {"defaultType": "swap", "recvWindow": RECV_WINDOW_MS, "fetchMarkets": {"types": ["linear"]}}

    def margin_text(self) -> str:
        return "fetchMarginMode"
