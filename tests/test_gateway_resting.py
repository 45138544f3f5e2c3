"""Limit, post-only and IOC orders through the gateway, against an in-process simulator of every
dialect (binance, bybit, okx, hyperliquid) with real ccxt over HTTP (set up as
tests/test_gateway_dialects.py does): a post-only rests and fills later as a maker (maker fee,
``Fill.maker``), a crossing one answers EXPIRED / filled 0 in every dialect, an IOC fills within
its price and the rest expires, a cancel answers the final state, a lost answer is found (never
placed twice), prices round to the tick in the safe direction. ``/_sim/state`` is the venue's truth.

The price path only moves when pinned (``POST /_sim/market``, a slow ``tick_ms``): BTC at 50000 has
asks 50005, 50010 ... and bids 49995, 49990 ...
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from domain.ids import client_order_id
from tests.simproc import in_process_sim
from tests.test_gateway_dialects import DIALECTS, Admin, sim_options, venue
from venues.errors import InvalidOrder, OrderBelowMinimum
from venues.gateway import Gateway
from venues.models import OrderStatus, Side
from venues.parse import order_status

SYM = "BTC/USDT:USDT"
SLOW_TICK = 600_000  # ms: only a pin ticks the price path
MAKER_FEE = {"binance": Decimal("0.0002"), "bybit": Decimal("0.0002"), "okx": Decimal("0.0002"),
             "hyperliquid": Decimal("0.00015")}
TAKER_FEE = {"binance": Decimal("0.0005"), "bybit": Decimal("0.00055"), "okx": Decimal("0.0005"),
             "hyperliquid": Decimal("0.00045")}
#: what the signed create request carries for a post-only / an IOC order (ccxt's own mapping)
WIRE_POST_ONLY = {"binance": "timeInForce=GTX", "bybit": '"timeInForce":"PostOnly"',
                  "okx": '"ordType":"post_only"', "hyperliquid": '"tif":"Alo"'}
WIRE_IOC = {"binance": "timeInForce=IOC", "bybit": '"timeInForce":"IOC"', "okx": '"ordType":"ioc"',
            "hyperliquid": '"tif":"Ioc"'}


@pytest.fixture(scope="module", params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
async def sim_url(dialect: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with in_process_sim(tmp_path_factory.mktemp(f"gwr-{dialect}"), name=f"gwr-{dialect}", seed=5,
                              tick_ms=SLOW_TICK, **sim_options(dialect)) as handle:
        yield handle.url


@pytest.fixture(scope="module")
async def admin(sim_url: str) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as http:
        yield Admin(sim_url, http)


class Wire:
    """The signed requests ccxt builds (url + body), hooked on the gateway's exchange."""

    def __init__(self, gw: Gateway) -> None:
        self.sent: list[str] = []
        original = gw.exchange.sign

        def sign(*args: Any, **kwargs: Any) -> Any:
            req = original(*args, **kwargs)
            self.sent.append(f"{req.get('url') or ''} {req.get('body') or ''}".replace(" ", "").replace(": ", ":"))
            return req

        gw.exchange.sign = sign

    def create(self, vcid: str) -> list[str]:
        return [s for s in self.sent if vcid in s and ("order" in s.lower())]


@pytest.fixture(scope="module")
async def gw(dialect: str, sim_url: str) -> AsyncIterator[Gateway]:
    g = Gateway(venue(dialect, sim_url))
    g.wire = Wire(g)  # type: ignore[attr-defined]
    yield g
    await g.close()


@pytest.fixture(autouse=True)
async def _clean(admin: Admin, gw: Gateway) -> AsyncIterator[None]:
    await admin.faults()
    await admin.market(price="50000", funding_rate=None, book_level_notional=None)
    yield
    await admin.faults()
    for o in await gw.open_orders(SYM):
        await gw._call("cancel_order", o.venue_order_id, SYM)
    for p in await gw.positions():
        side = Side.SELL if p.qty > 0 else Side.BUY
        await gw.place_market_order(p.symbol, side, abs(p.qty), new_cid("f"), reduce_only=True,
                                    ref_price=Decimal(50000))


_n = 0


def new_cid(step: str = "o") -> str:
    global _n
    _n += 1
    return client_order_id(f"gwr-{time.time_ns()}-{_n}", "long", step)


async def position(admin: Admin) -> Decimal:
    return await admin.position()


def wire_of(gw: Gateway, cid: str) -> str:
    rows = gw.wire.create(gw.adapter.venue_client_id(cid))  # type: ignore[attr-defined]
    assert rows, f"no signed request carried {cid}"
    return rows[0]


