"""The venue port: one small async API over ``ccxt.async_support`` that activities call.

One implementation for every venue. A simulated venue (kind ``sim``) is an unmodified
``ccxt.async_support.binanceusdm`` whose ``urls['api']`` entries point at the simulator; a
live venue (kind ``ccxt``) is the ccxt class named by ``exchange_id``.

Rules this module keeps:

* Quantities cross the port in *base units* as ``Decimal``; the gateway converts to contracts
  with the market's ``contract_size``, rounds *down* to the step and refuses orders below the
  venue minimum before anything is sent (``OrderBelowMinimum``).
* Every ccxt value is parsed with ``Decimal(str(value))``, never ``Decimal(float)``.
* Callers only ever see :class:`venues.errors.VenueError` subclasses (see :func:`map_error`).
  Messages are scrubbed of the API key, secret and password.
* Placing is idempotent per client order id (see :meth:`Gateway.place_market_order`).

ccxt → hedgeflow error mapping (first matching row wins):

| ccxt exception / venue answer                                         | hedgeflow error      | retryable | outcome unknown |
|-----------------------------------------------------------------------|----------------------|-----------|-----------------|
| Binance code -1021 (timestamp outside recvWindow), ``InvalidNonce``   | VenueRejected        | no        | no              |
| Binance code -1007 (backend timeout, execution status unknown)        | VenueTimeout         | yes       | yes             |
| Binance code -2019, -4050, -4051 (margin insufficient)                | InsufficientMargin   | no        | no              |
| Binance code -1022 (bad signature), -2014, -1002; -2015 via ccxt      | AuthenticationFailed | no        | no              |
| Binance code -2013, -2011 (order does not exist / unknown order)      | OrderNotFound        | no        | no              |
| Binance code -2010, -2022, -4164, -1111, -4003, -4131, -5021          | InvalidOrder         | no        | no              |
| Binance code -1121                                                    | BadSymbol            | no        | no              |
| Binance code -1003, -1015; HTTP 418/429                               | RateLimited          | yes       | no              |
| ``RequestTimeout`` (incl. HTTP 408/504)                               | VenueTimeout         | yes       | yes             |
| ``DDoSProtection``, ``RateLimitExceeded``                             | RateLimited          | yes       | no              |
| ``ExchangeNotAvailable``, ``OnMaintenance`` (incl. HTTP 5xx)          | VenueUnavailable     | yes       | yes             |
| ``NetworkError`` (other: connection reset, DNS, ...)                  | VenueNetworkError    | yes       | yes             |
| ``BadResponse``, ``NullResponse``, ``OperationFailed`` (other)        | VenueUnavailable     | yes       | yes             |
| ``InsufficientFunds``                                                 | InsufficientMargin   | no        | no              |
| ``OrderNotFound``                                                     | OrderNotFound        | no        | no              |
| ``InvalidOrder`` (other), ``OrderNotFillable``, ``DuplicateOrderId``  | InvalidOrder         | no        | no              |
| ``BadSymbol``                                                         | BadSymbol            | no        | no              |
| ``AuthenticationError``, ``PermissionDenied``, ``AccountSuspended``   | AuthenticationFailed | no        | no              |
| ``ExchangeError`` (other: ``BadRequest``, ``OperationRejected``, ...) | VenueRejected        | no        | no              |
| other exceptions leaking through: ``TimeoutError`` / anything else    | VenueTimeout / VenueNetworkError | yes | yes    |
| (checked before sending) below min qty / min notional                 | OrderBelowMinimum    | no        | no              |

The Binance-code rows exist because ccxt picks its per-market error table from the request
URL's host: against a simulator (or any non-``binance.com`` host) only the common table
applies, where e.g. -2019 "Margin is insufficient" is a plain ``ExchangeError``. Reading the
code from the response body makes the mapping independent of the host (for kind ``sim`` the
USD-M table is also merged into the ccxt instance's generic one, as tests/simproc does). ccxt itself turns
-2015 (invalid key) into ``DDoSProtection`` → RateLimited once the instance has had one
successful private request (Binance answers -2015 during temporary IP bans).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async

from config.settings import VenueConfig, VenueKind
from domain.ids import is_valid_client_order_id
from domain.rounding import base_to_contracts, contracts_to_base, round_down
from venues.errors import (
    AuthenticationFailed,
    BadSymbol,
    InsufficientMargin,
    InvalidOrder,
    OrderBelowMinimum,
    OrderNotFound,
    RateLimited,
    VenueError,
    VenueNetworkError,
    VenueRejected,
    VenueTimeout,
    VenueUnavailable,
)
from venues.models import (
    Balance,
    BookLevel,
    Fill,
    FundingInfo,
    FundingPayment,
    MarketInfo,
    OrderBook,
    OrderResult,
    OrderStatus,
    Position,
    Side,
)

log = logging.getLogger(__name__)

BINANCE_FAPI = "https://fapi.binance.com"
DEFAULT_INTERVAL_HOURS = Decimal(8)
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

_BINANCE_CODE_RE = re.compile(r'"code"\s*:\s*(-?\d+)')
_LEVERAGE_UNCHANGED = (
    "not modified",
    "no need to change",
    "leverage not changed",
    "same leverage",
    "already set",
)

_CODE_TABLE: dict[int, type[VenueError]] = {
    -1021: VenueRejected,
    -1007: VenueTimeout,
    -2019: InsufficientMargin,
    -4050: InsufficientMargin,
    -4051: InsufficientMargin,
    -1002: AuthenticationFailed,
    -1022: AuthenticationFailed,
    -2014: AuthenticationFailed,
    -2013: OrderNotFound,
    -2011: OrderNotFound,
    -2010: InvalidOrder,
    -2022: InvalidOrder,
    -4164: InvalidOrder,
    -1111: InvalidOrder,
    -4003: InvalidOrder,
    -4131: InvalidOrder,
    -5021: InvalidOrder,
    -1121: BadSymbol,
    -1003: RateLimited,
    -1015: RateLimited,
}

# (ccxt class, hedgeflow class) in priority order: subclasses before their parents.
_CLASS_TABLE: list[tuple[type[BaseException], type[VenueError]]] = [
    (ccxt.InvalidNonce, VenueRejected),
    (ccxt.RequestTimeout, VenueTimeout),
    (ccxt.DDoSProtection, RateLimited),
    (ccxt.RateLimitExceeded, RateLimited),
    (ccxt.ExchangeNotAvailable, VenueUnavailable),  # OnMaintenance included
    (ccxt.NetworkError, VenueNetworkError),
    (ccxt.OperationFailed, VenueUnavailable),  # BadResponse, NullResponse, CancelPending
    (ccxt.InsufficientFunds, InsufficientMargin),
    (ccxt.OrderNotFound, OrderNotFound),
    (ccxt.InvalidOrder, InvalidOrder),
    (ccxt.BadSymbol, BadSymbol),
    (ccxt.AuthenticationError, AuthenticationFailed),  # PermissionDenied, AccountSuspended
    (ccxt.ExchangeError, VenueRejected),
]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text


def _binance_code(message: str) -> int | None:
    m = _BINANCE_CODE_RE.search(message)
    return int(m.group(1)) if m else None


def map_error(exc: BaseException, venue_name: str, *, secrets: Iterable[str] = ()) -> VenueError:
    """Map any exception raised by ccxt to a :class:`VenueError` (table in the module doc).

    ``secrets`` (API key, secret, password) are replaced by ``***`` in the message.
    """
    if isinstance(exc, VenueError):
        return exc
    raw = str(exc) or type(exc).__name__
    message = f"{venue_name}: {type(exc).__name__}: {_scrub(raw, secrets)}"
    target: type[VenueError] | None = None
    code = _binance_code(raw) if isinstance(exc, ccxt.BaseError) else None
    if code is not None:
        target = _CODE_TABLE.get(code)
    if target is None:
        for ccxt_cls, venue_cls in _CLASS_TABLE:
            if isinstance(exc, ccxt_cls):
                target = venue_cls
                break
    if target is None:
        # asyncio / aiohttp / OS errors that escaped ccxt's wrapping, or ccxt failing to parse
        # an answer: for an order the outcome is unknown, so it is looked up before resending
        target = VenueTimeout if isinstance(exc, TimeoutError) else VenueNetworkError
    return target(message, venue=venue_name)


def D(value: Any) -> Decimal | None:
    """Decimal from a ccxt value via ``str()`` (never from a float's binary value)."""
    if value is None or value == "":
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def _d0(value: Any) -> Decimal:
    d = D(value)
    return Decimal(0) if d is None else d


def _interval_hours(text: Any) -> Decimal | None:
    """'8h' → 8, '30m' → 0.5, '1d' → 24, 4 → 4."""
    if text is None:
        return None
    s = str(text).strip().lower()
    factor = Decimal(1)
    if s.endswith("h"):
        s = s[:-1]
    elif s.endswith("m"):
        s, factor = s[:-1], Decimal(1) / Decimal(60)
    elif s.endswith("d"):
        s, factor = s[:-1], Decimal(24)
    d = D(s)
    if d is None or d <= 0:
        return None
    return d * factor


_RAW_STATUS = {
    "NEW": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "CANCELLED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}


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
            log.debug("closing %s: %s", self.name, _scrub(str(exc), self._secrets))

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
                self._markets = {s: m for s, m in ((s, self._market_info(m)) for s, m in raw.items()) if m}
        return self._markets

    def _market_info(self, m: dict[str, Any]) -> MarketInfo | None:
        if not (m.get("swap") and m.get("linear")) or m.get("active") is False:
            return None
        cs = D(m.get("contractSize")) or Decimal(1)
        precision = m.get("precision") or {}
        limits = m.get("limits") or {}
        amount_step = self._precision_step(precision.get("amount"))
        price_tick = self._precision_step(precision.get("price"))
        if amount_step is None or price_tick is None:
            return None
        min_amount = D((limits.get("amount") or {}).get("min")) or amount_step
        min_cost = D((limits.get("cost") or {}).get("min")) or Decimal(0)
        return MarketInfo(
            symbol=m["symbol"],
            venue_symbol=str(m["id"]),
            contract_size=cs,
            qty_step=amount_step * cs,
            min_qty=min_amount * cs,
            min_notional=min_cost,
            price_tick=price_tick,
        )

    def _precision_step(self, value: Any) -> Decimal | None:
        d = D(value)
        if d is None or d <= 0:
            return None
        if self.exchange.precisionMode == ccxt.DECIMAL_PLACES:
            return Decimal(1).scaleb(-int(d))
        return d  # TICK_SIZE (binance in ccxt 4.5, most others)

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
        now_ms = int(time.time() * 1000)
        need_intervals = any(
            _interval_hours(fr.get("interval")) is None for s, fr in raw.items() if s in markets
        )
        if need_intervals:
            await self._refresh_intervals()
        out: dict[str, FundingInfo] = {}
        for symbol, fr in raw.items():
            if symbol not in markets:
                continue
            rate = D(fr.get("fundingRate"))
            mark = D(fr.get("markPrice"))
            nxt = fr.get("fundingTimestamp") or fr.get("nextFundingTimestamp")
            if rate is None or mark is None or nxt is None:
                continue
            interval = _interval_hours(fr.get("interval")) or self._intervals.get(symbol) or DEFAULT_INTERVAL_HOURS
            out[symbol] = FundingInfo(
                symbol=symbol,
                rate=rate,
                interval_hours=interval,
                next_funding_ms=int(nxt),
                mark_price=mark,
                index_price=D(fr.get("indexPrice")),
                timestamp_ms=int(fr.get("timestamp") or now_ms),
            )
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
        self._intervals = {
            s: h for s, h in ((s, _interval_hours(fr.get("interval"))) for s, fr in raw.items()) if h is not None
        }
        self._intervals_at = time.monotonic()

    async def order_book(self, symbol: str, depth: int = 20) -> OrderBook:
        m = await self.market(symbol)
        raw = await self._call("fetch_order_book", symbol, depth)

        def levels(rows: list[list[Any]]) -> list[BookLevel]:
            return [
                BookLevel(price=_d0(r[0]), qty=contracts_to_base(_d0(r[1]), m.contract_size)) for r in rows[:depth]
            ]

        return OrderBook(
            symbol=symbol,
            bids=levels(raw.get("bids") or []),
            asks=levels(raw.get("asks") or []),
            timestamp_ms=int(raw.get("timestamp") or time.time() * 1000),
        )

    # ------------------------------------------------------------------ account
    async def balance(self) -> Balance:
        raw = await self._call("fetch_balance")
        usdt = raw.get("USDT") or {}
        free, used, total = D(usdt.get("free")), D(usdt.get("used")), D(usdt.get("total"))
        if total is None:
            total = (free or Decimal(0)) + (used or Decimal(0))
        if free is None:
            free = total - (used or Decimal(0))
        if used is None:
            used = total - free
        return Balance(currency="USDT", total=total, free=free, used=used)

    async def positions(self, symbols: list[str] | None = None) -> list[Position]:
        """Open (non-zero) positions, signed quantity in base units."""
        markets = await self.markets()
        raw = await self._call("fetch_positions", symbols)
        out: list[Position] = []
        for p in raw:
            symbol = p.get("symbol")
            if symbol not in markets or (symbols is not None and symbol not in symbols):
                continue
            cs = markets[symbol].contract_size
            info = p.get("info") or {}
            signed = D(info.get("positionAmt")) if self._binance_dialect else None
            if signed is None:
                contracts = _d0(p.get("contracts"))
                signed = -contracts if p.get("side") == "short" else contracts
            qty = contracts_to_base(signed, cs)
            if qty == 0:
                continue
            out.append(
                Position(
                    symbol=symbol,
                    qty=qty,
                    entry_price=_d0(info.get("entryPrice") if self._binance_dialect else None)
                    or _d0(p.get("entryPrice")),
                    mark_price=D(p.get("markPrice")),
                    unrealized_pnl=_d0(p.get("unrealizedPnl")),
                    liquidation_price=D(p.get("liquidationPrice")) or None,
                    leverage=D(p.get("leverage")),
                )
            )
        return out

    async def is_one_way_mode(self) -> bool:
        """True when the account nets long and short per symbol (no hedge mode)."""
        raw = await self._call("fetch_position_mode")
        return not bool(raw.get("hedged"))

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        """Set leverage; "not modified / already set" answers count as success."""
        await self.market(symbol)
        try:
            await self._call("set_leverage", int(leverage), symbol)
        except (VenueRejected, InvalidOrder) as exc:
            if any(s in str(exc).lower() for s in _LEVERAGE_UNCHANGED):
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
        info = o.get("info") or {}
        cs = m.contract_size
        amount = D(info.get("origQty")) if self._binance_dialect else None
        if amount is None:
            amount = D(o.get("amount"))
        filled = D(info.get("executedQty")) if self._binance_dialect else None
        if filled is None:
            filled = _d0(o.get("filled"))
        avg = D(info.get("avgPrice")) if self._binance_dialect else None
        if avg is None or avg == 0:
            avg = D(o.get("average"))
        if avg is not None and avg == 0:
            avg = None
        filled_base = contracts_to_base(filled, cs)
        status = self._status(o, info, filled)
        fee_obj = o.get("fee") or {}
        fee = D(fee_obj.get("cost")) if isinstance(fee_obj, dict) else None
        if fee is None:
            # Binance order answers carry no commission: estimate with the configured taker
            # fee; fills() has the venue's exact commission.
            fee = filled_base * avg * self.venue.taker_fee if avg is not None else Decimal(0)
        ro = o.get("reduceOnly")
        if ro is None:
            ro = info.get("reduceOnly")
        ts = o.get("lastUpdateTimestamp") or o.get("timestamp") or info.get("updateTime") or time.time() * 1000
        return OrderResult(
            venue=self.name,
            symbol=m.symbol,
            client_order_id=str(o.get("clientOrderId") or client_order_id or ""),
            venue_order_id=str(o.get("id") or ""),
            side=Side(o.get("side") or (side.value if side else "buy")),
            reduce_only=bool(reduce_only if ro is None else ro in (True, "true", "True")),
            status=status,
            requested_qty=requested if requested is not None else contracts_to_base(_d0(amount), cs),
            filled_qty=filled_base,
            avg_price=avg,
            fee=fee,
            timestamp_ms=int(ts),
        )

    @staticmethod
    def _status(o: dict[str, Any], info: dict[str, Any], filled: Decimal) -> OrderStatus:
        raw = str(info.get("status") or "").upper()
        if raw in _RAW_STATUS:
            return _RAW_STATUS[raw]
        unified = o.get("status")
        if unified == "open":
            return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.NEW
        if unified == "closed":
            return OrderStatus.FILLED
        if unified in ("canceled", "cancelled"):
            return OrderStatus.CANCELED
        if unified == "expired":
            return OrderStatus.EXPIRED
        if unified == "rejected":
            return OrderStatus.REJECTED
        return OrderStatus.NEW

    # ------------------------------------------------------------------ history
    async def funding_income(self, since_ms: int, symbol: str | None = None) -> list[FundingPayment]:
        """Funding payments since ``since_ms`` (signed: > 0 received), oldest first."""
        markets = await self.markets()
        if symbol is not None and symbol not in markets:
            raise BadSymbol(f"{self.name}: unknown symbol {symbol!r}", venue=self.name)
        raw = await self._call("fetch_funding_history", symbol, since_ms, 1000)
        out = [
            FundingPayment(
                symbol=str(r.get("symbol")),
                amount=_d0((r.get("info") or {}).get("income") if self._binance_dialect else None)
                or _d0(r.get("amount")),
                timestamp_ms=int(r.get("timestamp") or 0),
                income_id=str(r.get("id") or (r.get("info") or {}).get("tranId") or ""),
            )
            for r in raw
            if (symbol is None or r.get("symbol") == symbol)
        ]
        return sorted(out, key=lambda p: p.timestamp_ms)

    async def fills(self, symbol: str, since_ms: int) -> list[Fill]:
        """Our trades (executions) in ``symbol`` since ``since_ms``, oldest first."""
        m = await self.market(symbol)
        raw = await self._call("fetch_my_trades", symbol, since_ms, 1000)
        out: list[Fill] = []
        for t in raw:
            info = t.get("info") or {}
            fee = t.get("fee") or {}
            out.append(
                Fill(
                    symbol=m.symbol,
                    venue_order_id=str(t.get("order") or ""),
                    trade_id=str(t.get("id") or ""),
                    side=Side(t.get("side")),
                    qty=contracts_to_base(_d0(t.get("amount")), m.contract_size),
                    price=_d0(t.get("price")),
                    fee=_d0(fee.get("cost") if isinstance(fee, dict) else None),
                    realized_pnl=_d0(info.get("realizedPnl")),
                    timestamp_ms=int(t.get("timestamp") or 0),
                )
            )
        return sorted(out, key=lambda f: f.timestamp_ms)
