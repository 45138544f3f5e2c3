"""Typed venue errors and THE ccxt → hedgeflow error mapping (the one table; the README links
here). The gateway raises only these; activities map them to Temporal ``ApplicationError``
types by class name, and retry policies list the non-retryable ones
(:data:`NON_RETRYABLE_TYPE_NAMES`).

Principle: an error is *retryable* when the same request may succeed later (timeouts,
unavailability, rate limits, network trouble); an error that may have let an order request
reach the venue is also *outcome unknown*, and the gateway looks the order up by client id
before anything is resent. Everything the venue definitively refused is non-retryable.

ccxt → hedgeflow error mapping (:func:`map_error`; first matching row wins):

| ccxt exception / venue answer                                         | hedgeflow error      | retryable | outcome unknown |
|-----------------------------------------------------------------------|----------------------|-----------|-----------------|
| Binance code -1021 (timestamp outside recvWindow), ``InvalidNonce``   | ClockSkew (the gateway re-syncs its clock, then a retry re-signs) | yes | no |
| Binance code -1007 (backend timeout, execution status unknown)        | VenueTimeout         | yes       | yes             |
| Binance code -2019, -4050, -4051 (margin insufficient)                | InsufficientMargin   | no        | no              |
| Binance code -1022 (bad signature), -2014, -1002; -2015 via ccxt      | AuthenticationFailed | no        | no              |
| Binance code -2013, -2011 (order does not exist / unknown order)      | OrderNotFound        | no        | no              |
| Binance code -2010, -2022, -4164, -1111, -4003, -5021                 | InvalidOrder         | no        | no              |
| Binance code -4131 (market order would fill beyond the PERCENT_PRICE band), -4016 / -4017 (limit price beyond it) | PriceBandRejected (an InvalidOrder; fallback below) | no | no |
| Binance code -1013, -4004, -4005, -4023, -4140, -4141 (filters/status) | InvalidOrder         | no        | no              |
| Binance code -1121                                                    | BadSymbol            | no        | no              |
| Binance code -5022, Hyperliquid "Post only order would have immediately matched" (post-only would take) | InvalidOrder (``place_limit_order`` answers EXPIRED, filled 0: :func:`is_post_only_refusal`) | no | no |
| Binance code -1003, -1015; HTTP 418/429                               | RateLimited          | yes       | no              |
| OKX ``sCode`` 51169 (reduce-only, no position; ccxt: ``ExchangeError``) | InvalidOrder       | no        | no              |
| Hyperliquid "User or API Wallet 0x… does not exist" (signer unknown; ccxt: ``InvalidOrder``) | AuthenticationFailed | no | no |
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
| (raised by the gateway) look-ups could not tell whether an order exists | OrderOutcomeUnknown | yes      | yes             |

Fallbacks the gateway applies itself before raising:

* ``ClockSkew``: re-syncs its clock (above).
* Market-metadata refusals (:data:`MARKET_METADATA_CODES`): reloads the markets and, if they
  changed, re-rounds and sends once more.
* ``PriceBandRejected`` (-4131) of a *reduce-only* market order: sends at once, with the same
  client order id (the refused order never existed), a reduce-only LIMIT IOC at the band edge
  (BUY at mark × multiplierUp rounded down to the tick, SELL at mark × multiplierDown rounded
  up, fresh mark); it fills what lies inside the band and the caller's close loop sends the
  rest as a new order. An opening order's refusal is raised as it is.

The rows are :data:`CODE_TABLE` (Binance codes read from the response body, checked first),
:data:`VENUE_CODE_TABLE` (other dialects' codes: OKX ``sCode``, Bybit ``retCode``),
:data:`MESSAGE_TABLE` (venues without codes: Hyperliquid) and :data:`CLASS_TABLE` (ccxt classes,
subclasses before their parents). The other dialects' errors mostly classify by ccxt's own
tables (their hosts do not matter to ccxt): Bybit 10003/10004 and OKX 50105/50113 →
AuthenticationFailed, Bybit 110007 / OKX 51008 / Hyperliquid "Insufficient margin" →
InsufficientMargin, Bybit 110017 and Hyperliquid "Reduce only order would increase position" →
InvalidOrder, Bybit 10016 / OKX 50004 (HTTP 503) → VenueTimeout; the venue tables fill the gaps.

The Binance-code rows exist because ccxt picks its per-market error table from the request
URL's host: against a simulator (or any non-``binance.com`` host) only the common table
applies, where e.g. -2019 "Margin is insufficient" is a plain ``ExchangeError``. Reading the
code from the response body makes the mapping independent of the host (for kind ``sim`` the
USD-M table is also merged into the ccxt instance's generic one, as tests/simproc does). ccxt itself turns
-2015 (invalid key) into ``DDoSProtection`` → RateLimited once the instance has had one
successful private request (Binance answers -2015 during temporary IP bans).

Every mapped error keeps the Binance code in ``code`` (None when there was none). The codes in
:data:`MARKET_METADATA_CODES` (lot size, precision, min notional, symbol status ...) mean the
venue's filters or market status changed under us: the gateway then reloads its markets
(:func:`is_market_metadata_error`).

Answers to ``set_leverage`` matching :data:`LEVERAGE_UNCHANGED` ("not modified", "already
set", ...) count as success (:func:`is_leverage_unchanged`). Messages are scrubbed of the API
key, secret and password (:func:`scrub`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable


class VenueError(Exception):
    retryable: bool = False
    #: True when an order request may or may not have reached the venue
    outcome_unknown: bool = False

    def __init__(self, message: str, *, venue: str | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.venue = venue
        #: the venue's (Binance-dialect) error code, when the answer carried one
        self.code = code

    @property
    def type_name(self) -> str:
        return type(self).__name__


# --- retryable -------------------------------------------------------------------------
class VenueTimeout(VenueError):
    retryable = True
    outcome_unknown = True


class VenueUnavailable(VenueError):
    retryable = True
    outcome_unknown = True


class VenueNetworkError(VenueError):
    retryable = True
    outcome_unknown = True


class RateLimited(VenueError):
    retryable = True


class ClockSkew(VenueError):
    """The venue refused the request's timestamp (Binance -1021): nothing was accepted, the
    gateway has re-measured the clock offset, and a retry signs with the corrected time."""

    retryable = True


class OrderOutcomeUnknown(VenueTimeout):
    """The gateway could not establish whether an order exists (its look-ups kept failing),
    so it sent nothing: retry later, looking the client id up first."""


# --- non-retryable ---------------------------------------------------------------------
class InsufficientMargin(VenueError):
    pass


class InvalidOrder(VenueError):
    pass


class OrderBelowMinimum(InvalidOrder):
    pass


class PriceBandRejected(InvalidOrder):
    """The venue's price band (Binance PERCENT_PRICE around the mark) refused the order: a
    market order would fill beyond it (-4131), a limit price lies beyond it (-4016 / -4017)."""


class BadSymbol(VenueError):
    pass


class AuthenticationFailed(VenueError):
    pass


class OrderNotFound(VenueError):
    pass


class VenueRejected(VenueError):
    pass


RETRYABLE = (VenueTimeout, VenueUnavailable, VenueNetworkError, RateLimited, OrderOutcomeUnknown, ClockSkew)
NON_RETRYABLE = (
    InsufficientMargin,
    InvalidOrder,
    OrderBelowMinimum,
    PriceBandRejected,
    BadSymbol,
    AuthenticationFailed,
    OrderNotFound,
    VenueRejected,
)
NON_RETRYABLE_TYPE_NAMES = [cls.__name__ for cls in NON_RETRYABLE]


# --- the mapping -----------------------------------------------------------------------
#: Binance error codes (from the response body), checked before the ccxt class.
CODE_TABLE: dict[int, type[VenueError]] = {
    -1021: ClockSkew,
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
    -4131: PriceBandRejected,
    -4016: PriceBandRejected,
    -4017: PriceBandRejected,
    -5021: InvalidOrder,
    -1013: InvalidOrder,
    -4004: InvalidOrder,
    -4005: InvalidOrder,
    -4023: InvalidOrder,
    -4140: InvalidOrder,
    -4141: InvalidOrder,
    -1121: BadSymbol,
    -1003: RateLimited,
    -1015: RateLimited,
}

#: Binance codes saying the order broke a filter (precision -1111, lot size -1013 / -4003 / -4004 /
#: -4005 / -4023, price -4013 / -4014 / -4024, min notional -4164) or the market's status
#: (-4140 invalid symbol status, -4141 symbol closed): the cached market metadata is stale.
MARKET_METADATA_CODES = frozenset(
    {-1013, -1111, -4003, -4004, -4005, -4013, -4014, -4023, -4024, -4164, -4140, -4141}
)

#: (ccxt exception class name, hedgeflow class) in priority order: subclasses before their
#: parents. Names, resolved on first use, so that importing this module (workflows do, for
#: :data:`NON_RETRYABLE_TYPE_NAMES`) does not import ccxt.
CLASS_TABLE: list[tuple[str, type[VenueError]]] = [
    ("InvalidNonce", ClockSkew),
    ("RequestTimeout", VenueTimeout),
    ("DDoSProtection", RateLimited),
    ("RateLimitExceeded", RateLimited),
    ("ExchangeNotAvailable", VenueUnavailable),  # OnMaintenance included
    ("NetworkError", VenueNetworkError),
    ("OperationFailed", VenueUnavailable),  # BadResponse, NullResponse, CancelPending
    ("InsufficientFunds", InsufficientMargin),
    ("OrderNotFound", OrderNotFound),
    ("InvalidOrder", InvalidOrder),
    ("BadSymbol", BadSymbol),
    ("AuthenticationError", AuthenticationFailed),  # PermissionDenied, AccountSuspended
    ("ExchangeError", VenueRejected),
]

#: Other dialects' codes (OKX ``sCode``, Bybit ``retCode``, read from the body) where ccxt's
#: class is too coarse. (Bybit 110043 "leverage not modified" is :data:`LEVERAGE_UNCHANGED`.)
VENUE_CODE_TABLE: dict[int, type[VenueError]] = {
    51169: InvalidOrder,  # OKX: reduce-only order, no position to reduce (ccxt's okx table lacks it)
}
#: (fragment of the message, hedgeflow class) for venues whose errors carry no code.
MESSAGE_TABLE: tuple[tuple[str, type[VenueError]], ...] = (
    ("User or API Wallet", AuthenticationFailed),  # Hyperliquid: the signer is no user or agent wallet
)
#: Bybit codes of a ``set_leverage`` refusal that says the leverage is already that.
LEVERAGE_UNCHANGED_CODES = frozenset({110043})

#: Lower-case fragments of a ``set_leverage`` refusal that means "already at that leverage".
LEVERAGE_UNCHANGED = (
    "not modified",
    "no need to change",
    "leverage not changed",
    "same leverage",
    "already set",
)

_BINANCE_CODE_RE = re.compile(r'"code"\s*:\s*(-?\d+)')
_VENUE_CODE_RE = re.compile(r'"(?:sCode|retCode)"\s*:\s*"?(\d+)"?')


@functools.cache
def _ccxt_classes() -> tuple[type[BaseException], list[tuple[type[BaseException], type[VenueError]]]]:
    import ccxt

    return ccxt.BaseError, [(getattr(ccxt, name), venue_cls) for name, venue_cls in CLASS_TABLE]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (of at least 4 characters) in ``text`` by ``***``."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text


def binance_code(message: str) -> int | None:
    """The ``"code": -NNNN`` of a Binance-dialect error body quoted in ``message``."""
    m = _BINANCE_CODE_RE.search(message)
    return int(m.group(1)) if m else None


def venue_code(message: str) -> int | None:
    """The first non-zero OKX ``sCode`` / Bybit ``retCode`` of an error body quoted in ``message``."""
    for m in _VENUE_CODE_RE.finditer(message):
        if int(m.group(1)) != 0:
            return int(m.group(1))
    return None


def map_error(exc: BaseException, venue_name: str, *, secrets: Iterable[str] = ()) -> VenueError:
    """Map any exception raised by ccxt to a :class:`VenueError` (table in the module doc).

    ``secrets`` (API key, secret, password) are replaced by ``***`` in the message.
    """
    if isinstance(exc, VenueError):
        return exc
    raw = str(exc) or type(exc).__name__
    message = f"{venue_name}: {type(exc).__name__}: {scrub(raw, secrets)}"
    base_error, class_table = _ccxt_classes()
    target: type[VenueError] | None = None
    code = binance_code(raw) if isinstance(exc, base_error) else None
    if code is not None:
        target = CODE_TABLE.get(code)
    elif isinstance(exc, base_error):
        code = venue_code(raw)
        target = VENUE_CODE_TABLE.get(code) if code is not None else None
        target = target or next((cls for text, cls in MESSAGE_TABLE if text in raw), None)
    if target is None:
        for ccxt_cls, venue_cls in class_table:
            if isinstance(exc, ccxt_cls):
                target = venue_cls
                break
    if target is None:
        # asyncio / aiohttp / OS errors that escaped ccxt's wrapping, or ccxt failing to parse
        # an answer: for an order the outcome is unknown, so it is looked up before resending
        target = VenueTimeout if isinstance(exc, TimeoutError) else VenueNetworkError
    return target(message, venue=venue_name, code=code)


def is_market_metadata_error(exc: VenueError) -> bool:
    """True when a refusal says the venue's filters or market status differ from ours."""
    code = exc.code if exc.code is not None else binance_code(str(exc))
    return code in MARKET_METADATA_CODES


def is_leverage_unchanged(exc: VenueError) -> bool:
    """True when a ``set_leverage`` refusal only says the leverage is already set."""
    return isinstance(exc, (VenueRejected, InvalidOrder)) and (
        exc.code in LEVERAGE_UNCHANGED_CODES or any(s in str(exc).lower() for s in LEVERAGE_UNCHANGED)
    )


#: A post-only order refused because it would take liquidity: Binance's code, Hyperliquid's message.
POST_ONLY_REFUSAL_CODES = frozenset({-5022})
POST_ONLY_REFUSAL_TEXT = "Post only order would have immediately matched"


def is_post_only_refusal(exc: VenueError) -> bool:
    """True when the venue refused a post-only order because it would have crossed the book
    (Binance -5022, Hyperliquid's "Post only order would have immediately matched")."""
    code = exc.code if exc.code is not None else binance_code(str(exc))
    return code in POST_ONLY_REFUSAL_CODES or POST_ONLY_REFUSAL_TEXT in str(exc)
