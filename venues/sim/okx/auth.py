"""OKX v5 authentication and error rendering of the simulator.

A signed request carries ``OK-ACCESS-KEY``, ``OK-ACCESS-PASSPHRASE``, ``OK-ACCESS-TIMESTAMP``
(ISO 8601 with milliseconds, ``2020-12-08T09:08:57.715Z``, within 30 s of the venue's clock) and
``OK-ACCESS-SIGN`` = base64(HMAC-SHA256(secret, timestamp + method + requestPath(+ '?' + query)
+ body)). The dialect's :func:`authenticate` (called by the server, which does not hand it the
path) checks the headers, the timestamp and the key; :func:`verify` (called by every signed
handler, see :mod:`venues.sim.okx.endpoints`) the passphrase and the signature.

:func:`render_error` turns a core :class:`~venues.sim.errors.SimError` (Binance codes) into
OKX's answer; :func:`okx_code` is the mapping, shared with the per-order ``sCode`` of the
trade endpoints."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..errors import SimError
from ..venue import Sim
from .wire import OkxError

#: how far a request's timestamp may be from the venue's clock (OKX: 30 s)
MAX_SKEW_MS = 30_000

#: Binance code of the core → (OKX code, message; None keeps the core's)
CODES: dict[int, tuple[str, str | None]] = {
    -1000: ("50026", "System error, please try again later."),
    -1001: ("50026", "System error, please try again later."),
    -1003: ("50011", "Too Many Requests"),
    -1007: ("50004", "API endpoint request timeout (does not mean that the request was successful or failed, "
                     "please check the request result)."),
    -1021: ("50102", "Timestamp request expired"),
    -1022: ("50113", "Invalid Sign"),
    -2015: ("50111", "Invalid OK-ACCESS-KEY"),
    -1100: ("51000", None),
    -1102: ("50014", None),
    -1111: ("51121", "Order quantity must be a multiple of the lot size."),
    -1013: ("51202", "Market order amount exceeds the maximum amount."),
    -1116: ("51000", "Parameter ordType error"),
    -1115: ("51000", "Parameter ordType error"),
    -1117: ("51000", "Parameter side error"),
    -1121: ("51001", "Instrument ID, Instrument ID code, or Spread ID doesn't exist."),
    -2010: ("51109", "No available offer (order rejected by a simulated fault)."),
    -2011: ("51400", "Order cancellation failed as the order has been filled, canceled or does not exist."),
    -2013: ("51603", "Order does not exist"),
    -2019: ("51008", "Order failed. Insufficient USDT margin in account"),
    -2022: ("51169", "Order placement failed because you don't have any positions in this direction for this "
                     "contract."),
    -4003: ("51000", "Parameter sz error"),
    -4015: ("51000", "Parameter clOrdId error"),
    -4016: ("51137", None),
    -4017: ("51138", None),
    -4028: ("51000", "Parameter lever error"),
    -4061: ("51000", "Parameter posSide error"),
    -4116: ("51016", "Duplicated client order ID"),
    -4131: ("51006", "Order price is not within the price limit (the counterparty's best price is beyond it)."),
    -4140: ("51022", "Contract suspended: only reduce-only orders are accepted."),
    -4141: ("51027", "Contract expired."),
    -4164: ("51020", "Your order should meet or exceed the minimum order amount."),
    -5021: ("51006", "Order price is not within the price limit (FOK order could not be filled at once)."),
}
KEEP_STATUS = (401, 403, 429)


def okx_code(e: SimError) -> tuple[str, str]:
    """(OKX code, message) of an error."""
    if isinstance(e, OkxError):
        return e.okx_code, e.msg
    code, msg = CODES.get(e.code, ("50026" if e.status >= 500 else "51000", None))
    return code, msg or e.msg


def render_error(e: SimError, now_ms: int) -> tuple[Any, int]:
    code, msg = okx_code(e)
    status = e.status if (e.status in KEEP_STATUS or e.status >= 500) else 200
    return {"code": code, "msg": msg, "data": []}, status


def _ts_ms(v: str) -> int | None:
    for f in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return int(datetime.strptime(v, f).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            continue
    return None


def _auth_err(code: str, msg: str) -> OkxError:
    return OkxError(code, msg, 401)


def authenticate(headers: Mapping[str, str], raw_query: str, body: str, params: dict, *,
                 api_key: str, secret: bytes, server_ms: int) -> None:
    """The header checks of a signed request (everything but passphrase and signature)."""
    for h, code in (("OK-ACCESS-KEY", "50103"), ("OK-ACCESS-PASSPHRASE", "50104"), ("OK-ACCESS-SIGN", "50106"),
                    ("OK-ACCESS-TIMESTAMP", "50107")):
        if not headers.get(h):
            raise _auth_err(code, f"Request header {h.replace('-', '_')} can not be empty.")
    ts = _ts_ms(headers["OK-ACCESS-TIMESTAMP"])
    if ts is None:
        raise _auth_err("50112", "Invalid OK-ACCESS-TIMESTAMP")
    if abs(server_ms - ts) > MAX_SKEW_MS:
        raise _auth_err("50102", "Timestamp request expired")
    if not hmac.compare_digest(headers["OK-ACCESS-KEY"], api_key):
        raise _auth_err("50111", "Invalid OK-ACCESS-KEY")


def verify(sim: Sim, request: web.Request, body: str) -> None:
    """Passphrase (``sim.opts.api_passphrase``) and signature of a signed request."""
    h = request.headers
    want = sim.opts.api_passphrase
    if not want or not hmac.compare_digest(h.get("OK-ACCESS-PASSPHRASE", ""), want):
        raise _auth_err("50105", "Request header OK_ACCESS_PASSPHRASE incorrect.")
    prehash = h.get("OK-ACCESS-TIMESTAMP", "") + request.method + request.raw_path + body
    expected = base64.b64encode(hmac.new(sim.secret, prehash.encode(), hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, h.get("OK-ACCESS-SIGN", "")):
        raise _auth_err("50113", "Invalid Sign")


def timestamp_ms(request: web.Request) -> int | None:
    return _ts_ms(request.headers.get("OK-ACCESS-TIMESTAMP", ""))
