"""OKX perpetual swaps (``okx``).

* ``clOrdId``: 1-32 alphanumerics, hedgeflow's ids as they are.
* Quantities are contracts of ``ctVal`` (ccxt ``contractSize``, e.g. 0.01 BTC): the gateway's
  base ⇄ contracts conversion applies.
* Margin mode is chosen per order (``tdMode``): every order is sent cross.
* A request whose ``OK-ACCESS-TIMESTAMP`` is 30 s or more off the server's is refused (50102).
* API keys carry a passphrase (ccxt ``password``: ``api_password``,
  ``HEDGEFLOW_VENUE_<NAME>_API_PASSWORD``). OKX's demo trading is ccxt's sandbox mode
  (``x-simulated-trading: 1``), with demo keys.
"""

from __future__ import annotations

from typing import Any, ClassVar

from venues.adapters.base import Adapter

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
    margin_mode_sent = "cross"

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
