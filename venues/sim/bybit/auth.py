"""Bybit v5 request signing: headers ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP``,
``X-BAPI-RECV-WINDOW`` and ``X-BAPI-SIGN`` = hex HMAC-SHA256(secret, timestamp + apiKey +
recvWindow + (query string of a GET | JSON body of a POST)).

Checked in Bybit's order: the key (10003), the timestamp against the venue's clock (10002:
``server - recvWindow <= timestamp < server + 1000``), the signature (10004)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import unquote

from .errors import bybit


def authenticate(headers: Mapping[str, str], raw_query: str, body: str, params: dict, *,
                 api_key: str, secret: bytes, server_ms: int) -> None:
    key = headers.get("X-BAPI-API-KEY")
    if not key:
        raise bybit(10003, "API key is invalid.")
    if not hmac.compare_digest(key.encode(), api_key.encode()):
        raise bybit(10003, "API key is invalid.")
    ts_s = headers.get("X-BAPI-TIMESTAMP", "")
    rw_s = headers.get("X-BAPI-RECV-WINDOW", "5000") or "5000"
    if not ts_s.isdigit() or not rw_s.isdigit():
        raise bybit(10002, f"invalid request, please check your server timestamp or recv_window param. "
                           f"req_timestamp[{ts_s}],server_timestamp[{server_ms}],recv_window[{rw_s}]")
    ts, rw = int(ts_s), int(rw_s)
    if not (server_ms - rw <= ts < server_ms + 1000):
        raise bybit(10002, f"invalid request, please check your server timestamp or recv_window param. "
                           f"req_timestamp[{ts}],server_timestamp[{server_ms}],recv_window[{rw}]")
    sig = (headers.get("X-BAPI-SIGN") or "").lower()
    payload = body if body else raw_query
    candidates = {payload, unquote(payload)}  # ccxt signs the unquoted query; the client may quote it
    for p in candidates:
        expected = hmac.new(secret, f"{ts_s}{key}{rw_s}{p}".encode(), hashlib.sha256).hexdigest()
        if sig and hmac.compare_digest(expected, sig):
            return
    raise bybit(10004, f"error sign! origin_string[{ts_s}{key}{rw_s}{payload}]")
