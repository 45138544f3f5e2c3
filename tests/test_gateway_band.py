"""The price band (Binance PERCENT_PRICE, 1.05 / 0.95 around the mark) against a real simulator
over real HTTP with unmodified ccxt: a thin book (``POST /_sim/market`` book overrides) makes a
normal-size market order walk past 5 %, which the venue refuses whole (-4131).

A reduce-only close so refused goes out again at once, same client id, as a reduce-only limit
IOC at the band edge; repeated closes (new ids) end flat. An opening order is refused as it is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

import tests.test_gateway as base
from tests.test_gateway import SYMBOL, Admin, count_requests, flatten, new_cid
from venues import parse
from venues.errors import NON_RETRYABLE_TYPE_NAMES, InvalidOrder, PriceBandRejected
from venues.gateway import Gateway
from venues.models import OrderStatus, Side

# the simulator, admin client, shared gateway and fault reset of tests/test_gateway.py, bound
# here so that this module gets its own (module-scoped) instances
sim_url = base.sim_url
admin = base.admin
gw = base.gw
_clear_faults = base._clear_faults

#: pinned mark: × 1.05 = 68251.575 and × 0.95 = 61751.425, so rounding to the nearest tick (or
#: the wrong way) would put either edge outside the band (68251.6, 61751.4)
MARK = Decimal("65001.5")
BUY_EDGE = Decimal("68251.5")
SELL_EDGE = Decimal("61751.5")
LEVEL = Decimal("0.01")  # 660 USDT per level at this mark; levels 1 bp, 101 bp ... 401 bp inside, 501 bp out
INSIDE = 5 * LEVEL


@pytest.fixture
async def pinned(admin: Admin, gw: Gateway) -> AsyncIterator[None]:
    await admin.market(symbol=SYMBOL, price=str(MARK))
    await flatten(gw)
    yield
    await admin.market(symbol=SYMBOL, book_level_notional=None, book_level_step_bps=None)
    await flatten(gw)
    await admin.market(symbol=SYMBOL, price=None)


async def thin_book(admin: Admin) -> None:
    await admin.market(symbol=SYMBOL, book_level_notional="660", book_level_step_bps="100")


def order_posts(seen: list[str]) -> int:
    return sum(1 for s in seen if s.startswith("POST") and s.endswith("/order"))


async def test_markets_carry_the_band(gw: Gateway) -> None:
    m = await gw.market(SYMBOL)
    assert (m.price_band_up, m.price_band_down) == (Decimal("1.0500"), Decimal("0.9500"))
    assert (m.band_edge(Side.BUY, MARK), m.band_edge(Side.SELL, MARK)) == (BUY_EDGE, SELL_EDGE)
    assert parse.price_band({"filters": [{"filterType": "PRICE_FILTER"}]}) == {}  # other venues: None
    assert m.model_copy(update={"price_band_up": None}).band_edge(Side.BUY, MARK) is None


@pytest.mark.parametrize("held, close, edge", [(Side.BUY, Side.SELL, SELL_EDGE), (Side.SELL, Side.BUY, BUY_EDGE)])
async def test_close_refused_by_the_band_falls_back_to_a_limit_ioc_at_the_edge(
    gw: Gateway, admin: Admin, pinned: None, held: Side, close: Side, edge: Decimal,
    caplog: pytest.LogCaptureFixture,
) -> None:
    qty = Decimal("0.12")
    assert (await gw.place_market_order(SYMBOL, held, qty, new_cid())).filled_qty == qty  # venue's own book
    await thin_book(admin)
    seen = count_requests(gw)
    cid = new_cid("c")
    with caplog.at_level(logging.WARNING, logger="venues.gateway"):
        res = await gw.place_market_order(SYMBOL, close, qty, cid, reduce_only=True)
    assert order_posts(seen) == 2, seen  # the market order (refused) and the limit IOC, same id
    assert any("/premiumIndex" in s for s in seen), seen  # the mark, read fresh
    assert "price band" in caplog.text and cid in caplog.text
    assert res.client_order_id == cid and res.reduce_only and res.side is close
    assert res.status is OrderStatus.EXPIRED and res.filled_qty == INSIDE  # what lies inside the band
    [row] = await admin.orders(cid)  # the refused market order never existed
    assert (row["type"], row["timeInForce"], Decimal(row["price"]), row["reduceOnly"]) == ("LIMIT", "IOC", edge, True)
    [pos] = await gw.positions([SYMBOL])
    assert abs(pos.qty) == qty - INSIDE

    rounds = [res.filled_qty]  # the trade's close loop: re-read the position, close again with a new id
    for _ in range(5):
        left = await gw.positions([SYMBOL])
        if not left:
            break
        r = await gw.place_market_order(SYMBOL, close, abs(left[0].qty), new_cid("c"), reduce_only=True)
        rounds.append(r.filled_qty)
    assert await gw.positions([SYMBOL]) == []
    assert rounds == [INSIDE, INSIDE, Decimal("0.02")]  # the last 0.02 fits inside: a plain market order


async def test_opening_order_refused_by_the_band_stays_refused(gw: Gateway, admin: Admin, pinned: None) -> None:
    await thin_book(admin)
    seen = count_requests(gw)
    cid = new_cid()
    with pytest.raises(PriceBandRejected) as ei:
        await gw.place_market_order(SYMBOL, Side.BUY, INSIDE + LEVEL, cid, ref_price=MARK)
    err = ei.value
    assert isinstance(err, InvalidOrder) and not err.retryable and err.code == -4131
    assert err.type_name in NON_RETRYABLE_TYPE_NAMES
    assert order_posts(seen) == 1 and await admin.orders(cid) == []  # no fallback for an opening order
    assert await gw.positions([SYMBOL]) == []
    ok = await gw.place_market_order(SYMBOL, Side.BUY, INSIDE, new_cid(), ref_price=MARK)  # inside: fills
    assert ok.status is OrderStatus.FILLED and ok.filled_qty == INSIDE


@pytest.mark.parametrize("side, edge, beyond, code", [
    (Side.BUY, BUY_EDGE, BUY_EDGE + Decimal("0.1"), -4016),
    (Side.SELL, SELL_EDGE, SELL_EDGE - Decimal("0.1"), -4017),
])
async def test_limit_beyond_the_edge_is_refused_and_the_edge_is_inside(
    gw: Gateway, admin: Admin, pinned: None, side: Side, edge: Decimal, beyond: Decimal, code: int,
) -> None:
    m = await gw.market(SYMBOL)
    assert m.band_edge(side, MARK) == edge
    one = m.qty_step
    with pytest.raises(PriceBandRejected) as ei:  # one tick further out: refused
        await gw._send(m, side, one, one, new_cid(), False, "limit", beyond, {"timeInForce": "IOC"})
    assert ei.value.code == code and f"{edge}." in str(ei.value)  # "Limit price can't be higher than 68251.5."
    res = await gw._send(m, side, one, one, new_cid(), False, "limit", edge, {"timeInForce": "IOC"})
    assert res.status is OrderStatus.FILLED and res.filled_qty == one  # the edge itself is accepted
