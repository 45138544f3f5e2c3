"""Shared venue reads (venues/shared_reads.py): the coalescing rules with a fake fetch (fast,
pure asyncio), then the trade activities against a real simulator child over HTTP, counting
the venue's own request weight (Binance's ``X-MBX-USED-WEIGHT-1M`` header the simulator sends)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.trade import TradeActivities
from config import load_settings
from config.settings import DEMO_API_KEY, DEMO_API_SECRET
from messages.trade import IncomeRequest, PositionsRequest, SnapshotRequest
from venues.errors import VenueUnavailable
from venues.models import FundingInfo, FundingPayment, Position
from venues.pool import GatewayPool
from venues.shared_reads import (
    Coalesced,
    ReadBounds,
    SharedReads,
    StaleRead,
    check_fresh,
    last_settlement_ms,
)
from workers.proc import free_port
from workers.simproc import SimProcess


# --- the coalescing rules, with a fake fetch ------------------------------------------------
class FakeFetch:
    """Counts calls; each answers ``n`` (its number) after ``delay`` s, or raises ``fail``."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay, self.calls, self.fail = delay, 0, None
        self.began: list[float] = []

    async def __call__(self) -> int:
        self.calls += 1
        self.began.append(time.monotonic())
        n = self.calls
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return n


async def test_concurrent_callers_share_one_read():
    f = FakeFetch()
    c = Coalesced(f)
    now = c.now()
    got = await asyncio.gather(*(c.get(began_after=now) for _ in range(50)))
    assert f.calls == 1 and {r.value for r in got} == {1}


async def test_a_caller_arriving_during_a_read_gets_the_next_one():
    f = FakeFetch(delay=0.05)
    c = Coalesced(f)
    first = asyncio.ensure_future(c.get(began_after=c.now()))
    await asyncio.sleep(0.01)  # the first read is on the wire
    late = [asyncio.ensure_future(c.get(began_after=c.now())) for _ in range(10)]
    r1, *rest = await asyncio.gather(first, *late)
    assert r1.value == 1 and {r.value for r in rest} == {2}  # one read for all ten latecomers
    assert f.calls == 2 and all(r.began >= r1.done for r in rest)


async def test_reads_are_spaced_by_the_gap():
    f = FakeFetch(delay=0.0)
    c = Coalesced(f, gap_s=0.1)
    for _ in range(3):
        await c.get(began_after=c.now())
    assert f.calls == 3
    assert all(b - a >= 0.099 for a, b in zip(f.began, f.began[1:], strict=False))


async def test_an_answer_within_its_age_is_served_an_older_one_is_read_again():
    f = FakeFetch(delay=0.0)
    c = Coalesced(f)
    assert (await c.get(max_age_s=0.2)).value == 1
    assert (await c.get(max_age_s=0.2)).value == 1 and f.calls == 1
    await asyncio.sleep(0.25)
    assert (await c.get(max_age_s=0.2)).value == 2 and f.calls == 2


async def test_a_failed_read_fails_every_caller_and_stale_is_never_served():
    f = FakeFetch()
    c = Coalesced(f)
    assert (await c.get(max_age_s=0.05)).value == 1
    await asyncio.sleep(0.06)  # the answer is now stale
    f.fail = VenueUnavailable("down", venue="v")
    got = await asyncio.gather(*(c.get(max_age_s=0.05) for _ in range(20)), return_exceptions=True)
    assert f.calls == 2 and all(isinstance(g, VenueUnavailable) for g in got)
    f.fail = None
    assert (await c.get(max_age_s=0.05)).value == 3  # the next caller reads anew


async def test_check_fresh_refuses_an_old_answer():
    f = FakeFetch(delay=0.0)
    c = Coalesced(f)
    r = await c.get()
    assert check_fresh(r, 1.0, r.done + 0.5, "x", "v") == 1
    with pytest.raises(StaleRead, match="bound 1 s"):
        check_fresh(r, 1.0, r.done + 1.5, "x", "v")


