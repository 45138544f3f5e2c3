"""What differs between venue families, in one place: :class:`Adapter` (the hooks the gateway
calls) and :class:`Capabilities` (the same, as text for the README's capability table).

An adapter is pure: it never holds the ccxt instance. Hooks that must ask the venue get the
gateway's ``call`` (``call(method, *args)``: mapped errors, rate limit) and the instance's
``has`` table. Client ids: the workflows derive one id per (trade, leg, step) with
:func:`domain.ids.client_order_id` (32 of [A-Za-z0-9]); :meth:`Adapter.venue_client_id` turns it,
deterministically, into the id this venue accepts (the same id where it fits).

Secrets: :meth:`Adapter.credentials` hands them to the ccxt constructor only; nothing here logs
them, and workflow payloads carry venue names, never credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from config.settings import VenueConfig
from domain.ids import client_order_id as derive_client_order_id
from domain.ids import is_valid_client_order_id
from venues import parse, symbols
from venues.placing import RECV_WINDOW_MS

Call = Callable[..., Awaitable[Any]]
ENVIRONMENTS = ("live", "demo", "testnet")


@dataclass(frozen=True)
class Capabilities:
    """One row of the capability table (every entry a short text)."""

    family: str
    ccxt_ids: str
    client_id: str
    lookup: str
    market_orders: str
    position_mode: str
    margin_mode: str
    page_size: str
    quantities: str
    funding_interval: str
    credentials: str
    validity_window: str
    environments: str


class Adapter:
    """The generic ccxt venue; families override the class attributes and hooks they need."""

    family: ClassVar[str] = "generic"
    #: ccxt ids this adapter is chosen for (the generic one: any other id)
    exchange_ids: ClassVar[tuple[str, ...]] = ()
    #: ccxt class a simulator of this dialect is reached with (None: no simulator dialect)
    sim_class: ClassVar[str | None] = None
    #: the venue knows our client id in another form (:meth:`venue_client_id` is not the identity)
    renames_client_id: ClassVar[bool] = False
    #: ccxt params naming the client id: when placing, and when looking up / cancelling
    cid_param: ClassVar[str] = "clientOrderId"
    lookup_param: ClassVar[str] = "clientOrderId"
    cid_max_len: ClassVar[int] = 32
    cid_format: ClassVar[str] = "1-32 of [A-Za-z0-9]"
    #: the venue's own name of the client id field (for the capability table)
    cid_field: ClassVar[str] = "clientOrderId"
    #: rows asked for per history query (the venue's maximum or less: a full page means "read on")
    page_size: ClassVar[int] = 100
    #: parse the raw Binance USD-M fields of ccxt answers (positionAmt, executedQty, income ...)
    binance_fields: ClassVar[bool] = False
    #: our trades can be read per order id without a time range (Binance ``orderId``)
    fills_by_order_id: ClassVar[bool] = False
    #: ccxt amounts are contracts of the market's contractSize (the gateway converts base ⇄ contracts);
    #: False: base units (contractSize 1, the conversion is the identity)
    contract_sized: ClassVar[bool] = True
    #: market orders need a reference price (ccxt bounds the IOC "market" order with it)
    market_needs_price: ClassVar[bool] = False
    #: the venue refuses a signed request older than this (ms); None: no such bound
    recv_window_ms: ClassVar[int | None] = None
    #: position mode: how one-way mode is verified ("" where ccxt has no read: skipped)
    position_mode_read: ClassVar[str] = "fetchPositionMode"
    funding_interval_source: ClassVar[str] = "funding rates' interval, else fetchFundingIntervals, else 8 h"
    #: a full history page holds the newest rows of the range asked (Bybit, OKX), not the oldest
    history_newest_first: ClassVar[bool] = False
    #: the currency margin and PnL settle in (the balance the gateway reports)
    settle_currency: ClassVar[str] = "USDT"
    #: the settlement currency the venue names our ``X/USDT:USDT`` markets with (Hyperliquid
    #: ``X/USDC:USDC``); None: the venue's names are ours (:mod:`venues.symbols`)
    settle_alias: ClassVar[str | None] = None
    #: ccxt's funding history amount × this = income (> 0 received); -1 where the venue reports
    #: what was paid as positive (Bybit's execFee)
    funding_sign: ClassVar[int] = 1
    environments: ClassVar[dict[str, str]] = {"live": "", "testnet": "sandbox"}
    #: the venue's dead-man's switch for resting orders (:mod:`venues.dead_man`): the shortest
    #: countdown it takes (ms); None: none known (a maker quote then rests without one)
    dead_man_min_ms: ClassVar[int | None] = None
    #: what a switch that fires cancels: "symbol" (its own symbol's orders) or "account" (all)
    dead_man_scope: ClassVar[str] = "account"

    def __init__(self, exchange_id: str) -> None:
        self.exchange_id = exchange_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.exchange_id!r})"

    # ------------------------------------------------------------------ market names
    def venue_symbol(self, symbol: str) -> str:
        """The venue's name of our market ``symbol`` (the identity unless ``settle_alias``)."""
        return symbols.to_venue_symbol(symbol, self.settle_alias)

    def our_symbol(self, venue_symbol: str) -> str:
        """Our name of the venue's market ``venue_symbol``."""
        return symbols.to_our_symbol(venue_symbol, self.settle_alias)

    def to_venue(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """ccxt call arguments with our symbols in the venue's names."""
        return symbols.to_venue(args, self.settle_alias)

    def from_venue(self, result: Any) -> Any:
        """A ccxt answer with the venue's symbols in our names."""
        return symbols.from_venue(result, self.settle_alias)

    # ------------------------------------------------------------------ client ids
    def venue_client_id(self, cid: str) -> str:
        """The id sent to the venue for hedgeflow's client id ``cid`` (deterministic)."""
        return cid

    def client_order_id(self, trade_id: str, leg: str, step: str) -> str:
        """The venue's client id of one step of one leg of one trade."""
        return self.venue_client_id(derive_client_order_id(trade_id, leg, step))

    def is_valid_venue_client_id(self, vcid: str) -> bool:
        return len(vcid) <= self.cid_max_len and is_valid_client_order_id(vcid)

    # ------------------------------------------------------------------ orders
    def order_params(self, vcid: str, reduce_only: bool) -> dict[str, Any]:
        params: dict[str, Any] = {self.cid_param: vcid}
        if reduce_only:
            params["reduceOnly"] = True
        return params

    def limit_params(self, post_only: bool, time_in_force: str) -> dict[str, Any]:
        """Extra ccxt params of a limit order: ccxt's own ``postOnly`` (Binance ``timeInForce`` GTX,
        Bybit PostOnly, OKX ``ordType`` post_only, Hyperliquid ``tif`` Alo; no ``timeInForce`` with it:
        Hyperliquid's ccxt would let it override Alo), else ``timeInForce`` GTC / IOC."""
        return {"postOnly": True} if post_only else {"timeInForce": time_in_force}

    def lookup_params(self, vcid: str) -> dict[str, Any]:
        return {self.lookup_param: vcid}

    def market_order(self, side: str, ref_price: Decimal | None) -> tuple[str, Decimal | None, dict[str, Any]]:
        """(ccxt order type, price, extra params) of a market order."""
        return "market", None, {}

    async def fetch_by_client_id(self, call: Call, symbol: str, vcid: str) -> Mapping[str, Any]:
        """The ccxt order with this client id; raises :class:`venues.errors.OrderNotFound` when
        there is none."""
        return await call("fetch_order", None, symbol, self.lookup_params(vcid))

    async def arm_dead_man(self, call: Call, venue_symbol: str, ms: int) -> None:
        """(Re)start the dead-man's countdown for ``ms`` (at least ``dead_man_min_ms``): ccxt's
        unified ``cancel_all_orders_after`` (OKX ``cancel-all-after``, Bybit
        ``disconnected-cancel-all``, Hyperliquid ``scheduleCancel``)."""
        await call("cancel_all_orders_after", ms)

    # ------------------------------------------------------------------ account checks
    async def one_way_mode(self, call: Call, has: Mapping[str, Any]) -> bool:
        """True when the account nets long and short; True (skipped) where ccxt cannot read it."""
        if not has.get("fetchPositionMode"):
            return True
        return parse.one_way_mode(await call("fetch_position_mode"))

    async def margin_mode(self, call: Call, has: Mapping[str, Any], symbol: str) -> str:
        if not has.get("fetchMarginMode"):
            return "unknown"
        raw = await call("fetch_margin_mode", symbol)
        return str((raw or {}).get("marginMode") or "unknown").lower()

    # ------------------------------------------------------------------ funding
    async def funding_rates(self, call: Call, exchange: Any = None) -> Mapping[str, Mapping[str, Any]]:
        """ccxt funding rates of every market, with their mark price (one bulk request here).
        ``exchange``: the ccxt client, for an adapter that parses the answer itself."""
        return await call("fetch_funding_rates")

    def market_intervals(self, markets: Mapping[str, Mapping[str, Any]]) -> dict[str, Decimal]:
        """Funding intervals (hours) read from the loaded ccxt markets, where they carry them."""
        return {}

    def funding_params(self, limit: int, start_ms: int, end_ms: int) -> dict[str, Any]:
        """Extra params of one funding-history query of ``[start_ms, end_ms]``, where ccxt does not
        send the page size or the range itself (besides ``since`` and ``until``)."""
        return {}

    # ------------------------------------------------------------------ set-up
    def validity_window_ms(self, timeout_ms: int) -> int:
        """How long a request may still land after it was signed: the venue's bound when it has
        one, else the gateway's own (the client timeout, at least the recvWindow)."""
        if self.recv_window_ms is not None:
            return self.recv_window_ms
        return max(RECV_WINDOW_MS, timeout_ms)

    def credentials(self, venue: VenueConfig) -> dict[str, str]:
        """ccxt constructor credentials (never logged)."""
        out: dict[str, str] = {}
        for key, value in (("apiKey", venue.api_key), ("secret", venue.api_secret),
                           ("password", venue.api_password)):
            if value is not None:
                out[key] = value.get_secret_value()
        return out

    def ccxt_options(self) -> dict[str, Any]:
        return {"defaultType": "swap"}

    def apply_environment(self, exchange: Any, environment: str) -> None:
        """Point ``exchange`` at the venue's demo trading or testnet (``environments``)."""
        how = self.environments.get(environment)
        if how is None:
            raise ValueError(f"{self.exchange_id}: environment {environment!r} is not offered "
                             f"(one of {', '.join(self.environments)})")
        if how == "demo":
            exchange.enable_demo_trading(True)
        elif how == "sandbox":
            exchange.set_sandbox_mode(True)

    # ------------------------------------------------------------------ description
    def capabilities(self) -> Capabilities:
        cid = f"{self.cid_format} (`{self.cid_field}`)"
        how = {"": "", "demo": "enable_demo_trading", "sandbox": "set_sandbox_mode"}
        return Capabilities(
            family=self.family,
            ccxt_ids=", ".join(self.exchange_ids) or "any other",
            client_id=cid,
            lookup=self.lookup_text(),
            market_orders=self.market_text(),
            position_mode=self.position_mode_text(),
            margin_mode=self.margin_text(),
            page_size=str(self.page_size),
            quantities="contracts × contractSize" if self.contract_sized else "base units",
            funding_interval=self.funding_interval_source,
            credentials=self.credentials_text(),
            validity_window=self.validity_text(),
            environments=", ".join(f"{e} ({how[h]})" if h else e for e, h in self.environments.items()),
        )

    def validity_text(self) -> str:
        if self.recv_window_ms is None:
            return "none: the client timeout (≥ 5000 ms) + margins"
        return f"recvWindow {self.recv_window_ms} ms + margins"

    def lookup_text(self) -> str:
        return f"fetchOrder + `{self.lookup_param}`"

    def position_mode_text(self) -> str:
        read = self.position_mode_read
        return f"one-way verified ({read})" if read else "skipped (ccxt has no read)"

    def market_text(self) -> str:
        return "market"

    def margin_text(self) -> str:
        return "fetchMarginMode where ccxt has it, else unknown"

    def credentials_text(self) -> str:
        return "apiKey, secret"

