"""Hyperliquid perpetuals (``hyperliquid``).

* ``cloid``: a 128-bit hex string; the adapter sends ``0x`` + 32 hex digits hashed from
  hedgeflow's client id (:func:`domain.ids.hex_client_order_id`), as deterministic as it.
* No market orders on the venue: ccxt sends an IOC limit at the reference price ± its slippage
  (``options['defaultSlippage']``, 5 %), so a market order needs a price (the caller's mark, else
  the book's best price on the order's side).
* Hyperliquid has no hedge mode (one position per asset): nothing to verify. Margin is cross
  (ccxt's ``setLeverage`` sets it with the leverage); ccxt cannot read it back.
* Funding settles every hour. A signed action's nonce stays valid for days: no validity window
  shorter than the gateway's own.
* ``orderStatus`` carries no average price and no fee: a filled order looked up by cloid gets
  both from its fills.
* ccxt's client set-up: no builder fee is charged (``builderFee`` False) and no referrer is set.
* Perpetuals settle in USDC (``BTC/USDC:USDC``): the gateway names them as the USDT-margined
  ``BTC/USDT:USDT`` of every other venue (``settle_alias``, :mod:`venues.symbols`), so a pair is
  formed by underlying. Prices and PnL are in USDC, taken 1:1 as USD.
* Signed with a wallet: ``walletAddress`` (``wallet_address`` or ``api_key``) and its private key
  (``api_secret``); an API wallet's key works as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from config.settings import VenueConfig
from domain.ids import hex_client_order_id, is_valid_hex_client_order_id
from venues.adapters.base import Adapter, Call
from venues.errors import OrderNotFound
from venues.parse import d0

#: ccxt's default bound of an IOC "market" order (options['defaultSlippage'])
SLIPPAGE = Decimal("0.05")


class HyperliquidAdapter(Adapter):
    family = "hyperliquid"
    exchange_ids = ("hyperliquid",)
    sim_class = "hyperliquid"
    cid_param = "clientOrderId"
    lookup_param = "clientOrderId"
    cid_field = "cloid"
    cid_max_len = 34
    renames_client_id = True
    cid_format = "0x + 32 hex (hash of the id)"
    page_size = 500  # userFunding: 500 rows per answer (userFills: 2000)
    contract_sized = False
    market_needs_price = True
    position_mode_read = ""
    funding_interval_source = "1 h (fixed)"
    environments: ClassVar[dict[str, str]] = {"live": "", "testnet": "sandbox"}
    #: ``scheduleCancel``: at least 5 s ahead of the venue's clock (ccxt: our nonce + the countdown;
    #: 1 s more for the request's way there); the venue also wants enough volume traded for it
    dead_man_min_ms = 6000

    settle_currency = "USDC"
    settle_alias = "USDC"  # BTC/USDC:USDC answers to our BTC/USDT:USDT

    def ccxt_options(self) -> dict[str, Any]:
        # perpetuals only (no spot, hip3); no ccxt builder fee on our orders (0 %, ccxt's default is
        # 0.01 % = 1 bp a fill) and no referrer code set on the account
        return {"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}, "builderFee": False, "refSet": True}

    def venue_client_id(self, cid: str) -> str:
        return hex_client_order_id(cid)

    def is_valid_venue_client_id(self, vcid: str) -> bool:
        return is_valid_hex_client_order_id(vcid)

    def market_order(self, side: str, ref_price: Decimal | None) -> tuple[str, Decimal | None, dict[str, Any]]:
        if ref_price is None or ref_price <= 0:
            raise ValueError("hyperliquid: a market order needs a reference price")
        return "market", ref_price, {"slippage": str(SLIPPAGE)}

    async def fetch_by_client_id(self, call: Call, symbol: str, vcid: str) -> Mapping[str, Any]:
        order = await call("fetch_order", None, symbol, self.lookup_params(vcid))
        if not order or not order.get("id"):  # {"status": "unknownOid"} parses to an empty order
            raise OrderNotFound(f"hyperliquid: no order with cloid {vcid}")
        if d0(order.get("filled")) > 0 and not order.get("average"):
            order = await self._with_fills(call, symbol, order)
        return order

    async def _with_fills(self, call: Call, symbol: str, order: Mapping[str, Any]) -> Mapping[str, Any]:
        """``orderStatus`` says how much filled but neither at what price nor the fee: both from
        the order's fills (``userFillsByTime`` from the order's time)."""
        ts = order.get("timestamp")
        trades = await call("fetch_my_trades", symbol, int(ts) - 1 if ts else None, None, {})
        mine = [t for t in trades or [] if str(t.get("order")) == str(order.get("id"))]
        qty = sum((d0(t.get("amount")) for t in mine), Decimal(0))
        if qty <= 0:
            return order
        notional = sum((d0(t.get("amount")) * d0(t.get("price")) for t in mine), Decimal(0))
        fee = sum((d0((t.get("fee") or {}).get("cost")) for t in mine), Decimal(0))
        return {**order, "average": str(notional / qty), "fee": {"cost": str(fee), "currency": self.settle_currency}}

    async def one_way_mode(self, call: Call, has: Mapping[str, Any]) -> bool:
        return True  # one position per asset: the venue has no hedge mode

    def market_intervals(self, markets: Mapping[str, Mapping[str, Any]]) -> dict[str, Decimal]:
        return {self.our_symbol(s): Decimal(1) for s, m in markets.items() if m.get("swap")}

    def credentials(self, venue: VenueConfig) -> dict[str, str]:
        out: dict[str, str] = {}
        wallet = venue.wallet_address or (venue.api_key.get_secret_value() if venue.api_key else None)
        if wallet:
            out["walletAddress"] = wallet
        if venue.api_secret is not None:
            out["privateKey"] = venue.api_secret.get_secret_value()
        return out

    def position_mode_text(self) -> str:
        return "none (venue is one-way only)"

    def lookup_text(self) -> str:
        return "fetchOrder + `clientOrderId` (cloid)"

    def market_text(self) -> str:
        return "IOC limit at the reference price ± 5 % (ccxt slippage; the mark, else the book)"

    def margin_text(self) -> str:
        return "cross (set with the leverage), not read"

    def validity_text(self) -> str:
        return "none (nonce valid for days): the client timeout (≥ 5000 ms) + margins"

    def credentials_text(self) -> str:
        return "walletAddress + privateKey"