def test_bounds_rule_and_last_settlement():
    b = ReadBounds.from_interval(10)
    assert (b.max_age_s, b.gap_s, b.income_max_age_s) == (1.0, 0.25, 10)  # marks: interval / 5, at most 1 s
    assert ReadBounds.from_interval(2).max_age_s == 0.4
    assert ReadBounds.from_interval(10, max_age_s=0.5, gap_s=0).gap_s == 0
    info = FundingInfo(symbol="X", rate=Decimal(0), interval_hours=Decimal(8), next_funding_ms=8 * 3_600_000,
                       mark_price=Decimal(1), timestamp_ms=0)
    assert last_settlement_ms(info, 1000) == 0
    assert last_settlement_ms(info, 8 * 3_600_000 + 5) == 8 * 3_600_000  # a snapshot from before it
    assert last_settlement_ms(info, 17 * 3_600_000) == 16 * 3_600_000
    # a replay at 6400: the interval the venue reports is venue hours, its clock is the wall's
    assert last_settlement_ms(info, 8 * 3_600_000 - 1, 6400) == 8 * 3_600_000 - 4500
    fast = ReadBounds.from_interval(10, time_scale=6400)  # the trade ticks every 0.5 wall s (the floor)
    assert (fast.max_age_s, fast.gap_s, fast.income_max_age_s) == (0.1, 0.0125, 0.5)


class FakeGateway:
    """What SharedReads asks of a gateway, with a settable venue clock and call log."""

    name = "fake"

    def __init__(self) -> None:
        self.now_ms = 10 * 3_600_000 + 1000  # just after a settlement (8 h interval: at 8 h, next 16 h)
        self.income_calls: list[tuple[int, str | None]] = []
        self.rows: list[FundingPayment] = []
        self.position_calls = 0
        self.clock = self

    def history_now_ms(self) -> int:
        return self.now_ms

    async def market(self, symbol: str) -> None:
        return None

    async def positions(self, symbols: list[str] | None) -> list[Position]:
        assert symbols is None  # one read of every symbol
        self.position_calls += 1
        return [Position(symbol=s, qty=Decimal(q), entry_price=Decimal(1), unrealized_pnl=Decimal(0))
                for s, q in (("A", 1), ("B", -2))]

    async def funding_rates(self) -> dict[str, FundingInfo]:
        return {s: FundingInfo(symbol=s, rate=Decimal(0), interval_hours=Decimal(8), next_funding_ms=16 * 3_600_000,
                               mark_price=Decimal(1), timestamp_ms=self.now_ms) for s in ("A", "B")}

    async def funding_income(self, since_ms: int, symbol: str | None = None) -> list[FundingPayment]:
        self.income_calls.append((since_ms, symbol))
        return [r for r in self.rows if r.timestamp_ms >= since_ms]


def pay(symbol: str, t: int, amount: str = "1") -> FundingPayment:
    return FundingPayment(symbol=symbol, amount=Decimal(amount), timestamp_ms=t, income_id=f"{symbol}{t}")


async def test_shared_positions_are_each_callers_symbols():
    gw = FakeGateway()
    sr = SharedReads(gw, ReadBounds.from_interval(10, gap_s=0))  # type: ignore[arg-type]
    a, b, both = await asyncio.gather(sr.positions(["A"]), sr.positions(["B"]), sr.positions(None))
    assert [p.symbol for p in a] == ["A"] and [p.qty for p in b] == [Decimal(-2)] and len(both) == 2
    assert gw.position_calls == 1


async def test_income_one_read_per_settlement_incremental_and_reaching_back():
    gw = FakeGateway()
    sr = SharedReads(gw, ReadBounds.from_interval(10))  # type: ignore[arg-type]
    s8 = 8 * 3_600_000
    gw.rows = [pay("A", s8 - 3_600_000 * 8), pay("A", s8), pay("B", s8)]
    got = await asyncio.gather(*(sr.funding_income(s8 - 60_000, sym) for sym in ("A", "B") * 10))
    assert len(gw.income_calls) == 1 and gw.income_calls[0] == (s8 - 60_000, None)  # all symbols, once
    assert [p.symbol for p in got[0]] == ["A"] and [p.timestamp_ms for p in got[1]] == [s8]
    # a trade opened earlier: one read reaching back to its since, then its rows too
    older = await sr.funding_income(0, "A")
    assert gw.income_calls[-1] == (0, None) and [p.timestamp_ms for p in older] == [0, s8]
    # after the next settlement (and the lag): one incremental read from the last one (less the overlap)
    before = gw.now_ms
    gw.now_ms = 16 * 3_600_000 + 5000
    gw.rows.append(pay("A", 16 * 3_600_000))
    got = await asyncio.gather(*(sr.funding_income(s8 - 60_000, "A") for _ in range(10)))
    assert len(gw.income_calls) == 3 and gw.income_calls[-1][0] == before - 10 * 60_000
    assert all([p.timestamp_ms for p in g] == [s8, 16 * 3_600_000] for g in got)


