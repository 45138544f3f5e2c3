"""Typed venue errors. The gateway raises only these; activities map them to Temporal
``ApplicationError`` types by class name, and retry policies list the non-retryable ones.

| ccxt exception                                  | hedgeflow error        | retryable |
|-------------------------------------------------|------------------------|-----------|
| RequestTimeout                                  | VenueTimeout           | yes (outcome unknown: look up before resending) |
| DDoSProtection, RateLimitExceeded               | RateLimited            | yes       |
| ExchangeNotAvailable, OnMaintenance             | VenueUnavailable       | yes (outcome unknown for orders) |
| NetworkError (other)                            | VenueNetworkError      | yes (outcome unknown for orders) |
| InsufficientFunds                               | InsufficientMargin     | no        |
| InvalidOrder, OrderNotFillable, ...             | InvalidOrder           | no        |
| BadSymbol                                       | BadSymbol              | no        |
| AuthenticationError, PermissionDenied, AccountSuspended | AuthenticationFailed | no   |
| OrderNotFound                                   | OrderNotFound          | no        |
| (checked before sending) below min qty/notional | OrderBelowMinimum      | no        |
| ExchangeError (other)                           | VenueRejected          | no        |
"""

from __future__ import annotations


class VenueError(Exception):
    retryable: bool = False
    #: True when an order request may or may not have reached the venue
    outcome_unknown: bool = False

    def __init__(self, message: str, *, venue: str | None = None) -> None:
        super().__init__(message)
        self.venue = venue

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


# --- non-retryable ---------------------------------------------------------------------
class InsufficientMargin(VenueError):
    pass


class InvalidOrder(VenueError):
    pass


class OrderBelowMinimum(InvalidOrder):
    pass


class BadSymbol(VenueError):
    pass


class AuthenticationFailed(VenueError):
    pass


class OrderNotFound(VenueError):
    pass


class VenueRejected(VenueError):
    pass


RETRYABLE = (VenueTimeout, VenueUnavailable, VenueNetworkError, RateLimited)
NON_RETRYABLE = (
    InsufficientMargin,
    InvalidOrder,
    OrderBelowMinimum,
    BadSymbol,
    AuthenticationFailed,
    OrderNotFound,
    VenueRejected,
)
NON_RETRYABLE_TYPE_NAMES = [cls.__name__ for cls in NON_RETRYABLE]
