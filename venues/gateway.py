"""The venue port: one small async API over ``ccxt.async_support`` that activities call.

One implementation for every venue. A simulated venue (kind ``sim``) is an unmodified
``ccxt.async_support.binanceusdm`` whose ``urls['api']`` entries point at the simulator; a
live venue (kind ``ccxt``) is the ccxt class named by ``exchange_id``.

This module is the behaviour (ccxt set-up, shared funding snapshot, idempotent placing, rate
limiting); ccxt answers → models is :mod:`venues.parse`, the error table :mod:`venues.errors`.

Rules this module keeps:

* Quantities cross the port in *base units* as ``Decimal``; the gateway converts to contracts
  with the market's ``contract_size``, rounds *down* to the step and refuses orders below the
  venue minimum before anything is sent (``OrderBelowMinimum``).
* Every ccxt value is parsed with ``Decimal(str(value))``, never ``Decimal(float)``.
* Callers only ever see :class:`venues.errors.VenueError` subclasses (see :func:`map_error`).
  Messages are scrubbed of the API key, secret and password.
* Placing is idempotent per client order id (see :meth:`Gateway.place_market_order`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async

from config.settings import VenueConfig, VenueKind
from domain.ids import is_valid_client_order_id
from domain.rounding import base_to_contracts, contracts_to_base, round_down
from venues import parse
from venues.errors import (
    BadSymbol,
    InvalidOrder,
    OrderBelowMinimum,
    OrderNotFound,
    VenueError,
    VenueRejected,
    VenueUnavailable,
    is_leverage_unchanged,
    map_error,
    scrub,
)
from venues.models import (
    Balance,
    Fill,
    FundingInfo,
    FundingPayment,
    MarketInfo,
    OrderBook,
    OrderResult,
    Position,
    Side,
)
from venues.parse import DEFAULT_INTERVAL_HOURS, D

__all__ = ["D", "DEFAULT_INTERVAL_HOURS", "Gateway", "map_error"]

log = logging.getLogger(__name__)

BINANCE_FAPI = "https://fapi.binance.com"
#: How long a cached funding-interval table is trusted.
INTERVALS_TTL_S = 3600.0
#: recvWindow sent with signed Binance-dialect requests. A request that reaches the venue
#: later than this after it was signed is refused (-1021), which bounds how long an order
#: request whose outcome is unknown can still be "in flight".
RECV_WINDOW_MS = 5000
#: Extra margin for clock skew between us and the venue when waiting out the in-flight window.
CLOCK_MARGIN_MS = 500
#: Lookups after an unknown outcome: attempts and first backoff (doubles each time).
LOOKUP_ATTEMPTS = 5
LOOKUP_BACKOFF_S = 0.1
#: Polls of a market order whose first answer is still open.
MARKET_CLOSE_POLLS = 5
#: Client ids remembered per Gateway for "look up before resending".
SENT_IDS_KEPT = 10_000


def _now_ms() -> int:
    return int(time.time() * 1000)


class Gateway:
    """One venue, one ccxt instance. Safe to share between concurrent activities."""

    def __init__(self, venue: VenueConfig) -> None:
        self.venue = venue
        self.name = venue.name
        self._secrets = [
            s.get_secret_value() for s in (venue.api_key, venue.api_secret, venue.api_password) if s is not None
        ]
        self._binance_dialect = venue.kind is VenueKind.SIM or venue.exchange_id in ("binanceusdm", "binance")
        self.exchange = self._make_exchange(venue)
        self._markets: dict[str, MarketInfo] | None = None
        self._markets_lock = asyncio.Lock()
        self._intervals: dict[str, Decimal] = {}
        self._intervals_at = float("-inf")  # never fetched: the first call fetches
        self._funding_cache: tuple[float, dict[str, FundingInfo]] | None = None
        self._funding_inflight: asyncio.Future[dict[str, FundingInfo]] | None = None
        self._intervals_supported = True
        self._sent: dict[str, None] = {}  # client ids this instance has sent (bounded, FIFO)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _make_exchange(venue: VenueConfig) -> ccxt_async.Exchange:
        common: dict[str, Any] = {
            "enableRateLimit": True,
            "rateLimit": 1000.0 / venue.requests_per_second,
            "timeout": venue.timeout_ms,
        }
        if venue.api_key is not None:
            common["apiKey"] = venue.api_key.get_secret_value()
        if venue.api_secret is not None:
            common["secret"] = venue.api_secret.get_secret_value()
        if venue.api_password is not None:
            common["password"] = venue.api_password.get_secret_value()
        if venue.kind is VenueKind.SIM:
            if not venue.base_url:
                raise ValueError(f"sim venue {venue.name!r} has no base_url")
            ex = ccxt_async.binanceusdm(
                {
                    **common,
                    "options": {
                        "fetchMarkets": ["linear"],
                        "fetchCurrencies": False,
                        "adjustForTimeDifference": False,
                        "recvWindow": RECV_WINDOW_MS,
                    },
                }
            )
            base = venue.base_url.rstrip("/")
            api = ex.urls["api"]
            for key, url in list(api.items()):
                if isinstance(url, str) and url.startswith(BINANCE_FAPI):
                    api[key] = base + url[len(BINANCE_FAPI) :]
            # ccxt applies its USD-M error table only to https://fapi.binance.com URLs: merge
            # it into the generic one so the simulator's answers classify as Binance's would
            linear = ex.exceptions.get("linear", {})
            ex.exceptions["exact"] = {**ex.exceptions["exact"], **linear.get("exact", {})}
            ex.exceptions["broad"] = {**ex.exceptions["broad"], **linear.get("broad", {})}
            return ex
        cls = getattr(ccxt_async, venue.exchange_id, None)
        if cls is None:
            raise ValueError(f"unknown ccxt exchange id {venue.exchange_id!r} for venue {venue.name!r}")
        options: dict[str, Any] = {"defaultType": "swap"}
        if venue.exchange_id in ("binanceusdm", "binance"):
            options["recvWindow"] = RECV_WINDOW_MS
        return cls({**common, "options": options})

    def __repr__(self) -> str:
        return f"Gateway(name={self.name!r}, kind={self.venue.kind.value!r}, exchange={self.exchange.id!r})"

    # ------------------------------------------------------------------ plumbing
    def _err(self, exc: BaseException) -> VenueError:
        return map_error(exc, self.name, secrets=self._secrets)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.exchange, method)(*args, **kwargs)
        except VenueError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every ccxt / transport error is mapped
            err = self._err(exc)
            log.debug("venue %s %s failed: %s", self.name, method, err)
            raise err from None

    async def close(self) -> None:
        try:
            await self.exchange.close()
        except Exception as exc:  # noqa: BLE001
            log.debug("closing %s: %s", self.name, scrub(str(exc), self._secrets))

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ markets
    async def markets(self) -> dict[str, MarketInfo]:
        """Linear perpetual markets by ccxt symbol; loaded once per Gateway, then cached."""
        if self._markets is not None:
            return self._markets
        async with self._markets_lock:
            if self._markets is None:
                raw = await self._call("load_markets")
                self._markets = parse.markets(raw, self.exchange.precisionMode)
        return self._markets

    async def market(self, symbol: str) -> MarketInfo:
        markets = await self.markets()
        try:
            return markets[symbol]
        except KeyError:
            raise BadSymbol(f"{self.name}: unknown symbol {symbol!r}", venue=self.name) from None

    # ------------------------------------------------------------------ market data
    async def funding_rates(self, max_age_s: float = 0.0) -> dict[str, FundingInfo]:
        """Current funding of every market, from ONE bulk request (plus, on the first call
        and then hourly, one request for the intervals when the venue's funding rates do not
        carry them).

        ``max_age_s`` > 0 accepts a snapshot fetched at most that long ago, and concurrent
        callers share one request in flight: many trades monitoring the same venue cost one
        bulk call per period instead of one each."""
        if max_age_s > 0:
            cached = self._funding_cache
            if cached is not None and time.monotonic() - cached[0] <= max_age_s:
                return cached[1]
            if self._funding_inflight is None or self._funding_inflight.done():
                self._funding_inflight = asyncio.ensure_future(self.funding_rates())
            return await asyncio.shield(self._funding_inflight)
        rates = await self._fetch_funding_rates()
        self._funding_cache = (time.monotonic(), rates)
        return rates

    async def _fetch_funding_rates(self) -> dict[str, FundingInfo]:
        markets = await self.markets()
        raw = await self._call("fetch_funding_rates")
        now_ms = _now_ms()
        need_intervals = any(
            parse.interval_hours(fr.get("interval")) is None for s, fr in raw.items() if s in markets
        )
        if need_intervals:
            await self._refresh_intervals()
        out: dict[str, FundingInfo] = {}
        for symbol, fr in raw.items():
            if symbol not in markets:
                continue
            info = parse.funding_info(symbol, fr, known_interval=self._intervals.get(symbol), now_ms=now_ms)
            if info is not None:
                out[symbol] = info
        return out

    async def _refresh_intervals(self) -> None:
        if not self._intervals_supported or time.monotonic() - self._intervals_at < INTERVALS_TTL_S:
            return
        if not self.exchange.has.get("fetchFundingIntervals"):
            self._intervals_supported = False
            return
        try:
            raw = await self._call("fetch_funding_intervals")
        except (VenueRejected, InvalidOrder, BadSymbol, VenueUnavailable) as exc:
            # not offered by this venue (or not now): fall back to the default interval and
            # ask again in a minute (an hour when the venue refused outright)
            log.warning("venue %s: funding intervals unavailable (%s); assuming %sh", self.name, exc.type_name,
                        DEFAULT_INTERVAL_HOURS)
            retry_in = 60.0 if exc.retryable else INTERVALS_TTL_S
            self._intervals_at = time.monotonic() - INTERVALS_TTL_S + retry_in
            return
        self._intervals = parse.funding_intervals(raw)
        self._intervals_at = time.monotonic()

    async def order_book(self, symbol: str, depth: int = 20) -> OrderBook:
        m = await self.market(symbol)
        raw = await self._call("fetch_order_book", symbol, depth)
        return parse.order_book(raw, symbol, m.contract_size, depth, now_ms=_now_ms())

    # ------------------------------------------------------------------ account
    async def balance(self) -> Balance:
        return parse.balance(await self._call("fetch_balance"))

    async def positions(self, symbols: list[str] | None = None) -> list[Position]:
        """Open (non-zero) positions, signed quantity in base units."""
        markets = await self.markets()
        raw = await self._call("fetch_positions", symbols)
        return parse.positions(raw, markets, symbols, binance_dialect=self._binance_dialect)

    async def is_one_way_mode(self) -> bool:
        """True when the account nets long and short per symbol (no hedge mode)."""
        return parse.one_way_mode(await self._call("fetch_position_mode"))

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        """Set leverage; "not modified / already set" answers count as success."""
        await self.market(symbol)
        try:
            await self._call("set_leverage", int(leverage), symbol)
        except (VenueRejected, InvalidOrder) as exc:
            if is_leverage_unchanged(exc):
                return
            raise

    # ------------------------------------------------------------------ orders
    def _remember(self, client_order_id: str) -> None:
        self._sent[client_order_id] = None
        if len(self._sent) > SENT_IDS_KEPT:
            del self._sent[next(iter(self._sent))]

    async def place_market_order(
        self,
        symbol: str,
        side: Side | str,
        qty: Decimal,
        client_order_id: str,
        *,
        reduce_only: bool = False,
        lookup_first: bool = False,
        ref_price: Decimal | None = None,
    ) -> OrderResult:
        """Place a market order for ``qty`` base units, at most once per client order id.

        ``ref_price``: a recent price the caller already holds (e.g. the mark from its
        pre-trade check) for the minimum-notional check; without it the book is fetched.

        * ``qty`` is rounded down to the step; below min qty (or, unless ``reduce_only``,
          below min notional at the current book price) raises ``OrderBelowMinimum`` before
          any order request is sent.
        * With ``lookup_first`` (activity retries) or when this Gateway already sent the id,
          the order is looked up by client id first and returned with
          ``duplicate_prevented=True`` if the venue has it.
        * After an error that leaves the outcome unknown (timeout, 5xx, network), the order is
          looked up by client id (retrying the lookup briefly while it fails itself) before
          anything could be sent again: found → returned with ``duplicate_prevented=True``;
          definitively not found → the original retryable error is raised.
        """
        if not isinstance(client_order_id, str) or not is_valid_client_order_id(client_order_id):
            raise InvalidOrder(
                f"{self.name}: client order id must be 1-32 characters of [A-Za-z0-9], got {client_order_id!r}",
                venue=self.name,
            )
        side = Side(side)
        if not isinstance(qty, Decimal):
            raise TypeError(f"qty must be Decimal, got {type(qty).__name__}")
        m = await self.market(symbol)
        contracts = round_down(base_to_contracts(max(qty, Decimal(0)), m.contract_size),
                               m.qty_step / m.contract_size)
        base_qty = contracts_to_base(contracts, m.contract_size)
        if base_qty <= 0 or base_qty < m.min_qty:
            raise OrderBelowMinimum(
                f"{self.name}: {symbol} quantity {qty} rounds down to {base_qty} (step {m.qty_step}), "
                f"below the minimum quantity {m.min_qty}",
                venue=self.name,
            )
        if lookup_first or client_order_id in self._sent:
            # before the notional check: a retry must find its order even if the price moved
            existing = await self._lookup_for_place(symbol, client_order_id)
            if existing is not None:
                log.info("venue %s: order %s already exists; not sending again", self.name, client_order_id)
                return existing.model_copy(update={"duplicate_prevented": True})
        if not reduce_only and m.min_notional > 0:
            # venues waive the minimum notional for reduce-only orders, not the minimum qty
            price = ref_price if ref_price and ref_price > 0 else await self._reference_price(symbol, side)
            if price is not None and base_qty * price < m.min_notional:
                raise OrderBelowMinimum(
                    f"{self.name}: {symbol} notional {base_qty} x {price} = {base_qty * price} "
                    f"is below the minimum notional {m.min_notional}",
                    venue=self.name,
                )

        self._remember(client_order_id)
        params: dict[str, Any] = {"newClientOrderId": client_order_id} if self._binance_dialect else {
            "clientOrderId": client_order_id
        }
        if reduce_only:
            params["reduceOnly"] = True
        sent_at = time.monotonic()
        try:
            order = await self._call("create_order", symbol, "market", side.value, str(contracts), None, params)
        except VenueError as err:
            if not err.outcome_unknown:
                raise
            log.warning("venue %s: placing %s: outcome unknown (%s); looking it up", self.name,
                        client_order_id, err.type_name)
            found = await self._resolve_unknown(symbol, client_order_id, err, sent_at)
            return found.model_copy(update={"duplicate_prevented": True})
        result = self._order_result(order, m, requested=base_qty, side=side, reduce_only=reduce_only,
                                    client_order_id=client_order_id)
        return await self._await_market_close(result)

    async def _await_market_close(self, result: OrderResult) -> OrderResult:
        """A market order's first answer may still say NEW (Binance matches asynchronously,
        and ACK-style answers carry no fill): poll it briefly. Callers treat an order that is
        still open afterwards as in progress (``is_closed`` False) and look it up later."""
        delay = 0.05
        for _ in range(MARKET_CLOSE_POLLS):
            if result.is_closed:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            try:
                latest = await self.get_order(result.symbol, result.client_order_id)
            except VenueError as exc:
                if not exc.retryable:
                    raise
                continue
            if latest is not None:
                result = latest.model_copy(update={"requested_qty": result.requested_qty})
        return result

    async def _reference_price(self, symbol: str, side: Side) -> Decimal | None:
        book = await self.order_book(symbol, 5)
        levels = book.asks if side is Side.BUY else book.bids
        if levels:
            return levels[0].price
        other = book.bids if side is Side.BUY else book.asks
        return other[0].price if other else None

    async def _lookup_for_place(self, symbol: str, client_order_id: str) -> OrderResult | None:
        last: VenueError | None = None
        delay = LOOKUP_BACKOFF_S
        for attempt in range(LOOKUP_ATTEMPTS):
            try:
                return await self.get_order(symbol, client_order_id)
            except VenueError as exc:
                if not exc.retryable:
                    raise
                last = exc
            if attempt < LOOKUP_ATTEMPTS - 1:
                await asyncio.sleep(delay)
                delay *= 2
        assert last is not None
        raise last

    async def _resolve_unknown(
        self, symbol: str, client_order_id: str, original: VenueError, sent_at: float
    ) -> OrderResult:
        """Find the order whose placing ended in ``original``; raise ``original`` when the
        venue definitively does not have it (or cannot tell us)."""
        try:
            found = await self._lookup_for_place(symbol, client_order_id)
        except VenueError:
            raise original from None
        if found is not None:
            return found
        # Not there yet. The request may still be in flight (e.g. after a client timeout);
        # once the recvWindow has passed since signing, the venue would refuse it, so a
        # second "not found" after that is definitive.
        window_s = (RECV_WINDOW_MS + CLOCK_MARGIN_MS) / 1000 if self._binance_dialect else self.venue.timeout_ms / 1000
        wait = sent_at + window_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
            try:
                found = await self._lookup_for_place(symbol, client_order_id)
            except VenueError:
                raise original from None
            if found is not None:
                return found
        raise original

    async def get_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        """The order with this client id, or None when the venue says it does not exist."""
        m = await self.market(symbol)
        try:
            order = await self._call("fetch_order", None, symbol, self._cid_params(client_order_id))
        except OrderNotFound:
            return None
        return self._order_result(order, m, client_order_id=client_order_id)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        """Cancel by client id; None when the venue does not know the order. An order that
        already closed is returned as it is (its state is looked up)."""
        m = await self.market(symbol)
        try:
            order = await self._call("cancel_order", None, symbol, self._cid_params(client_order_id))
        except OrderNotFound:
            # Binance answers -2011 "Unknown order" also for orders that already filled
            return await self.get_order(symbol, client_order_id)
        return self._order_result(order, m, client_order_id=client_order_id)

    def _cid_params(self, client_order_id: str) -> dict[str, Any]:
        if self._binance_dialect:
            return {"origClientOrderId": client_order_id}
        return {"clientOrderId": client_order_id}

    def _order_result(
        self,
        o: dict[str, Any],
        m: MarketInfo,
        *,
        requested: Decimal | None = None,
        side: Side | None = None,
        reduce_only: bool | None = None,
        client_order_id: str | None = None,
    ) -> OrderResult:
        return parse.order_result(
            o, m, venue=self.name, binance_dialect=self._binance_dialect, taker_fee=self.venue.taker_fee,
            now_ms=_now_ms(), requested=requested, side=side, reduce_only=reduce_only,
            client_order_id=client_order_id,
        )

    # ------------------------------------------------------------------ history
    async def funding_income(self, since_ms: int, symbol: str | None = None) -> list[FundingPayment]:
        """Funding payments since ``since_ms`` (signed: > 0 received), oldest first."""
        markets = await self.markets()
        if symbol is not None and symbol not in markets:
            raise BadSymbol(f"{self.name}: unknown symbol {symbol!r}", venue=self.name)
        raw = await self._call("fetch_funding_history", symbol, since_ms, 1000)
        return parse.funding_payments(raw, symbol, binance_dialect=self._binance_dialect)

    async def fills(self, symbol: str, since_ms: int) -> list[Fill]:
        """Our trades (executions) in ``symbol`` since ``since_ms``, oldest first."""
        m = await self.market(symbol)
        raw = await self._call("fetch_my_trades", symbol, since_ms, 1000)
        return parse.fills(raw, m)