class ReplayGateway(FakeGateway):
    """A replayed venue: it reports 8-hour funding but settles every ``every_ms`` of its clock."""

    def __init__(self, first_ms: int, every_ms: int) -> None:
        super().__init__()
        self.first_ms, self.every_ms = first_ms, every_ms

    async def funding_rates(self) -> dict[str, FundingInfo]:
        nxt = self.first_ms + ((self.now_ms - self.first_ms) // self.every_ms + 1) * self.every_ms
        return {s: FundingInfo(symbol=s, rate=Decimal(0), interval_hours=Decimal(8), next_funding_ms=nxt,
                               mark_price=Decimal(1), timestamp_ms=self.now_ms) for s in ("A", "B")}


async def test_income_after_a_settlement_the_read_missed_is_read_again():
    """The bug that kept shared reads off (tests/test_replay_venue_time.py, 0.12 vs -0.008 USD): the
    latest settlement was taken as next − the reported interval (8 h), which in a replay at 6400 is
    hours before the last few settlements, so an income read begun before a settlement was served
    after it while younger than its age bound, and a trade closing then missed its last payment."""
    s1, every = 10 * 3_600_000, 4500  # 8 venue hours at 6400: 4.5 s
    gw = ReplayGateway(s1, every)
    # age bound 10 s (more than two settlements here): only the settlement rule can ask for a new read
    sr = SharedReads(gw, ReadBounds.from_interval(10))  # type: ignore[arg-type]
    gw.now_ms = s1 + 1500
    gw.rows = [pay("A", s1, "1"), pay("B", s1, "5")]
    first = await sr.funding_income(s1 - 60_000, "A")
    assert [p.timestamp_ms for p in first] == [s1] and len(gw.income_calls) == 1
    gw.now_ms = s1 + 2500  # no settlement since: the read is served
    assert await sr.funding_income(s1 - 60_000, "B") == [pay("B", s1, "5")] and len(gw.income_calls) == 1
    gw.now_ms = s1 + every + 1500  # the next settlement (and its lag) has passed
    sr.rate_reads.forget()  # the rates read anew (as they are, a wall second later): next is s1 + 2 × every
    gw.rows += [pay("A", s1 + every, "2"), pay("B", s1 + every, "6")]
    got = await asyncio.gather(sr.funding_income(s1 - 60_000, "A"), sr.funding_income(s1 - 60_000, "B"))
    assert [[p.amount for p in g] for g in got] == [[1, 2], [5, 6]]
    assert len(gw.income_calls) == 2  # one read after the settlement, fanned out to both


# --- against a real simulator child over HTTP ------------------------------------------------
@pytest.fixture(scope="module")
async def sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimProcess]:
    d: Path = tmp_path_factory.mktemp("shared")
    s = SimProcess("sim-s", free_port(), d / "sim-s.sqlite", "--symbols", "30", "--api-key", DEMO_API_KEY,
                   "--api-secret", DEMO_API_SECRET)
    await asyncio.to_thread(s.start)
    try:
        yield s
    finally:
        await asyncio.to_thread(s.stop)


async def used_weight(http: aiohttp.ClientSession, url: str) -> tuple[int, int]:
    """(weight used this venue minute, the venue's time ms) after one ping (weight 1)."""
    async with http.get(url + "/fapi/v1/ping") as r:
        used = int(r.headers["X-MBX-USED-WEIGHT-1M"])
    async with http.get(url + "/fapi/v1/time") as r:
        return used, int((await r.json())["serverTime"])


async def weight_of(http: aiohttp.ClientSession, url: str, body: Any) -> int:
    """The request weight ``await body()`` costs the venue (within one venue minute)."""
    while True:
        _, t = await used_weight(http, url)
        if t % 60_000 < 50_000:  # room before the minute's counter resets
            break
        await asyncio.sleep(60 - (t % 60_000) / 1000 + 0.2)
    before, t0 = await used_weight(http, url)
    await body()
    after, t1 = await used_weight(http, url)
    assert t0 // 60_000 == t1 // 60_000, "the venue minute turned during the measurement"
    return after - before - 2  # less our own /time (1) and ping (1)