# ---- per dialect ------------------------------------------------------------------------------
async def test_post_only_rests_then_fills_as_maker(gw: Gateway, admin: Admin, dialect: str) -> None:
    cid = new_cid()
    since = int(time.time() * 1000) - 1000
    r = await gw.place_limit_order(SYM, "buy", Decimal("0.01"), Decimal("49900"), cid, post_only=True)
    assert (r.status, r.filled_qty, r.client_order_id) == (OrderStatus.NEW, 0, cid)
    assert WIRE_POST_ONLY[dialect] in wire_of(gw, cid)
    (rest,) = await gw.open_orders(SYM, [cid])
    assert (rest.client_order_id, rest.venue_order_id, rest.status) == (cid, r.venue_order_id, OrderStatus.NEW)
    assert await position(admin) == 0
    await admin.market(price="49800")  # best ask 49805: through the bid
    done = await gw.get_order(SYM, cid)
    assert done is not None and (done.status, done.filled_qty) == (OrderStatus.FILLED, Decimal("0.01"))
    assert done.avg_price == Decimal(49900)
    (f,) = await gw.fills(SYM, since, order_ids=[r.venue_order_id])
    assert (f.maker, f.price, f.qty) == (True, Decimal(49900), Decimal("0.01"))
    assert f.fee == Decimal("0.01") * 49900 * MAKER_FEE[dialect]
    assert await position(admin) == Decimal("0.01") and await gw.open_orders(SYM) == []


async def test_crossing_post_only_expires_unfilled_in_every_dialect(gw: Gateway, admin: Admin) -> None:
    cid = new_cid()
    r = await gw.place_limit_order(SYM, Side.BUY, Decimal("0.01"), Decimal("50010"), cid, post_only=True)
    assert (r.status, r.filled_qty, r.is_closed, r.duplicate_prevented) == (OrderStatus.EXPIRED, 0, True, False)
    assert await position(admin) == 0 and await gw.open_orders(SYM) == []
    again = await gw.get_order(SYM, cid)  # Bybit / OKX keep it (EXPIRED too), Binance / Hyperliquid never had it
    assert again is None or (again.status, again.filled_qty) == (OrderStatus.EXPIRED, 0)


async def test_ioc_fills_within_its_price_and_the_rest_expires(gw: Gateway, admin: Admin, dialect: str) -> None:
    await admin.market(price="50000", book_level_notional=1000)  # 0.02 BTC per level
    cid = new_cid()
    since = int(time.time() * 1000) - 1000
    r = await gw.place_limit_order(SYM, "buy", Decimal("0.05"), Decimal("50010"), cid, time_in_force="IOC")
    assert WIRE_IOC[dialect] in wire_of(gw, cid)
    assert (r.status, r.filled_qty, r.requested_qty) == (OrderStatus.EXPIRED, Decimal("0.04"), Decimal("0.05"))
    assert r.avg_price == Decimal("50007.5")
    fills = await gw.fills(SYM, since, order_ids=[r.venue_order_id])
    assert sorted(f.price for f in fills) == [50005, 50010] and {f.maker for f in fills} == {False}
    assert sum(f.fee for f in fills) == sum(Decimal("0.02") * p * TAKER_FEE[dialect] for p in (50005, 50010))
    assert await position(admin) == Decimal("0.04") and await gw.open_orders(SYM) == []


async def test_cancel_answers_the_final_state(gw: Gateway, admin: Admin) -> None:
    await admin.market(price="50000", book_level_notional=1000)
    cid = new_cid()
    r = await gw.place_limit_order(SYM, "buy", Decimal("0.05"), Decimal("49995"), cid)  # GTC at the best bid
    assert r.status is OrderStatus.NEW
    await admin.market(price="49990", book_level_notional=1000)  # one level (0.02) reaches the bid
    part = await gw.get_order(SYM, cid)
    assert part is not None and (part.status, part.filled_qty) == (OrderStatus.PARTIALLY_FILLED, Decimal("0.02"))
    c = await gw.cancel_order(SYM, cid)
    assert c is not None and (c.status, c.filled_qty, c.venue_order_id) == (
        OrderStatus.CANCELED, Decimal("0.02"), r.venue_order_id)
    assert await gw.open_orders(SYM) == []
    again = await gw.cancel_order(SYM, cid)  # already closed: its state, no error
    assert again is not None and (again.status, again.filled_qty) == (OrderStatus.CANCELED, Decimal("0.02"))
    await admin.market(price="49800")
    assert await position(admin) == Decimal("0.02")  # a cancelled order never fills on


