"""The gateway against a real simulator over real HTTP with unmodified ccxt.

Nothing sits between the gateway and the simulator except a pass-through request counter on
the ccxt instance (``count_requests``). Faults come from the simulator's admin API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from config.settings import Settings, VenueConfig
from domain.ids import client_order_id
from tests.simproc import in_process_sim
from venues.errors import (
    AuthenticationFailed,
    BadSymbol,
    InsufficientMargin,
    InvalidOrder,
    OrderBelowMinimum,
    VenueError,
    VenueUnavailable,
)
from venues.gateway import Gateway, map_error
from venues.models import OrderStatus, Side
from venues.pool import GatewayPool

SYMBOL = "BTC/USDT:USDT"
SECRET = "hedgeflow-demo-secret"
KEY = "hedgeflow-demo-key"


# --- fixtures ------------------------------------------------------------------------------
class Admin:
    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.http = http

    async def state(self) -> dict[str, Any]:
        async with self.http.get(f"{self.base_url}/_sim/state") as r:
            r.raise_for_status()
            return await r.json()

    async def faults(self, **faults: Any) -> None:
        async with self.http.post(f"{self.base_url}/_sim/faults", json=faults) as r:
            r.raise_for_status()

    async def market(self, **body: Any) -> None:
        async with self.http.post(f"{self.base_url}/_sim/market", json=body) as r:
            r.raise_for_status()

    async def settle(self) -> None:
        async with self.http.post(f"{self.base_url}/_sim/settle", json={}) as r:
            r.raise_for_status()

    async def orders(self, cid: str) -> list[dict[str, Any]]:
        return [o for o in (await self.state())["orders"] if o["clientOrderId"] == cid]


@pytest.fixture(scope="module")
async def sim_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with in_process_sim(tmp_path_factory.mktemp("gw"), name="gw-test") as handle:
        yield handle.url


@pytest.fixture(scope="module")
async def admin(sim_url: str) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as http:
        yield Admin(sim_url, http)


def venue(base_url: str, **over: Any) -> VenueConfig:
    data: dict[str, Any] = {
        "name": "sim-t",
        "kind": "sim",
        "base_url": base_url,
        "requests_per_second": 1000,
        "timeout_ms": 3000,
    }
    data.update(over)
    return VenueConfig(**data)


@pytest.fixture(scope="module")
async def gw(sim_url: str) -> AsyncIterator[Gateway]:
    g = Gateway(venue(sim_url))
    yield g
    await g.close()


@pytest.fixture(autouse=True)
async def _clear_faults(admin: Admin) -> AsyncIterator[None]:
    await admin.faults()
    yield
    await admin.faults()


def count_requests(gw: Gateway, posted: asyncio.Event | None = None) -> list[str]:
    """Record every HTTP request the gateway's ccxt instance sends (pass-through); set
    ``posted`` when a POST goes out."""
    seen: list[str] = []
    ex = gw.exchange
    original = ex.fetch

    async def counting(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        seen.append(f"{method} {url.split('?')[0]}")
        if posted is not None and method == "POST":
            posted.set()
        return await original(url, method, headers, body)

    ex.fetch = counting  # type: ignore[method-assign]
    return seen


_n = 0


def new_cid(step: str = "o") -> str:
    global _n
    _n += 1
    return client_order_id(f"gwtest-{time.time_ns()}-{_n}", "long", step)


async def flatten(gw: Gateway) -> None:
    for p in await gw.positions():
        side = Side.SELL if p.qty > 0 else Side.BUY
        await gw.place_market_order(p.symbol, side, abs(p.qty), new_cid("f"), reduce_only=True)


# --- read-only calls -------------------------------------------------------------------------
async def test_markets_are_decimal_base_units_and_cached(gw: Gateway) -> None:
    markets = await gw.markets()
    m = markets[SYMBOL]
    assert m.venue_symbol == "BTCUSDT"
    for v in (m.contract_size, m.qty_step, m.min_qty, m.min_notional, m.price_tick):
        assert isinstance(v, Decimal) and v > 0
    assert m.qty_step < 1 and m.min_qty >= m.qty_step
    seen = count_requests(gw)
    assert await gw.markets() is markets
    assert seen == []


async def test_funding_rates_in_one_request(gw: Gateway) -> None:
    await gw.funding_rates()  # first call may also fetch the interval table
    seen = count_requests(gw)
    rates = await gw.funding_rates()
    assert len(seen) == 1, seen
    assert SYMBOL in rates and len(rates) >= 2
    fr = rates[SYMBOL]
    assert isinstance(fr.rate, Decimal) and fr.mark_price > 0 and fr.interval_hours > 0
    assert fr.next_funding_ms > time.time() * 1000 - 1000


async def test_funding_snapshot_shared_between_concurrent_callers(gw: Gateway) -> None:
    await gw.funding_rates()
    seen = count_requests(gw)
    many = await asyncio.gather(*(gw.funding_rates(max_age_s=5) for _ in range(20)))
    assert len(seen) == 0  # the snapshot just fetched is young enough
    assert all(r is many[0] for r in many)
    await asyncio.sleep(0.3)
    again = await asyncio.gather(*(gw.funding_rates(max_age_s=0.2) for _ in range(20)))
    assert len(seen) == 1, seen  # stale: one request shared by all twenty callers
    assert all(r is again[0] for r in again)
    await gw.funding_rates()
    assert len(seen) == 2  # max_age_s=0 always asks the venue


async def test_order_book_balance_leverage_mode(gw: Gateway) -> None:
    book = await gw.order_book(SYMBOL, 5)
    assert 0 < len(book.bids) <= 5 and 0 < len(book.asks) <= 5
    assert book.bids[0].price < book.asks[0].price
    assert book.bids[0].price > book.bids[-1].price
    bal = await gw.balance()
    assert bal.currency == "USDT" and bal.total > 0 and bal.free > 0
    await gw.set_leverage(SYMBOL, 5)
    await gw.set_leverage(SYMBOL, 5)  # unchanged: still success
    assert await gw.is_one_way_mode() is True
    seen = count_requests(gw)
    assert await gw.margin_mode(SYMBOL) == "cross"
    assert len(seen) == 1, seen  # one request per pre-trade check (margin type can change)
    with pytest.raises(BadSymbol):
        await gw.order_book("NOPE/USDT:USDT")


# --- orders --------------------------------------------------------------------------------
async def test_place_get_cancel_fills_positions(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    since = int(time.time() * 1000) - 1
    cid = new_cid()
    res = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.0123"), cid)
    m = (await gw.markets())[SYMBOL]
    assert res.client_order_id == cid and res.status is OrderStatus.FILLED
    assert res.requested_qty == Decimal("0.012") == res.filled_qty  # rounded down to 0.001
    assert res.filled_qty % m.qty_step == 0
    assert res.avg_price and res.avg_price > 0 and res.fee > 0 and not res.duplicate_prevented

    got = await gw.get_order(SYMBOL, cid)
    assert got is not None and got.venue_order_id == res.venue_order_id and got.filled_qty == res.filled_qty
    assert await gw.get_order(SYMBOL, new_cid("x")) is None

    pos = {p.symbol: p for p in await gw.positions()}
    assert pos[SYMBOL].qty == Decimal("0.012") and pos[SYMBOL].entry_price > 0
    assert [p.symbol for p in await gw.positions([SYMBOL])] == [SYMBOL]

    fills = await gw.fills(SYMBOL, since)
    mine = [f for f in fills if f.venue_order_id == res.venue_order_id]
    assert sum(f.qty for f in mine) == Decimal("0.012") and all(f.side is Side.BUY for f in mine)

    canceled = await gw.cancel_order(SYMBOL, cid)  # already filled: returned as it is
    assert canceled is not None and canceled.status is OrderStatus.FILLED
    assert await gw.cancel_order(SYMBOL, new_cid("x")) is None

    # short it: one-way mode nets the position
    res2 = await gw.place_market_order(SYMBOL, "sell", Decimal("0.02"), new_cid("c"))
    assert res2.side is Side.SELL
    pos = {p.symbol: p for p in await gw.positions()}
    assert pos[SYMBOL].qty == Decimal("-0.008")
    await flatten(gw)
    assert await gw.positions() == []


async def test_funding_income_after_settlement(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    since = int(time.time() * 1000) - 1
    await gw.place_market_order(SYMBOL, Side.SELL, Decimal("0.01"), new_cid())
    await admin.market(symbol=SYMBOL, funding_rate="0.001")
    await admin.settle()
    income = await gw.funding_income(since)
    got = [p for p in income if p.symbol == SYMBOL]
    assert got, income
    assert got[-1].amount > 0  # short receives positive funding
    assert got[-1].income_id
    assert await gw.funding_income(since, SYMBOL) == got
    await flatten(gw)


async def test_partial_fill(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    await admin.faults(partial_fill_ratio=0.5)
    res = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.015"), new_cid())
    assert res.requested_qty == Decimal("0.015")
    assert res.filled_qty == Decimal("0.007")  # half, rounded down to the 0.001 step
    assert res.status in (OrderStatus.EXPIRED, OrderStatus.PARTIALLY_FILLED)
    await admin.faults()
    await flatten(gw)


async def test_reduce_only_is_clipped_to_the_position(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.004"), new_cid())
    res = await gw.place_market_order(SYMBOL, Side.SELL, Decimal("0.010"), new_cid("c"), reduce_only=True)
    assert res.reduce_only is True
    assert res.filled_qty == Decimal("0.004")
    assert await gw.positions() == []
    with pytest.raises(InvalidOrder):  # nothing left to reduce
        await gw.place_market_order(SYMBOL, Side.SELL, Decimal("0.010"), new_cid("c"), reduce_only=True)


async def test_insufficient_margin(gw: Gateway, admin: Admin) -> None:
    cid = new_cid()
    with pytest.raises(InsufficientMargin) as ei:
        await gw.place_market_order(SYMBOL, Side.BUY, Decimal("50"), cid)
    assert not ei.value.retryable
    assert await admin.orders(cid) == []


async def test_below_minimum_is_refused_before_sending(gw: Gateway, admin: Admin) -> None:
    await gw.markets()
    seen = count_requests(gw)
    cid = new_cid()
    with pytest.raises(OrderBelowMinimum) as ei:
        await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.0009"), cid)
    assert "0.001" in str(ei.value) and not ei.value.retryable
    assert seen == []
    # min notional (5 USDT): needs the price (one book request), but no order request
    await admin.market(symbol=SYMBOL, price="1000")
    try:
        with pytest.raises(OrderBelowMinimum) as ei:
            await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.004"), cid)
    finally:
        await admin.market(symbol=SYMBOL, price=None)
    assert "notional" in str(ei.value)
    assert seen and all(s.startswith("GET") and "/depth" in s for s in seen), seen
    assert await admin.orders(cid) == []
    with pytest.raises(InvalidOrder):
        await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), "not-valid!")


# --- idempotency ---------------------------------------------------------------------------
async def test_dropped_response_returns_the_order_once(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    cid = new_cid()
    await admin.faults(drop_responses=1)
    seen = count_requests(gw)
    res = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid)
    assert res.duplicate_prevented is True and res.filled_qty == Decimal("0.01")
    assert res.status is OrderStatus.FILLED
    assert sum(1 for s in seen if s.startswith("POST")) == 1
    assert len(await admin.orders(cid)) == 1
    await flatten(gw)


async def test_dropped_response_with_failing_lookup_still_one_order(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    cid = new_cid()
    # the order executes but its answer is lost, and the venue then goes down briefly, so the
    # first lookups fail too; the venue answers again 0.5 s later
    await admin.faults(drop_responses=1, latency_ms=300)
    posted = asyncio.Event()
    seen = count_requests(gw, posted)

    async def outage_window() -> None:
        await posted.wait()
        await asyncio.sleep(0.15)  # the order request is at the venue, inside its latency
        await admin.faults(outage=True)
        await asyncio.sleep(0.5)
        await admin.faults()

    task = asyncio.create_task(outage_window())
    res = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid)
    await task
    assert res.duplicate_prevented is True
    lookups = [s for s in seen if s.startswith("GET") and s.endswith("/order")]
    assert len(lookups) >= 2, seen  # at least one lookup failed during the outage
    assert sum(1 for s in seen if s.startswith("POST")) == 1
    assert len(await admin.orders(cid)) == 1
    await flatten(gw)


async def test_outage_is_retryable_and_places_nothing(gw: Gateway, admin: Admin) -> None:
    cid = new_cid()
    await gw.order_book(SYMBOL)
    await admin.faults(outage=True)
    with pytest.raises(VenueUnavailable) as ei:
        await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid, reduce_only=True)
    assert ei.value.retryable and ei.value.outcome_unknown
    with pytest.raises(VenueUnavailable):
        await gw.balance()
    await admin.faults()
    assert await admin.orders(cid) == []


async def test_same_id_twice_in_one_process_places_once(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    cid = new_cid()
    first = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid)
    second = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid)
    assert not first.duplicate_prevented and second.duplicate_prevented
    assert second.venue_order_id == first.venue_order_id
    assert len(await admin.orders(cid)) == 1
    await flatten(gw)


async def test_fresh_gateway_with_lookup_first_does_not_resend(gw: Gateway, admin: Admin, sim_url: str) -> None:
    await flatten(gw)
    cid = new_cid()
    first = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid)
    async with Gateway(venue(sim_url)) as other:
        again = await other.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid, lookup_first=True)
    assert again.duplicate_prevented and again.venue_order_id == first.venue_order_id
    assert len(await admin.orders(cid)) == 1
    await flatten(gw)


# --- authentication and clocks -------------------------------------------------------------
async def test_wrong_secret_is_authentication_failed_and_never_leaks(sim_url: str) -> None:
    wrong = "definitely-not-the-secret"
    async with Gateway(venue(sim_url, api_secret=SecretStr(wrong))) as bad:
        with pytest.raises(AuthenticationFailed) as ei:
            await bad.balance()
        assert not ei.value.retryable
        assert wrong not in str(ei.value) and wrong not in repr(bad)
        assert ei.value.__cause__ is None and ei.value.__suppress_context__


async def test_stale_timestamp_resyncs_the_clock_and_is_retryable(sim_url: str) -> None:
    """-1021: nothing was accepted (so not outcome-unknown); the gateway re-syncs its clock and a
    retry, signed with the corrected time, goes through."""
    from venues.errors import ClockSkew

    async with Gateway(venue(sim_url)) as skewed:
        skewed.exchange.options["timeDifference"] = 120_000  # signs requests 2 minutes in the past
        with pytest.raises(VenueError) as ei:
            await skewed.balance()
        assert isinstance(ei.value, ClockSkew) and "-1021" in str(ei.value)
        assert ei.value.retryable and not ei.value.outcome_unknown
        assert (await skewed.balance()).total > 0


def test_secrets_are_scrubbed_from_mapped_errors() -> None:
    import ccxt

    exc = ccxt.ExchangeNotAvailable(f"binanceusdm GET http://x/?apiKey={KEY}&s={SECRET} 503")
    err = map_error(exc, "sim-a", secrets=[KEY, SECRET])
    assert isinstance(err, VenueUnavailable) and err.retryable
    assert KEY not in str(err) and SECRET not in str(err)
    assert isinstance(map_error(ccxt.ExchangeError('binanceusdm {"code":-2019,"msg":"x"}'), "a"),
                      InsufficientMargin)


async def test_pool_one_gateway_per_venue(sim_url: str) -> None:
    settings = Settings(venues=[venue(sim_url).model_dump(), venue(sim_url, name="sim-u").model_dump()])
    pool = GatewayPool(settings)
    a = pool.get("sim-t")
    assert pool.get("sim-t") is a and pool.get("sim-u") is not a
    with pytest.raises(KeyError):
        pool.get("nope")
    assert (await a.markets())[SYMBOL]
    await pool.close()


async def test_lost_answer_of_a_refused_order_raises_the_retryable_error(gw: Gateway, admin: Admin) -> None:
    """The venue refuses the order but the answer is lost (5xx -1007): the lookup finds
    nothing, keeps finding nothing through the in-flight window (a look-up every
    ``placing.IN_FLIGHT_POLL_S``), finds nothing again after it and raises the original
    retryable error, so the caller's retry policy may resend (looking up first)."""
    await flatten(gw)
    cid = new_cid()
    await admin.faults(drop_responses=1)
    seen = count_requests(gw)
    with pytest.raises(VenueError) as ei:
        # reduce-only with no position: refused by the venue (-2022), answer dropped
        await gw.place_market_order(SYMBOL, Side.SELL, Decimal("0.01"), cid, reduce_only=True)
    assert ei.value.retryable and ei.value.outcome_unknown
    assert sum(1 for s in seen if s.startswith("POST")) == 1
    assert sum(1 for s in seen if s.startswith("GET") and s.endswith("/order")) >= 2  # the first, then the polls
    assert await admin.orders(cid) == []
