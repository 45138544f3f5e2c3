"""The venue port: one small async API over ``ccxt.async_support`` that activities call.

One implementation for every venue: a simulator (kind ``sim``) is the unmodified ccxt class of
its dialect pointed at it, a live venue (kind ``ccxt``) the class named by ``exchange_id``
(:mod:`venues.exchange`); whatever differs between venue families is its adapter's
(:mod:`venues.adapters`), never a branch here.

This module is the behaviour (ccxt set-up, shared funding snapshot, idempotent placing, rate
limiting); ccxt answers → models is :mod:`venues.parse`, the error table :mod:`venues.errors`.

Rules this module keeps:

* Quantities cross the port in *base units* as ``Decimal``; the gateway converts to contracts
  with the market's ``contract_size``, rounds *down* to the step and refuses orders below the
  venue minimum before anything is sent (``OrderBelowMinimum``).
* Every ccxt value is parsed with ``Decimal(str(value))``, never ``Decimal(float)``.
* Callers only ever see :class:`venues.errors.VenueError` subclasses (see :func:`map_error`).
  Messages are scrubbed of the API key, secret and password.
* Placing is idempotent per client order id (see :meth:`Gateway.place_market_order`); when a
  "not found" may be trusted is :mod:`venues.placing`.
* Market metadata is reloaded periodically and when the venue says it changed
  (:mod:`venues.marketcache`); positions are never dropped for their market.
* History is read in windows whatever the span (:mod:`venues.history`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from config.settings import VenueConfig
from domain.ids import is_valid_client_order_id
from venues import history, parse, placing, resting_orders
from venues.adapters import adapter_for
from venues.budget import ORDER_METHODS, VenueBudget, lane
from venues.errors import (
    BadSymbol,
    ClockSkew,
    InvalidOrder,
    OrderNotFound,
    PriceBandRejected,
    VenueError,
    VenueRejected,
    VenueUnavailable,
    is_leverage_unchanged,
    map_error,
    scrub,
)
from venues.exchange import make_exchange
from venues.funding_map import FundingMap
from venues.marketcache import UNKNOWN_SYMBOL_MIN_AGE_S, MarketCache
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
from venues.parse import DEFAULT_INTERVAL_HOURS
from venues.placing import now_ms

log = logging.getLogger(__name__)

#: How long a cached funding-interval table is trusted.
INTERVALS_TTL_S = 3600.0
#: a market order answered accepted-not-executed and still unexecuted this long after marks its venue late
LATE_AFTER_S = 0.2


class Gateway:
    """One venue, one ccxt instance. Safe to share between concurrent activities."""

    def __init__(self, venue: VenueConfig) -> None:
        self.venue = venue
        self.name = venue.name
        self._secrets = [
            s.get_secret_value() for s in (venue.api_key, venue.api_secret, venue.api_password) if s is not None
        ]
        self.adapter = adapter_for(venue)
        self.exchange = make_exchange(venue, self.adapter)
        #: the venue's request budget in this worker: orders before reads, a share across workers (budget.py)
        self.budget = VenueBudget(venue.requests_per_second)
        self.exchange.throttle = self.budget.acquire  # ccxt awaits it with each request's cost
        self._markets = MarketCache(self._call, lambda: self.exchange.precisionMode, self.name)
        self._sends = placing.SendLog(self.exchange)  # hooks ccxt's signing: records send times
        #: when this venue last answered a market order accepted but not executed (monotonic; None: never)
        self.late_at: float | None = None
        self._clock = placing.Clock(self.exchange, self._call, self.name)  # also re-syncs after -1021
        #: validity of an order request: the venue's bound (Binance's recvWindow), else the client timeout
        self._window_ms = self.adapter.validity_window_ms(venue.timeout_ms)
        self._intervals: dict[str, Decimal] = {}
        self._intervals_at = float("-inf")  # never fetched: the first call fetches
        self._funding_cache: tuple[float, Mapping[str, FundingInfo]] | None = None
        self._funding_inflight: asyncio.Future[Mapping[str, FundingInfo]] | None = None
        self._unresolved: set[str] = set()  # position symbols still unknown after a reload

    @property
    def clock(self) -> placing.Clock:
        """The gateway's one clock measurement against the venue (offset, re-sync after -1021)."""
        return self._clock

    @property
    def window_ms(self) -> int:
        """How long a signed order stays valid on this venue (its validity window, margins included)."""
        return self._window_ms

    def __repr__(self) -> str:
        return f"Gateway(name={self.name!r}, kind={self.venue.kind.value!r}, exchange={self.exchange.id!r})"

    # ------------------------------------------------------------------ plumbing
    def _err(self, exc: BaseException) -> VenueError:
        return map_error(exc, self.name, secrets=self._secrets)

    def _vcid(self, client_order_id: str) -> str:  # the venue's form of our client id (adapter)
        return self.adapter.venue_client_id(client_order_id)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            args = self.adapter.to_venue(args)  # our symbols ⇄ the venue's (Hyperliquid: X/USDC:USDC)
            with lane("order" if method in ORDER_METHODS else "read"):
                return self.adapter.from_venue(await getattr(self.exchange, method)(*args, **kwargs))
        except VenueError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every ccxt / transport error is mapped
            err = self._err(exc)
            log.debug("venue %s %s failed: %s", self.name, method, err)
            if isinstance(err, ClockSkew) and method != "fetch_time":  # -1021: re-sync; a retry re-signs
                await self._clock.resync()
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
        """Linear perpetual markets by ccxt symbol, inactive ones included (``active``);
        cached, reloaded every ``MARKETS_TTL_S`` and when the venue says they changed."""
        return await self._markets.get()

    async def market(self, symbol: str) -> MarketInfo:
        """The market of ``symbol`` (reloading the markets once when it is unknown)."""
        markets = await self.markets()
        if symbol not in markets:
            markets = await self._markets.refresh(min_age_s=UNKNOWN_SYMBOL_MIN_AGE_S)
        try:
            return markets[symbol]
        except KeyError:
            raise BadSymbol(f"{self.name}: unknown symbol {symbol!r}", venue=self.name) from None

    async def refresh_markets(self, generation: int | None = None) -> dict[str, MarketInfo]:
        """Reload markets (filters, status) now, unless reloaded since ``generation``
        (``MarketCache.generation``); funding intervals are re-read on next use."""
        self._intervals_at = float("-inf")
        self._funding_cache = None
        return await self._markets.refresh(generation=generation)

    # ------------------------------------------------------------------ market data
    async def funding_rates(self, max_age_s: float = 0.0) -> Mapping[str, FundingInfo]:
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

    async def _fetch_funding_rates(self) -> Mapping[str, FundingInfo]:
        markets = await self.markets()
        raw = await self.adapter.funding_rates(self._call, self.exchange)  # with marks (OKX: a second bulk request)
        now = now_ms()
        # markets the venue does not trade now are left out, as before (nothing opens there)
        markets = {s: m for s, m in markets.items() if m.active}
        need_intervals = any(
            parse.interval_hours(fr.get("interval")) is None for s, fr in raw.items() if s in markets
        )
        if need_intervals:
            await self._refresh_intervals()
        return FundingMap(raw, list(markets), self._intervals, now)  # each entry parsed when asked for

    async def _refresh_intervals(self) -> None:
        if time.monotonic() - self._intervals_at < INTERVALS_TTL_S:
            return
        if not self.exchange.has.get("fetchFundingIntervals"):  # the adapter reads the loaded markets
            self._intervals = self.adapter.market_intervals(self.exchange.markets or {})
            self._intervals_at = time.monotonic()
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
        return parse.order_book(raw, symbol, m.contract_size, depth, now_ms=now_ms())

    # ------------------------------------------------------------------ account
    async def balance(self) -> Balance:
        return parse.balance(await self._call("fetch_balance"), self.adapter.settle_currency)

    async def positions(self, symbols: list[str] | None = None) -> list[Position]:
        """Open (non-zero) positions, signed quantity in base units. None is dropped for its
        market: inactive markets are reported as any other; for a symbol the markets do not
        know, they are reloaded once, and if still unknown the position keeps the venue's
        symbol (``market_known`` False) or :class:`BadSymbol` is raised."""
        markets = await self.markets()
        generation = self._markets.generation
        raw = await self._call("fetch_positions", symbols)
        binance = self.adapter.binance_fields
        unknown = parse.unknown_position_symbols(raw, markets, binance_dialect=binance)
        if unknown - self._unresolved:  # once per symbol: what a reload did not resolve stays so
            markets = await self._markets.refresh(generation=generation)
            self._unresolved = parse.unknown_position_symbols(raw, markets, binance_dialect=binance)
        try:
            return parse.positions(raw, markets, symbols, binance_dialect=binance)
        except BadSymbol as exc:
            raise BadSymbol(f"{self.name}: {exc}", venue=self.name) from None

    async def is_one_way_mode(self) -> bool:
        """True when the account nets long and short per symbol (no hedge mode); True without a
        check where the venue has no hedge mode or ccxt no read of it (the adapter says which)."""
        return await self.adapter.one_way_mode(self._call, self.exchange.has)

    async def margin_mode(self, symbol: str) -> str:
        """``cross`` or ``isolated`` for ``symbol``; ``unknown`` where ccxt cannot ask the venue."""
        return await self.adapter.margin_mode(self._call, self.exchange.has, symbol)

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
        wait_window: bool = True,
        whole: bool = False,
        settle_s: float | None = None,
    ) -> OrderResult:
        """Place a market order for ``qty`` base units, at most once per client order id.

        ``wait_window=False`` (only with ``reduce_only``, for an order closing a whole position
        whose caller resends under a *fresh* id after a read): an unknown outcome gets one
        look-up, not the wait for the validity window; two such orders never flip a position.

        ``settle_s``: an answer accepted but not executed is looked up every 0.05 s for this long
        (default: five polls over about 1.25 s) before it is returned open.

        ``ref_price``: a recent price the caller already holds (e.g. the mark from its
        pre-trade check) for the minimum-notional check; without it the book is fetched.

        * ``qty`` is rounded down to the step (``whole`` with ``reduce_only``, an order closing
          everything held: up, :func:`venues.placing.rounded`); below min qty (or, unless
          ``reduce_only``, below min notional at the current book price) raises
          ``OrderBelowMinimum`` before any order request is sent, judged again on reloaded
          markets when they are over 5 s old; so does (``InvalidOrder``) an opening order in a
          market the venue does not trade now.
        * With ``lookup_first`` (activity retries) or when this Gateway already sent the id,
          the order is looked up by client id first and returned with
          ``duplicate_prevented=True`` if the venue has it. A "not found" only counts once
          the request's validity window has passed (:mod:`venues.placing`): since its signing
          when this Gateway sent it, a full window from now when it did not; look-ups that
          keep failing raise the retryable ``OrderOutcomeUnknown`` and nothing is sent.
        * After an error that leaves the outcome unknown (timeout, 5xx, network), the order is
          looked up the same way: found → returned with ``duplicate_prevented=True``; not
          found after the window, or still unknown → the original retryable error is raised.
        * A refusal saying the venue's filters or market status changed (lot size, precision,
          min notional ...) reloads the markets; if the market changed, the quantity is
          re-rounded and the order sent once more (a refused request left nothing behind).
        * A ``reduce_only`` order the price band refuses (``PriceBandRejected``: it would fill
          beyond mark × the market's band) is sent again at once, same id, as a reduce-only limit
          IOC at the band edge (:meth:`MarketInfo.band_edge`, fresh mark): it fills what the book
          has inside the band, the caller sends the rest anew. An opening order's refusal is raised.
        """
        if not isinstance(client_order_id, str) or not is_valid_client_order_id(client_order_id):
            raise InvalidOrder(
                f"{self.name}: client order id must be 1-32 characters of [A-Za-z0-9], got {client_order_id!r}",
                venue=self.name,
            )
        side = Side(side)
        if not isinstance(qty, Decimal):
            raise TypeError(f"qty must be Decimal, got {type(qty).__name__}")
        return await placing.at_most_once(
            self, symbol, qty, client_order_id, side, reduce_only, lookup_first, lambda m: ref_price,
            lambda m, contracts, base_qty, _: self._send_market(m, side, contracts, base_qty, client_order_id,
                                                                 reduce_only, ref_price, wait_window or not reduce_only,
                                                                 settle_s), whole=whole)

    def executes_late(self, within_s: float) -> bool:
        """Whether this venue answered a market order accepted but not executed in the last ``within_s``."""
        return self.late_at is not None and time.monotonic() - self.late_at < within_s

    async def _send_market(
        self, m: MarketInfo, side: Side, contracts: Decimal, base_qty: Decimal, cid: str, reduce_only: bool,
        ref_price: Decimal | None = None, wait_window: bool = True, settle_s: float | None = None,
    ) -> OrderResult:
        """A market order (bounded by ``ref_price`` or the book where the adapter says), with the
        price-band fallback of a reduce-only one (see place_market_order)."""
        ref = None
        if self.adapter.market_needs_price:
            ref = ref_price if ref_price and ref_price > 0 else await self._reference_price(m.symbol, side)
        try:
            return await self._send(m, side, contracts, base_qty, cid, reduce_only, price=ref, wait_window=wait_window,
                                    settle_s=settle_s)
        except PriceBandRejected as err:
            if not reduce_only or m.price_band_up is None:
                raise
            refusal = err
        mark = parse.D((await self._call("fetch_funding_rate", m.symbol) or {}).get("markPrice"))
        edge = m.band_edge(side, mark) if mark is not None and mark > 0 else None
        if edge is None or edge <= 0:
            raise refusal
        log.warning("venue %s: close %s refused by the price band (%s); sending it as a limit IOC at %s "
                    "(mark %s)", self.name, cid, refusal.code, edge, mark)
        return await self._send(m, side, contracts, base_qty, cid, reduce_only, "limit", edge, {"timeInForce": "IOC"},
                                wait_window=wait_window, settle_s=settle_s)

    async def _send(
        self, m: MarketInfo, side: Side, contracts: Decimal, base_qty: Decimal, client_order_id: str,
        reduce_only: bool, order_type: str = "market", price: Decimal | None = None,
        extra: dict[str, Any] | None = None, *, wait_window: bool = True, settle_s: float | None = None,
    ) -> OrderResult:
        """One order (``price``: a limit's or a market's bound; ``extra``: e.g. timeInForce), logged."""
        vcid = self._vcid(client_order_id)
        params = self.adapter.order_params(vcid, reduce_only)
        if order_type == "market":
            order_type, price, more = self.adapter.market_order(side.value, price)
            params.update(more)
        params.update(extra or {})
        try:
            order = await self._sends.send(vcid, lambda: self._call(
                "create_order", m.symbol, order_type, side.value, str(contracts),
                None if price is None else str(price), params))
        except VenueError as err:
            if not err.outcome_unknown:
                raise
            log.warning("venue %s: placing %s: outcome unknown (%s); looking it up", self.name,
                        client_order_id, err.type_name)
            try:  # no window wait: one look-up (see place_market_order's wait_window)
                found = await (self._confirm_absent(m.symbol, client_order_id) if wait_window
                               else self.get_order(m.symbol, client_order_id))
            except VenueError:
                raise err from None
            if found is None:
                raise err from None
            return found.model_copy(update={"duplicate_prevented": True})
        result = self._order_result(order, m, requested=base_qty, side=side, reduce_only=reduce_only,
                                    client_order_id=client_order_id)
        if result.is_closed:
            return result
        t0, unexecuted = time.monotonic(), result.filled_qty <= 0
        result = await placing.await_market_close(result, self.get_order, settle_s)
        if unexecuted and (not result.is_closed or time.monotonic() - t0 >= LATE_AFTER_S):
            self.late_at = time.monotonic()  # accepted, matched late (or not yet): ``executes_late``
        return result

    async def _confirm_absent(self, symbol: str, client_order_id: str) -> OrderResult | None:
        async def deadline() -> int:
            await self._clock.refresh()
            return self._sends.deadline_ms(self._vcid(client_order_id), now=now_ms(), window_ms=self._window_ms,
                                           ahead_ms=self._clock.ahead_ms())

        return await placing.confirm_absent(
            lambda: self.get_order(symbol, client_order_id), deadline,
            what=f"venue {self.name}: order {client_order_id}",
        )

    async def _reference_price(self, symbol: str, side: Side) -> Decimal | None:
        return placing.book_price(await self.order_book(symbol, 5), side)

    async def get_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        """The order with this client id, or None when the venue says it does not exist."""
        m = await self.market(symbol)
        try:
            order = await self.adapter.fetch_by_client_id(self._call, symbol, self._vcid(client_order_id))
        except OrderNotFound:
            return None
        return self._order_result(order, m, client_order_id=client_order_id)

    async def place_limit_order(
        self, symbol: str, side: Side | str, qty: Decimal, price: Decimal, client_order_id: str, *,
        post_only: bool = False, time_in_force: str = "GTC", reduce_only: bool = False, lookup_first: bool = False,
    ) -> OrderResult:
        """A limit GTC / IOC / post-only order, at most once per client id (:mod:`venues.resting_orders`)."""
        return await resting_orders.place_limit(self, symbol, side, qty, price, client_order_id, post_only=post_only,
                                                time_in_force=time_in_force, reduce_only=reduce_only,
                                                lookup_first=lookup_first)

    async def open_orders(self, symbol: str, client_order_ids: Iterable[str] | None = None) -> list[OrderResult]:
        """Open orders in ``symbol`` (ccxt ``fetch_open_orders``; :func:`venues.resting_orders.open_orders`)."""
        return await resting_orders.open_orders(self, symbol, client_order_ids)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        """Cancel by client id: its final state (CANCELED with what filled before, FILLED ...); None if unknown."""
        return await resting_orders.cancel(self, symbol, client_order_id)

    def _order_result(
        self, o: dict[str, Any], m: MarketInfo, *, requested: Decimal | None = None, side: Side | None = None,
        reduce_only: bool | None = None, client_order_id: str | None = None,
    ) -> OrderResult:
        return parse.order_result(
            o, m, venue=self.name, binance_dialect=self.adapter.binance_fields, taker_fee=self.venue.taker_fee,
            now_ms=now_ms(), requested=requested, side=side, reduce_only=reduce_only,
            client_order_id=client_order_id, own_client_id=self.adapter.renames_client_id,
        )

    # ------------------------------------------------------------------ history
    async def funding_income(
        self, since_ms: int, symbol: str | None = None, until_ms: int | None = None
    ) -> list[FundingPayment]:
        """Funding payments since ``since_ms`` (signed: > 0 received), oldest first, read in
        windows of at most 7 days up to ``until_ms`` (default now, on the venue's clock when it
        runs ahead of ours) and de-duplicated."""
        if symbol is not None:
            await self.market(symbol)
        a = self.adapter
        raw = await history.funding_rows(self._call, symbol, since_ms, until_ms, now_ms=self._clock.history_now_ms(),
                                         page_limit=a.page_size, params=lambda s, e: a.funding_params(a.page_size, s, e),
                                         newest_first=a.history_newest_first)
        return parse.funding_payments(raw, symbol, binance_dialect=a.binance_fields, sign=a.funding_sign)

    async def fills(
        self, symbol: str, since_ms: int, order_ids: Iterable[str] | None = None, until_ms: int | None = None
    ) -> list[Fill]:
        """Our trades (executions) in ``symbol`` since ``since_ms``, oldest first, whatever
        the span. With ``order_ids`` only those orders' trades: read by order id where the
        venue allows it (Binance ``orderId``), else (or for an order that shows none) in
        windows of at most 7 days from ``since_ms`` to ``until_ms`` (default now, as for
        :meth:`funding_income`)."""
        m = await self.market(symbol)
        raw = await history.trade_rows(self._call, symbol, since_ms, until_ms, order_ids,
                                       now_ms=self._clock.history_now_ms(), by_order_id=self.adapter.fills_by_order_id,
                                       page_limit=self.adapter.page_size, newest_first=self.adapter.history_newest_first)
        return parse.fills(raw, m)
