"""The gateway's contract suite against every simulator dialect (binance, bybit, okx, hyperliquid).

Each test builds a real :class:`venues.gateway.Gateway` from a ``VenueConfig(kind=sim, dialect=X)``
exactly as the worker does (no credentials given: the sim venue's demo defaults), against an
in-process simulator of that dialect started as the project starts it (OKX: the demo passphrase;
Hyperliquid: the demo wallet as its API key), over real HTTP with unmodified ccxt. Faults and
settlements come from the simulator's admin API; ``/_sim/state`` is the venue's own truth (base
units, the core's income sign: > 0 received).
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

from config.settings import DEMO_HL_WALLET, VenueConfig
from domain.ids import client_order_id
from tests.simproc import in_process_sim
from venues.errors import AuthenticationFailed, BadSymbol, InsufficientMargin, InvalidOrder
from venues.gateway import Gateway
from venues.models import OrderStatus, Side

DIALECTS = ("binance", "bybit", "okx", "hyperliquid")
#: the simulator's own (admin) name of the market every test trades
ADMIN_SYMBOL = "BTC/USDT:USDT"
#: another well-known test key (no funds): its signatures recover to another wallet
OTHER_HL_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def unified(dialect: str) -> str:
    """The gateway's name of BTC's linear perpetual in ``dialect``: the USDT-margined one everywhere
    (Hyperliquid's ccxt ``BTC/USDC:USDC`` answers to it, :mod:`venues.symbols`)."""
    return "BTC/USDT:USDT"


def sim_options(dialect: str) -> dict[str, Any]:
    """How the project starts a simulator of ``dialect`` (workers.simproc.sim_venue_args)."""
    if dialect == "okx":
        return {"dialect": "okx", "api_passphrase": VenueConfig.DEMO_OKX_PASSPHRASE}
    if dialect == "hyperliquid":
        return {"dialect": "hyperliquid", "api_key": DEMO_HL_WALLET}
    return {"dialect": dialect}


class Admin:
    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.http = http

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        async with self.http.post(f"{self.base_url}{path}", json=body) as r:
            r.raise_for_status()
            return await r.json()

    async def state(self) -> dict[str, Any]:
        async with self.http.get(f"{self.base_url}/_sim/state") as r:
            r.raise_for_status()
            return await r.json()

    async def faults(self, **faults: Any) -> None:
        await self._post("/_sim/faults", faults)

    async def market(self, **body: Any) -> None:
        await self._post("/_sim/market", {"symbol": ADMIN_SYMBOL, **body})

    async def settle(self) -> None:
        await self._post("/_sim/settle", {"symbol": ADMIN_SYMBOL})

    async def orders(self, vcid: str) -> list[dict[str, Any]]:
        return [o for o in (await self.state())["orders"] if o["clientOrderId"].lower() == vcid.lower()]

    async def position(self) -> Decimal:
        rows = [p for p in (await self.state())["positions"] if p["venue_symbol"] == "BTCUSDT"]
        return sum((Decimal(p["positionAmt"]) for p in rows), Decimal(0))


def venue(dialect: str, base_url: str, **over: Any) -> VenueConfig:
    data: dict[str, Any] = {"name": f"gwd-{dialect[:6]}", "kind": "sim", "dialect": dialect, "base_url": base_url,
                            "requests_per_second": 1000, "timeout_ms": 3000}
    data.update(over)
    return VenueConfig(**data)


@pytest.fixture(scope="module", params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
async def sim_url(dialect: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with in_process_sim(tmp_path_factory.mktemp(f"gwd-{dialect}"), name=f"gwd-{dialect}", seed=5,
                              **sim_options(dialect)) as handle:
        yield handle.url


@pytest.fixture(scope="module")
async def admin(sim_url: str) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as http:
        yield Admin(sim_url, http)


@pytest.fixture(scope="module")
async def gw(dialect: str, sim_url: str) -> AsyncIterator[Gateway]:
    g = Gateway(venue(dialect, sim_url))
    yield g
    await g.close()


@pytest.fixture
def sym(dialect: str) -> str:
    return unified(dialect)


@pytest.fixture(autouse=True)
async def _clean(admin: Admin, gw: Gateway) -> AsyncIterator[None]:
    await admin.faults()
    await admin.market(price="50000", funding_rate=None)
    yield
    await admin.faults()
    await flatten(gw)


_n = 0


def new_cid(step: str = "o") -> str:
    global _n
    _n += 1
    return client_order_id(f"gwd-{time.time_ns()}-{_n}", "long", step)


async def flatten(gw: Gateway) -> None:
    for p in await gw.positions():
        side = Side.SELL if p.qty > 0 else Side.BUY
        await gw.place_market_order(p.symbol, side, abs(p.qty), new_cid("f"), reduce_only=True)


# --- market data ---------------------------------------------------------------------------
async def test_markets_steps_minimums_contract_size(gw: Gateway, dialect: str, sym: str) -> None:
    markets = await gw.markets()
    assert sym in markets and len(markets) == 3
    assert all(s.endswith("/USDT:USDT") and m.symbol == s for s, m in markets.items())  # no USDC names
    m = await gw.market(sym)
    assert m.active and m.qty_step == Decimal("0.001") and m.min_qty == Decimal("0.001")
    # OKX trades contracts of ctVal 0.01 BTC (lotSz 0.1 contract): steps still in base units
    assert m.contract_size == (Decimal("0.01") if dialect == "okx" else Decimal(1))
    assert m.price_tick > 0 and m.min_notional >= 0
    with pytest.raises(BadSymbol):
        await gw.market("NOPE/USDT:USDT")


async def test_funding_rates_interval(gw: Gateway, dialect: str, sym: str) -> None:
    rates = await gw.funding_rates()
    assert sym in rates and len(rates) == 3
    fr = rates[sym]
    assert fr.interval_hours == (Decimal(1) if dialect == "hyperliquid" else Decimal(8))
    assert fr.mark_price > 0 and fr.next_funding_ms > time.time() * 1000 - 1000
    assert isinstance(fr.rate, Decimal)


async def test_order_book_balance(gw: Gateway, dialect: str, sym: str) -> None:
    book = await gw.order_book(sym, 5)
    assert 0 < len(book.bids) <= 5 and 0 < len(book.asks) <= 5
    assert book.bids[0].price < 50000 < book.asks[0].price
    assert book.bids[0].qty > 0  # base units (OKX: contracts × 0.01)
    assert book.bids[0].qty < 10
    bal = await gw.balance()
    assert bal.currency == ("USDC" if dialect == "hyperliquid" else "USDT")
    assert bal.total > 0 and bal.free > 0


async def test_account_mode_and_leverage_twice(gw: Gateway, dialect: str, sym: str) -> None:
    assert await gw.is_one_way_mode() is True
    mode = await gw.margin_mode(sym)
    assert mode in ("cross", "unknown") if dialect == "hyperliquid" else mode == "cross"
    await gw.set_leverage(sym, 5)
    await gw.set_leverage(sym, 5)  # unchanged: success (Bybit 110043 "leverage not modified")


# --- orders ----------------------------------------------------------------------------------
async def test_open_close_lookup_cancel_fills_positions(gw: Gateway, admin: Admin, dialect: str, sym: str) -> None:
    since = int(time.time() * 1000) - 1
    cid = new_cid()
    res = await gw.place_market_order(sym, Side.BUY, Decimal("0.0123"), cid)
    assert res.client_order_id == cid and res.status is OrderStatus.FILLED
    assert res.requested_qty == Decimal("0.012") == res.filled_qty
    assert res.avg_price and res.avg_price > 0 and not res.duplicate_prevented
    assert len(await admin.orders(gw.adapter.venue_client_id(cid))) == 1

    got = await gw.get_order(sym, cid)
    assert got is not None and got.venue_order_id == res.venue_order_id and got.filled_qty == Decimal("0.012")
    assert got.client_order_id == cid and got.status is OrderStatus.FILLED and got.side is Side.BUY
    assert await gw.get_order(sym, new_cid("x")) is None

    (pos,) = await gw.positions()
    assert pos.symbol == sym and pos.qty == Decimal("0.012") and pos.entry_price > 0 and pos.market_known
    assert await admin.position() == Decimal("0.012")
    assert [p.symbol for p in await gw.positions([sym])] == [sym]

    canceled = await gw.cancel_order(sym, cid)  # already filled: returned as it is
    assert canceled is not None and canceled.status is OrderStatus.FILLED
    assert await gw.cancel_order(sym, new_cid("x")) is None

    short_cid = new_cid("s")
    res2 = await gw.place_market_order(sym, "sell", Decimal("0.02"), short_cid)
    assert res2.side is Side.SELL and res2.filled_qty == Decimal("0.02")
    (pos,) = await gw.positions()
    assert pos.qty == Decimal("-0.008")  # one-way: netted, signed base units

    close_cid = new_cid("c")
    closed = await gw.place_market_order(sym, Side.BUY, Decimal("0.008"), close_cid, reduce_only=True)
    assert closed.reduce_only is True and closed.filled_qty == Decimal("0.008")
    assert await gw.positions() == []

    fills = await gw.fills(sym, since)
    by_order: dict[str, Decimal] = {}
    for f in fills:
        by_order[f.venue_order_id] = by_order.get(f.venue_order_id, Decimal(0)) + f.qty
        assert f.price > 0 and f.fee >= 0 and f.symbol == sym
    assert by_order[res.venue_order_id] == Decimal("0.012")
    assert by_order[res2.venue_order_id] == Decimal("0.02")
    assert by_order[closed.venue_order_id] == Decimal("0.008")
    only = await gw.fills(sym, since, order_ids=[res2.venue_order_id])
    assert {f.venue_order_id for f in only} == {res2.venue_order_id} and sum(f.qty for f in only) == Decimal("0.02")


async def test_liquidation_price_of_a_leveraged_position(gw: Gateway, dialect: str, sym: str) -> None:
    await gw.set_leverage(sym, 20)
    await gw.place_market_order(sym, Side.BUY, Decimal("1"), new_cid())
    (pos,) = await gw.positions([sym])
    assert pos.qty == Decimal("1")
    # cross margin on 100 000: 1 BTC at 50 000 × 20 is far from liquidation; a price exists where
    # the venue reports one (the sim mirrors each venue: null on OKX/Hyperliquid when unreachable)
    assert pos.liquidation_price is None or Decimal(0) <= pos.liquidation_price < Decimal("50000")


async def test_funding_income_sign_after_settlement(gw: Gateway, admin: Admin, dialect: str, sym: str) -> None:
    since = int(time.time() * 1000) - 1
    await gw.place_market_order(sym, Side.SELL, Decimal("0.1"), new_cid())
    await admin.market(funding_rate="0.001")
    await admin.settle()
    await asyncio.sleep(0.01)
    await admin.settle()  # two settlements: two payments (Hyperliquid's rows share the zero hash)
    income = await gw.funding_income(since)
    got = [p for p in income if p.symbol == sym]
    assert len(got) == 2, income
    # a short receives positive funding: income > 0 (Binance's sign; Bybit's execFee is the opposite)
    for p in got:
        assert p.amount > 0 and p.amount == pytest.approx(Decimal("5"), rel=Decimal("0.02"))
    state = await admin.state()
    venue_income = [Decimal(i["income"]) for i in state["income"]
                    if i["incomeType"] == "FUNDING_FEE" and int(i["time"]) >= since]
    assert venue_income == [p.amount for p in got]
    ids = {p.income_id for p in got}
    assert len(ids) == 2 and all(i and i.strip("0x") for i in ids)  # the ledger's key: unique, no placeholder
    assert await gw.funding_income(since, sym) == got


# --- idempotency -----------------------------------------------------------------------------
async def test_dropped_response_gives_exactly_one_order(gw: Gateway, admin: Admin, sym: str) -> None:
    cid = new_cid()
    await admin.faults(drop_responses=1)
    res = await gw.place_market_order(sym, Side.BUY, Decimal("0.01"), cid)
    assert res.duplicate_prevented is True and res.filled_qty == Decimal("0.01")
    assert res.status is OrderStatus.FILLED and res.client_order_id == cid
    assert len(await admin.orders(gw.adapter.venue_client_id(cid))) == 1
    again = await gw.place_market_order(sym, Side.BUY, Decimal("0.01"), cid)  # the same id once more
    assert again.duplicate_prevented and again.venue_order_id == res.venue_order_id
    assert len(await admin.orders(gw.adapter.venue_client_id(cid))) == 1
    assert await admin.position() == Decimal("0.01")


async def test_late_execution_never_executes_an_id_twice(gw: Gateway, admin: Admin, dialect: str,
                                                          sim_url: str, sym: str) -> None:
    cid = new_cid()
    await admin.faults(execute_late_ms=2500)
    first = await gw.place_market_order(sym, Side.BUY, Decimal("0.01"), cid)
    assert not first.is_closed  # accepted, not matched yet
    async with Gateway(venue(dialect, sim_url)) as other:  # an activity retry in another worker
        retry = await other.place_market_order(sym, Side.BUY, Decimal("0.01"), cid, lookup_first=True)
    assert retry.duplicate_prevented and retry.venue_order_id == first.venue_order_id
    await asyncio.sleep(2.8)
    done = await gw.get_order(sym, cid)
    assert done is not None and done.status is OrderStatus.FILLED and done.filled_qty == Decimal("0.01")
    assert len(await admin.orders(gw.adapter.venue_client_id(cid))) == 1
    assert await admin.position() == Decimal("0.01")


# --- the typed error table -------------------------------------------------------------------
async def test_bad_credentials_are_authentication_failed_and_never_leak(dialect: str, sim_url: str,
                                                                        sym: str) -> None:
    wrong = OTHER_HL_KEY if dialect == "hyperliquid" else "definitely-not-the-secret"
    async with Gateway(venue(dialect, sim_url, api_secret=SecretStr(wrong))) as bad:
        with pytest.raises(AuthenticationFailed) as ei:
            if dialect == "hyperliquid":  # reads are unsigned there: the first signed action is refused
                await bad.set_leverage(sym, 3)
            else:
                await bad.balance()
        assert not ei.value.retryable
        assert wrong not in str(ei.value) and wrong not in repr(bad) and wrong not in repr(bad.venue)
        assert ei.value.__cause__ is None


async def test_insufficient_margin(gw: Gateway, admin: Admin, sym: str) -> None:
    cid = new_cid()
    with pytest.raises(InsufficientMargin) as ei:
        await gw.place_market_order(sym, Side.BUY, Decimal("100"), cid)  # 5 M notional on 100 k at 20x
    assert not ei.value.retryable
    assert await admin.orders(gw.adapter.venue_client_id(cid)) == []


async def test_reduce_only_without_position_is_invalid_order(gw: Gateway, admin: Admin, sym: str) -> None:
    assert await gw.positions() == []
    cid = new_cid("c")
    with pytest.raises(InvalidOrder) as ei:  # as on Binance (-2022)
        await gw.place_market_order(sym, Side.SELL, Decimal("0.01"), cid, reduce_only=True)
    assert not ei.value.retryable and not ei.value.outcome_unknown
    assert await admin.position() == Decimal(0)


async def test_unknown_symbol_is_bad_symbol(gw: Gateway) -> None:
    with pytest.raises(BadSymbol):
        await gw.place_market_order("NOPE/USDT:USDT", Side.BUY, Decimal("1"), new_cid())
    with pytest.raises(BadSymbol):
        await gw.order_book("NOPE/USDT:USDT")

