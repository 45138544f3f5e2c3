"""Request signing of the simulated venue: Binance's ``X-MBX-APIKEY`` header plus an
HMAC-SHA256 ``signature`` over the query string and body, with ``timestamp``/``recvWindow``."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from .errors import SimError


def authenticate(headers: Mapping[str, str], raw_query: str, body: str, params: dict, *,
                 api_key: str, secret: bytes, server_ms: int) -> None:
    """Raise the :class:`SimError` Binance would answer with unless the request is signed;
    ``timestamp`` / ``recvWindow`` are checked against ``server_ms``, the venue's clock."""
    key = headers.get("X-MBX-APIKEY")
    if not key or not hmac.compare_digest(key, api_key):
        raise SimError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    sig = params.get("signature")
    if not sig:
        raise SimError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
    total = raw_query + body
    signed = "&".join(p for p in total.split("&") if not p.startswith("signature="))
    expected = hmac.new(secret, signed.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig.lower()):
        raise SimError(-1022, "Signature for this request is not valid.")
    ts_s = params.get("timestamp")
    if not ts_s or not ts_s.isdigit():
        raise SimError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
    rw_s = params.get("recvWindow", "5000")
    try:
        rw = int(rw_s)
    except ValueError:
        raise SimError(-1102, "Mandatory parameter 'recvWindow' was not sent, was empty/null, or malformed.") from None
    if rw > 60000 or rw <= 0:
        raise SimError(-1131, "recvWindow must be less than 60000")
    ts = int(ts_s)
    if ts > server_ms + 1000:
        raise SimError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server_ms - ts > rw:
        raise SimError(-1021, "Timestamp for this request is outside of the recvWindow.")
