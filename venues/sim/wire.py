"""Helpers shared by the HTTP handlers: the wall clock, Binance-style parameter parsing
(with Binance's error answers) and compact JSON responses.

The venue's own clock is :meth:`venues.sim.venue.Sim.now_ms` (this wall clock plus the
``clock_skew_ms`` fault); every timestamp the venue makes comes from it. Only the
``arrived_ns`` of a request (the contract's ``time.time_ns()``) is wall time."""

from __future__ import annotations

import json
import time
from decimal import Decimal, InvalidOperation

from aiohttp import web

from .errors import SimError

D = Decimal
ARRIVED_NS = web.RequestKey("arrived_ns", int)  # when the request arrived (time.time_ns)


def wall_ms() -> int:
    """Our wall clock (ms); the venue's clock is ``Sim.now_ms()``."""
    return time.time_ns() // 1_000_000


def param_bool(v: str | None) -> bool:
    return str(v).lower() == "true"


def param_dec(params: dict, name: str, required: bool = True) -> Decimal | None:
    v = params.get(name)
    if v is None or v == "":
        if required:
            raise SimError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        return None
    try:
        d = D(v)
    except InvalidOperation:
        raise SimError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.") from None
    if not d.is_finite():
        raise SimError(-1100, f"Illegal characters found in parameter '{name}'.")
    return d


def param_int(params: dict, name: str, default: int | None = None) -> int | None:
    v = params.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise SimError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})$'.") from None


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":")), status=status, content_type="application/json")