async def test_cancel_of_a_filled_order_answers_it_filled(gw: Gateway, admin: Admin) -> None:
    cid = new_cid()
    await gw.place_limit_order(SYM, "sell", Decimal("0.01"), Decimal("50100"), cid, post_only=True)
    await admin.market(price="50200")  # best bid 50195: through the ask
    c = await gw.cancel_order(SYM, cid)
    assert c is not None and (c.status, c.filled_qty, c.avg_price) == (OrderStatus.FILLED, Decimal("0.01"),
                                                                        Decimal(50100))
    assert await gw.cancel_order(SYM, new_cid()) is None  # never placed


async def test_lost_answer_is_found_and_never_placed_twice(gw: Gateway, admin: Admin, dialect: str,
                                                          sim_url: str) -> None:
    cid = new_cid()
    await admin.faults(drop_responses=1)  # accepted and resting, the answer lost
    r = await gw.place_limit_order(SYM, "buy", Decimal("0.01"), Decimal("49900"), cid, post_only=True)
    assert (r.status, r.duplicate_prevented, r.client_order_id) == (OrderStatus.NEW, True, cid)
    again = await gw.place_limit_order(SYM, "buy", Decimal("0.01"), Decimal("49900"), cid, post_only=True)
    other = Gateway(venue(dialect, sim_url))  # another worker: an activity retry
    try:
        retry = await other.place_limit_order(SYM, "buy", Decimal("0.01"), Decimal("49900"), cid, post_only=True,
                                              lookup_first=True)
    finally:
        await other.close()
    assert again.duplicate_prevented and retry.duplicate_prevented
    assert again.venue_order_id == retry.venue_order_id == r.venue_order_id
    assert len(await admin.orders(gw.adapter.venue_client_id(cid))) == 1
    assert [o.client_order_id for o in await gw.open_orders(SYM, [cid])] == [cid]


async def test_price_rounds_to_the_tick_never_more_aggressive(gw: Gateway, admin: Admin) -> None:
    m = await gw.market(SYM)
    tick = m.price_tick
    buy, sell = new_cid("b"), new_cid("s")
    b = await gw.place_limit_order(SYM, "buy", Decimal("0.0109"), Decimal(49900) + tick * Decimal("0.7"), buy)
    s = await gw.place_limit_order(SYM, "sell", Decimal("0.01"), Decimal(50100) + tick * Decimal("0.2"), sell)
    assert b.requested_qty == Decimal("0.01")  # rounded down to the step
    prices = {o.client_order_id: o for o in await gw.open_orders(SYM, [buy, sell])}
    assert set(prices) == {buy, sell}
    rows = {c: (await admin.orders(gw.adapter.venue_client_id(c)))[0] for c in (buy, sell)}
    assert Decimal(rows[buy]["price"]) == Decimal(49900)  # down
    assert Decimal(rows[sell]["price"]) == Decimal(50100) + tick  # up
    assert s.status is OrderStatus.NEW


async def test_refusals_before_anything_is_sent(gw: Gateway, admin: Admin) -> None:
    sent = len(gw.wire.sent)  # type: ignore[attr-defined]
    with pytest.raises(OrderBelowMinimum):
        await gw.place_limit_order(SYM, "buy", Decimal("0.00001"), Decimal(49900), new_cid())
    with pytest.raises(InvalidOrder, match="post-only"):
        await gw.place_limit_order(SYM, "buy", Decimal("0.01"), Decimal(49900), new_cid(), post_only=True,
                                   time_in_force="IOC")
    with pytest.raises(InvalidOrder, match="time_in_force"):
        await gw.place_limit_order(SYM, "buy", Decimal("0.01"), Decimal(49900), new_cid(), time_in_force="FOK")
    assert not [s for s in gw.wire.sent[sent:] if "order" in s.lower()]  # type: ignore[attr-defined]


# ---- pure --------------------------------------------------------------------------------------
def test_post_only_cancellations_read_as_expired() -> None:
    assert order_status({"status": "canceled"}, {"orderStatus": "Cancelled",
                                                 "rejectReason": "EC_PostOnlyWillTakeLiquidity"}, Decimal(0)) \
        is OrderStatus.EXPIRED
    assert order_status({"status": "canceled"}, {"state": "canceled", "cancelSource": "31"}, Decimal(0)) \
        is OrderStatus.EXPIRED
    assert order_status({"status": "canceled"}, {"state": "canceled", "cancelSource": "1"}, Decimal(0)) \
        is OrderStatus.CANCELED

