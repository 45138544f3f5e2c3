"""OKX perpetual swaps (``okx``).

* ``clOrdId``: 1-32 alphanumerics, hedgeflow's ids as they are.
* Quantities are contracts of ``ctVal`` (ccxt ``contractSize``, e.g. 0.01 BTC): the gateway's
  base ⇄ contracts conversion applies.
* Margin mode is chosen per order (``tdMode``): every order is sent cross.
* Funding rates carry no mark price: the adapter reads the mark prices in bulk as well.
* A request whose ``OK-ACCESS-TIMESTAMP`` is 30 s or more off the server's is refused (50102).
* API keys carry a passphrase (ccxt ``password``: ``api_password``,
  ``HEDGEFLOW_VENUE_<NAME>_API_PASSWORD``). OKX's demo trading is ccxt's sandbox mode
  (``x-simulated-trading: 1``), with demo keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from venues.adapters.base import Adapter, Call

#: OKX refuses a request whose timestamp is this far from its clock (error 50102)
TIMESTAMP_EXPIRY_MS = 30_000


class OkxAdapter(Adapter):
    family = "okx"
    exchange_ids = ("okx",)
    sim_class = "okx"
    cid_param = "clOrdId"
    lookup_param = "clOrdId"
    cid_field = "clOrdId"
    cid_format = "1-32 of [A-Za-z0-9]"
    page_size = 100  # fills-history and bills: limit ≤ 100 (ccxt sends no limit with since: 100)
    contract_sized = True
    recv_window_ms = TIMESTAMP_EXPIRY_MS
    funding_interval_source = "nextFundingTime − fundingTime (ccxt interval)"
    environments: ClassVar[dict[str, str]] = {"live": "", "demo": "sandbox", "testnet": "sandbox"}
    #: ``POST /api/v5/trade/cancel-all-after``: ``timeOut`` 10–120 s (ccxt sends whole seconds)
    dead_man_min_ms = 10_000
    margin_mode_sent = "cross"
    history_newest_first = True  # fills-history and bills: newest first

    def ccxt_options(self) -> dict[str, Any]:
        return {"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}}  # no spot / future / option

    async def funding_rates(self, call: Call, exchange: Any = None) -> Mapping[str, Mapping[str, Any]]:
        # /public/funding-rate carries no mark price: one bulk /public/mark-price read as well
        rates, marks = await asyncio.gather(call("fetch_funding_rates"), call("fetch_mark_prices"))
        return {s: {**fr, "markPrice": fr.get("markPrice") or (marks.get(s) or {}).get("markPrice")}
                for s, fr in rates.items()}

    def funding_params(self, limit: int, start_ms: int, end_ms: int) -> dict[str, Any]:
        # ccxt 4.5.90 reads /account/bills-archive with neither ``since`` nor ``until``: the range, sent
        return {"begin": str(start_ms), "end": str(end_ms)}

    def order_params(self, vcid: str, reduce_only: bool) -> dict[str, Any]:
        return {**super().order_params(vcid, reduce_only), "tdMode": self.margin_mode_sent}

    async def margin_mode(self, call: Any, has: Any, symbol: str) -> str:
        return self.margin_mode_sent  # OKX has no account margin mode: every order says tdMode

    def validity_text(self) -> str:
        return f"timestamp expiry {self.recv_window_ms} ms (50102) + margins"

    def market_text(self) -> str:
        return "market (in contracts)"

    def margin_text(self) -> str:
        return "cross, sent with every order (tdMode)"

    def credentials_text(self) -> str:
        return "apiKey, secret, password (passphrase)"
