"""Helpers for tests that talk to simulated venues over real HTTP with real ccxt.

- :func:`make_ccxt_client` — the one way to point ``ccxt.async_support.binanceusdm`` at a sim.
- :func:`in_process_sim` — async context manager around :func:`venues.sim.start_sim`.
- :func:`admin` — the unsigned ``/_sim/`` admin API over HTTP; :func:`sim_client` — a ccxt
  client that closes itself.
(The simulator as a child process is ``workers.simproc``.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import ccxt.async_support as ccxt_async

from venues.sim import DEFAULT_API_KEY, DEFAULT_API_SECRET

REPO = Path(__file__).resolve().parent.parent
BINANCE_FAPI = "https://fapi.binance.com"


def make_ccxt_client(base_url: str, api_key: str = DEFAULT_API_KEY, secret: str = DEFAULT_API_SECRET,
                     **options) -> ccxt_async.binanceusdm:
    """An unmodified ccxt binanceusdm client whose fapi URLs point at ``base_url``.

    ccxt picks Binance's USD-M-specific error codes (-2019 Margin is insufficient →
    InsufficientFunds, -2022 ReduceOnly rejected → InvalidOrder, -4164 min notional →
    InvalidOrder, -4116 duplicate client id → InvalidOrder, ...) only when the request URL
    starts with ``https://fapi.binance.com/``. With the URLs rewritten to the simulator those
    would fall back to a bare ExchangeError, so the USD-M table is merged into the generic one
    here (USD-M entries win, as they do on the real host). The gateway must do the same.
    """
    base_url = base_url.rstrip("/")
    ex = ccxt_async.binanceusdm({
        "apiKey": api_key,
        "secret": secret,
        "options": {
            "fetchMarkets": ["linear"],
            "fetchCurrencies": False,
            "adjustForTimeDifference": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
            **options.pop("options", {}),
        },
        **options,
    })
    for k, v in list(ex.urls["api"].items()):
        if isinstance(v, str) and v.startswith(BINANCE_FAPI):
            ex.urls["api"][k] = base_url + v[len(BINANCE_FAPI):]
    linear = ex.exceptions.get("linear", {})
    ex.exceptions["exact"] = {**ex.exceptions["exact"], **linear.get("exact", {})}
    ex.exceptions["broad"] = {**ex.exceptions["broad"], **linear.get("broad", {})}
    return ex


@contextlib.asynccontextmanager
async def in_process_sim(tmp_path: Path | str, name: str = "sim-t", **kw) -> AsyncIterator:
    """Start a sim inside the running event loop on a free port with a state file under tmp_path."""
    from venues.sim import SimOptions, start_sim

    kw.setdefault("state", str(Path(tmp_path) / f"{name}.sqlite"))
    handle = await start_sim(SimOptions(name=name, port=0, **kw))
    try:
        yield handle
    finally:
        await handle.stop()


async def admin(url: str, path: str, body: object | None = None, status: int = 200) -> object:
    """GET ``path`` (no body) or POST ``body`` as JSON; a POST must answer ``status``."""
    async with aiohttp.ClientSession() as s:
        if body is None:
            async with s.get(url + path) as r:
                return await r.json()
        async with s.post(url + path, json=body) as r:
            data = await r.json()
            if r.status != status:
                raise AssertionError((r.status, data))
            return data


@contextlib.asynccontextmanager
async def sim_client(url: str, *, load_markets: bool = False, **kw) -> AsyncIterator[ccxt_async.binanceusdm]:
    """:func:`make_ccxt_client` without client-side rate limiting, closed on exit."""
    client = make_ccxt_client(url, **{"enableRateLimit": False, **kw})
    try:
        if load_markets:
            await client.load_markets()
        yield client
    finally:
        await client.close()