async def test_concurrent_activity_calls_make_one_venue_request_and_stale_is_an_error(sim: SimProcess):
    settings = load_settings(environ={"HEDGEFLOW__VENUES": f'[{{"name": "sim-s", "kind": "sim", "base_url": '
                                      f'"{sim.url}", "requests_per_second": 1000}}]',
                                      "HEDGEFLOW__TUNING__SHARED_READS": "true"})  # (the default)
    env = ActivityEnvironment()
    async with GatewayPool(settings) as pool, aiohttp.ClientSession() as http:
        acts = TradeActivities(settings, pool)
        gw = pool.get("sim-s")
        markets = sorted(s for s in await gw.markets() if s.startswith("S"))[:20]
        await gw.positions(None)
        await gw.funding_rates()  # markets, intervals and connections warm: what follows is the reads alone
        assert await weight_of(http, sim.url, lambda: gw.positions(None)) == 5  # one positionRisk
        assert await weight_of(http, sim.url, gw.funding_rates) == 10  # one premiumIndex of every symbol

        async def positions() -> None:
            got = await asyncio.gather(*(env.run(acts.get_positions, PositionsRequest(venue="sim-s", symbols=[s]))
                                         for s in markets))
            assert got == [[]] * len(markets)

        async def snapshots() -> None:
            got = await asyncio.gather(*(env.run(acts.market_snapshot, SnapshotRequest(venue="sim-s", symbol=s))
                                         for s in markets))
            assert [g.symbol for g in got] == markets and all(g.funding.mark_price > 0 for g in got)

        since = int(time.time() * 1000) - 3_600_000  # trades opened in the last hour

        async def income() -> None:
            got = await asyncio.gather(*(env.run(acts.funding_income, IncomeRequest(venue="sim-s", symbol=s,
                                                                                    since_ms=since)) for s in markets))
            assert got == [[]] * len(markets)

        assert await weight_of(http, sim.url, positions) == 5  # 20 trades' reads: one venue request
        assert await weight_of(http, sim.url, snapshots) == 10
        assert await weight_of(http, sim.url, income) == 30  # one /fapi/v1/income of every symbol
        assert await weight_of(http, sim.url, snapshots) == 0  # still fresh: served to all

        # stale → a failed read, never the old answer
        async with http.post(sim.url + "/_sim/faults", json={"outage": True}) as r:
            assert r.status == 200
        try:
            await asyncio.sleep(pool.bounds.max_age_s + 0.1)
            with pytest.raises(ApplicationError) as err:
                await env.run(acts.market_snapshot, SnapshotRequest(venue="sim-s", symbol=markets[0]))
            assert err.value.type == "VenueUnavailable"
            with pytest.raises(ApplicationError):
                await env.run(acts.get_positions, PositionsRequest(venue="sim-s", symbols=[markets[0]]))
        finally:
            async with http.post(sim.url + "/_sim/faults", json={}) as r:
                assert r.status == 200
        snap = await env.run(acts.market_snapshot, SnapshotRequest(venue="sim-s", symbol=markets[0]))
        assert snap.funding.mark_price > 0

        # with positions open: each trade gets exactly what the gateway's own read gives it
        sr = pool.shared("sim-s")
        assert sr.lazy_positions  # Binance dialect: the rows parsed per caller
        await gw.place_market_order("BTC/USDT:USDT", "buy", Decimal("0.0123"), "sharedlong1")
        await gw.place_market_order("ETH/USDT:USDT", "sell", Decimal("0.5"), "sharedshort1")
        for sym in ("BTC/USDT:USDT", "ETH/USDT:USDT", markets[0]):
            own = await gw.positions([sym])
            shared = await env.run(acts.get_positions, PositionsRequest(venue="sim-s", symbols=[sym]))
            # (two reads: the mark, and with it the PnL and liquidation price, may have moved between them)
            moving = {"mark_price", "unrealized_pnl", "liquidation_price"}
            assert [p.model_dump(exclude=moving) for p in shared] == [p.model_dump(exclude=moving) for p in own]
            assert [[getattr(p, k) is None for k in sorted(moving)] for p in shared] == \
                [[getattr(p, k) is None for k in sorted(moving)] for p in own]
            assert len(own) == (0 if sym == markets[0] else 1)
            # the pre-trade check's own read (not shared), parsed for its symbol only: the same rows
            mine = await sr.own_positions([sym])
            assert [p.model_dump(exclude=moving) for p in mine] == [p.model_dump(exclude=moving) for p in own]
        assert await weight_of(http, sim.url, lambda: sr.own_positions(["BTC/USDT:USDT"])) == 5  # its own request
        assert sorted(p.symbol for p in await sr.positions(None)) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
        # a read begun before an order is never served after it (read-your-writes)
        before = await sr.positions(["BTC/USDT:USDT"])
        await gw.place_market_order("BTC/USDT:USDT", "sell", Decimal("0.0123"), "sharedflat1", reduce_only=True)
        assert before and await sr.positions(["BTC/USDT:USDT"]) == []
        await gw.place_market_order("ETH/USDT:USDT", "buy", Decimal("0.5"), "sharedflat2", reduce_only=True)
