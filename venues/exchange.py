"""ccxt set-up of one venue (see :class:`venues.gateway.Gateway`)."""

from __future__ import annotations

from typing import Any

import ccxt.async_support as ccxt_async

from config.settings import VenueConfig, VenueKind
from venues.placing import RECV_WINDOW_MS

BINANCE_FAPI = "https://fapi.binance.com"


def make_exchange(venue: VenueConfig) -> ccxt_async.Exchange:
    """The ccxt instance of ``venue``: binanceusdm pointed at the simulator (kind ``sim``), else
    the ccxt class named by ``exchange_id``; Binance-dialect instances send ``recvWindow``."""
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
