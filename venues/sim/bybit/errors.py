"""Bybit's error answers: retCodes raised by the dialect itself (a :class:`SimError` with a
positive code is already Bybit's) and the rendering of the core's Binance codes as Bybit's.

Which ccxt class each retCode becomes (ccxt bybit's ``exceptions`` table): 10001 BadRequest
(but "Not supported symbols" BadSymbol, broad match), 10002 InvalidNonce, 10003 / 10004
AuthenticationError, 10006 RateLimitExceeded, 10016 ExchangeError ("Request timeout" in the
message: RequestTimeout), 110001 OrderNotFound, 110007 InsufficientFunds, 110017 / 110072 /
110094 / 110003 / 110023 / 110032 InvalidOrder, 110025 NoChange, 110043 BadRequest, 110066 ExchangeError.
"""

from __future__ import annotations

from typing import Any

from ..errors import SimError


def bybit(code: int, msg: str, status: int = 200) -> SimError:
    """An error Bybit answers with (positive retCode)."""
    return SimError(code, msg, status)


def params_error(what: str) -> SimError:
    return bybit(10001, f"params error: {what}")


def symbol_invalid() -> SimError:
    return bybit(10001, "params error: symbol invalid")


def not_supported_symbols() -> SimError:
    return bybit(10001, "Not supported symbols")


def order_not_found() -> SimError:
    return bybit(110001, "order not exists or too late to cancel")


#: the core's Binance code → (Bybit retCode, retMsg; None keeps the core's message)
FROM_BINANCE: dict[int, tuple[int, str | None]] = {
    -1121: (10001, "params error: symbol invalid"),
    -1102: (10001, None),
    -1100: (10001, None),
    -1116: (10001, "params error: OrderType invalid"),
    -1117: (10001, "params error: Side invalid"),
    -1115: (10001, "params error: TimeInForce invalid"),
    -4003: (10001, "params error: Qty invalid"),
    -1111: (10001, "params error: Qty invalid"),
    -2013: (110001, "order not exists or too late to cancel"),
    -2011: (110001, "order not exists or too late to cancel"),
    -2019: (110007, "ab not enough for new order"),
    -2022: (110017, "current position is zero, cannot fix reduce-only order qty"),
    -4164: (110094, None),
    -4116: (110072, "OrderLinkedID is duplicate"),
    -4131: (110003, "Order price is out of permissible range"),
    -4016: (110003, "Order price is out of permissible range"),
    -4017: (110003, "Order price is out of permissible range"),
    -5021: (110032, "Illegal order: the FOK order cannot be filled immediately"),
    -4140: (110023, "This contract only supports position reduction operation, please contact customer service for details"),
    -4141: (110066, "No trading is allowed at the current time"),
    -2010: (110032, "Illegal order (simulated rejection)"),
    -1003: (10006, "Too many visits. Exceeded the API Rate Limit."),
    -1001: (10016, "Internal system error."),
    -1007: (10016, "Request timeout, please try again later"),
}


def _min_notional_msg(e: SimError) -> str:
    return "The order value must be at least " + e.msg.split("no smaller than ", 1)[-1].split(" ", 1)[0] + " USDT"


def envelope(code: int, msg: str, now_ms: int, result: Any = None) -> dict:
    return {"retCode": code, "retMsg": msg, "result": {} if result is None else result, "retExtInfo": {},
            "time": now_ms}


def render_error(e: SimError, now_ms: int) -> tuple[Any, int]:
    """(Bybit envelope, HTTP status): HTTP 200 as Bybit answers business errors, 5xx kept (a
    dropped or failed answer), 429 kept for the request-weight limit."""
    status = e.status if e.status >= 500 or e.status == 429 else 200
    if e.code > 0:
        return envelope(e.code, e.msg, now_ms), status
    code, msg = FROM_BINANCE.get(e.code, (10016 if e.status >= 500 else 10001, None))
    if msg is None:
        msg = _min_notional_msg(e) if e.code == -4164 else f"params error: {e.msg}" if code == 10001 else e.msg
    return envelope(code, msg, now_ms), status
