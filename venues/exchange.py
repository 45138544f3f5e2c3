"""ccxt set-up of one venue (see :class:`venues.gateway.Gateway`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async

from config.settings import VenueConfig, VenueKind
from venues.adapters import Adapter, adapter_for
from venues.placing import RECV_WINDOW_MS

BINANCE_FAPI = "https://fapi.binance.com"


def make_exchange(venue: VenueConfig, adapter: Adapter | None = None) -> ccxt_async.Exchange:
    """The ccxt instance of ``venue``: a simulator (kind ``sim``) is the ccxt class of its dialect
    (binanceusdm by default) pointed at the simulator, else the ccxt class named by
    ``exchange_id``, in the venue's ``environment``; credentials and options from the adapter."""
    adapter = adapter or adapter_for(venue)
    common: dict[str, Any] = {
        "enableRateLimit": True,
        "rateLimit": 1000.0 / venue.requests_per_second,
        "timeout": venue.timeout_ms,
        **adapter.credentials(venue),
        # no currency list: nothing here uses it, and Bybit's / OKX's is a signed call (Hyperliquid's
        # would also sign the client's set-up actions) on every markets load
        "has": {"fetchCurrencies": False},
    }
    if venue.kind is VenueKind.SIM:
        if not venue.base_url:
            raise ValueError(f"sim venue {venue.name!r} has no base_url")
        if adapter.sim_class == "binanceusdm":
            return _binance_sim(common, venue.base_url)
        ex = getattr(ccxt_async, adapter.sim_class or "")(
            {**common, "options": {**adapter.ccxt_options(), "fetchCurrencies": False,
                                   "adjustForTimeDifference": False}})
        ex.urls["api"] = point_at(ex.urls["api"], venue.base_url)
        return ex
    cls = getattr(ccxt_async, venue.exchange_id, None)
    if cls is None:
        raise ValueError(f"unknown ccxt exchange id {venue.exchange_id!r} for venue {venue.name!r}")
    ex = cls({**common, "options": adapter.ccxt_options()})
    if venue.environment != "live":
        adapter.apply_environment(ex, venue.environment)
    return ex


def _binance_sim(common: dict[str, Any], base_url: str) -> ccxt_async.Exchange:
    """binanceusdm with its USD-M URLs on the simulator (the simulator's own dialect)."""
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
    base = base_url.rstrip("/")
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


def point_at(urls: Any, base_url: str) -> Any:
    """``urls`` (a ccxt ``urls['api']`` entry: a URL or nested dicts of them) with every URL's
    scheme and host replaced by ``base_url`` (paths kept): ``https://api.{hostname}/v5`` →
    ``http://127.0.0.1:8701/v5``."""
    if isinstance(urls, dict):
        return {k: point_at(v, base_url) for k, v in urls.items()}
    if isinstance(urls, str):
        return base_url.rstrip("/") + urlsplit(urls).path.rstrip("/")
    return urls
