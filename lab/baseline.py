"""The baseline of ``hedgeflow bench``: the same open/close as a TradeWorkflow in plain asyncio
+ unmodified ccxt, no Temporal, against the lab's simulators."""

from __future__ import annotations

import asyncio
import time
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from config.settings import DEMO_API_KEY, DEMO_API_SECRET

if TYPE_CHECKING:
    from lab.harness import Lab

BINANCE_FAPI = "https://fapi.binance.com"


def make_ccxt(base_url: str, rps: float = 1000.0):
    """Unmodified ccxt binanceusdm pointed at a simulator (the baseline's only venue client)."""
    import ccxt.async_support as ccxt_async

    ex = ccxt_async.binanceusdm({
        "apiKey": DEMO_API_KEY, "secret": DEMO_API_SECRET, "enableRateLimit": True, "rateLimit": 1000.0 / rps,
        "options": {"fetchMarkets": ["linear"], "fetchCurrencies": False, "adjustForTimeDifference": False,
                    "warnOnFetchOpenOrdersWithoutSymbol": False},
    })
    for k, v in list(ex.urls["api"].items()):
        if isinstance(v, str) and v.startswith(BINANCE_FAPI):
            ex.urls["api"][k] = base_url.rstrip("/") + v[len(BINANCE_FAPI):]
    linear = ex.exceptions.get("linear", {})
    ex.exceptions["exact"] = {**ex.exceptions["exact"], **linear.get("exact", {})}
    ex.exceptions["broad"] = {**ex.exceptions["broad"], **linear.get("broad", {})}
    return ex


class Baseline:
    """The same open/close as a TradeWorkflow, in plain asyncio + ccxt, no Temporal: pre-trade
    reads on both venues, leverage, both legs with ``asyncio.gather``, verify the fills; on a
    lone fill, close that leg reduce-only."""

    def __init__(self, lab: Lab, long_venue: str, short_venue: str, leverage: int = 3) -> None:
        self.lab = lab
        self.venues = (long_venue, short_venue)
        self.leverage = leverage
        self.ex: dict[str, Any] = {}

    async def __aenter__(self) -> Baseline:
        for v in self.venues:
            self.ex[v] = make_ccxt(self.lab.sims[v].url, self.lab.venue_rps)
        await asyncio.gather(*(ex.load_markets() for ex in self.ex.values()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(ex.close() for ex in self.ex.values()), return_exceptions=True)

    async def _check(self, venue: str, symbol: str) -> Decimal:
        ex = self.ex[venue]
        _bal, _pos, rates, _mode = await asyncio.gather(
            ex.fetch_balance(), ex.fetch_positions([symbol]), ex.fetch_funding_rates(), ex.fetch_position_mode(symbol)
        )
        return Decimal(str(rates[symbol]["markPrice"]))

    def _qty(self, venue: str, symbol: str, notional: Decimal, mark: Decimal) -> Decimal:
        m = self.ex[venue].market(symbol)
        step = Decimal(str(m["precision"]["amount"]))
        return (notional / mark / step).to_integral_value(ROUND_DOWN) * step

    async def _verified(self, venue: str, symbol: str, order: dict[str, Any]) -> dict[str, Any]:
        ex = self.ex[venue]
        while order.get("status") != "closed":
            await asyncio.sleep(0.01)
            order = await ex.fetch_order(order["id"], symbol)
        return order

    async def open_close(self, symbol: str, notional: Decimal, tag: str) -> dict[str, Any]:
        """One open (timed to both fills verified) and its close. Returns timings and ids."""
        lv, sv = self.venues
        t0 = time.time_ns()
        lmark, smark = await asyncio.gather(self._check(lv, symbol), self._check(sv, symbol))
        qty = min(self._qty(lv, symbol, notional, lmark), self._qty(sv, symbol, notional, smark))
        await asyncio.gather(*(self.ex[v].set_leverage(self.leverage, symbol) for v in self.venues))
        lcid, scid = f"{tag}L", f"{tag}S"
        lo, so = await asyncio.gather(
            self.ex[lv].create_order(symbol, "market", "buy", float(qty), None, {"newClientOrderId": lcid}),
            self.ex[sv].create_order(symbol, "market", "sell", float(qty), None, {"newClientOrderId": scid}),
        )
        lo, so = await asyncio.gather(self._verified(lv, symbol, lo), self._verified(sv, symbol, so))
        t1 = time.time_ns()
        await asyncio.gather(
            self.ex[lv].create_order(symbol, "market", "sell", lo["filled"], None,
                                     {"reduceOnly": True, "newClientOrderId": f"{tag}LC"}),
            self.ex[sv].create_order(symbol, "market", "buy", so["filled"], None,
                                     {"reduceOnly": True, "newClientOrderId": f"{tag}SC"}),
        )
        return {"t0_ns": t0, "hedged_ns": t1, "long_cid": lcid, "short_cid": scid}

    async def orphan(self, symbol: str, notional: Decimal, tag: str) -> dict[str, Any]:
        """The short venue rejects its order: the lone long leg is closed reduce-only and
        checked flat."""
        lv, sv = self.venues
        await self.lab.faults(sv, reject_orders=1)
        lmark, smark = await asyncio.gather(self._check(lv, symbol), self._check(sv, symbol))
        qty = min(self._qty(lv, symbol, notional, lmark), self._qty(sv, symbol, notional, smark))
        lcid, scid = f"{tag}L", f"{tag}S"
        lo, so = await asyncio.gather(
            self.ex[lv].create_order(symbol, "market", "buy", float(qty), None, {"newClientOrderId": lcid}),
            self.ex[sv].create_order(symbol, "market", "sell", float(qty), None, {"newClientOrderId": scid}),
            return_exceptions=True,
        )
        if isinstance(lo, BaseException) or not isinstance(so, BaseException):
            raise RuntimeError(f"baseline orphan: unexpected outcome long={lo!r} short={so!r}")
        lo = await self._verified(lv, symbol, lo)
        ccid = f"{tag}LC"
        await self.ex[lv].create_order(symbol, "market", "sell", lo["filled"], None,
                                       {"reduceOnly": True, "newClientOrderId": ccid})
        pos = await self.ex[lv].fetch_positions([symbol])
        if any(float(p.get("contracts") or 0) for p in pos):
            raise RuntimeError(f"baseline orphan: {symbol} not flat on {lv}")
        return {"long_cid": lcid, "close_cid": ccid}


