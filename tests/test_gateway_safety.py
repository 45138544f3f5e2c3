"""The gateway's safety rules against a real simulator (unmodified ccxt over real HTTP), with
the simulator's faults: late execution of orders whose answer was lost, failing look-ups,
symbol status, filter changes; plus the pure parts (deadline, windows) on their own.

Ageing history: the simulator stamps trades and income with its own clock, so an order placed
now cannot be "8 days old". The tests instead ask with ``since`` 8-20 days in the past, which
puts the trade more than 7 days after ``since`` - exactly where one capped query (ccxt sends
``endTime = since + 7 days``) stops seeing it, as a trade opened 8 days ago would lose its close.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest

import tests.test_gateway as base
from tests.test_gateway import SYMBOL, Admin, count_requests, flatten, new_cid, venue
from venues import history, placing
from venues.errors import InvalidOrder, OrderOutcomeUnknown, VenueError, VenueUnavailable
from venues.gateway import Gateway
from venues.models import OrderResult, OrderStatus, Side

DAY_MS = 24 * 3600 * 1000


# the simulator, admin client, shared gateway and fault reset of tests/test_gateway.py: bound
# here so pytest gives this module its own (module-scoped) instances
sim_url = base.sim_url
admin = base.admin
gw = base.gw
_clear_faults = base._clear_faults


def posts(seen: list[str]) -> int:
    return sum(1 for s in seen if s.startswith("POST") and s.endswith("/order"))


async def executions(admin: Admin, cid: str) -> list[dict[str, Any]]:
    return [o for o in await admin.orders(cid) if Decimal(str(o["executedQty"])) > 0]


# --- no order twice ---------------------------------------------------------------------------
async def test_signing_time_is_recorded_after_the_throttle(sim_url: str) -> None:
    """The window is measured from when ccxt signed the request (after its rate limiter),
    with the timestamp and recvWindow it put in the signed parameters."""
    async with Gateway(venue(sim_url, requests_per_second=2)) as slow:  # 500 ms between requests
        await slow.markets()
        await slow.balance()
        called = int(time.time() * 1000)
        cid = new_cid()
        await slow.place_market_order(SYMBOL, Side.BUY, Decimal("0.002"), cid, ref_price=Decimal(60000))
        rec = slow._sends.record(cid)
        assert rec is not None and rec.recv_window_ms == placing.RECV_WINDOW_MS and rec.answered
        assert rec.signed_ts is not None and rec.signed_ts >= called + 300, (rec, called)  # throttled first
        await flatten(slow)


async def test_dropped_late_order_with_failing_lookups_executes_once(gw: Gateway, admin: Admin) -> None:
    """The answer is lost, the order executes 3 s later (invisible until then), and the first
    look-ups fail: the gateway never counts a "not found" inside the window, so however the
    caller retries, the client id executes once."""
    await flatten(gw)
    cid = new_cid()
    await admin.faults(drop_responses=1, execute_late_ms=3000, lookup_errors=placing.LOOKUP_ATTEMPTS)
    seen = count_requests(gw)
    res: OrderResult | None = None
    for attempt in range(4):
        try:
            res = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid, lookup_first=attempt > 0)
            break
        except VenueError as exc:  # the caller's retry policy
            assert exc.retryable and exc.outcome_unknown, exc
    assert res is not None and res.duplicate_prevented and res.filled_qty == Decimal("0.01")
    await asyncio.sleep(0.5)
    assert posts(seen) == 1, seen
    assert len(await executions(admin, cid)) == 1 and len(await admin.orders(cid)) == 1
    await flatten(gw)


async def test_lookups_failing_throughout_never_send(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    cid = new_cid()
    await admin.faults(drop_responses=1, execute_late_ms=1000, lookup_errors=1000)
    seen = count_requests(gw)
    with pytest.raises(VenueError) as first:
        await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid)
    assert first.value.retryable and first.value.outcome_unknown
    with pytest.raises(OrderOutcomeUnknown) as again:  # the retry: still cannot tell, sends nothing
        await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid, lookup_first=True)
    assert again.value.retryable and again.value.outcome_unknown
    assert posts(seen) == 1, seen
    await admin.faults()
    found = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid, lookup_first=True)
    assert found.duplicate_prevented and posts(seen) == 1
    assert len(await executions(admin, cid)) == 1
    await flatten(gw)


async def test_lookup_first_in_a_fresh_gateway_waits_out_the_window(sim_url: str, gw: Gateway,
                                                                    admin: Admin) -> None:
    """A worker sends, its answer is lost and it dies; the activity retry runs in another
    process (a fresh Gateway that never saw the send) a moment later. The order executes
    2.5 s after it arrived: the retry must not trust "not found" inside the window. It looks the
    id up every ``IN_FLIGHT_POLL_S`` meanwhile and finds the order once it has executed (before,
    it slept to the end of the window), and never sends it again."""
    await flatten(gw)
    cid = new_cid()
    await admin.faults(drop_responses=1, execute_late_ms=2500)
    async with Gateway(venue(sim_url)) as dying:
        posted = asyncio.Event()
        count_requests(dying, posted)
        task = asyncio.create_task(dying.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid))
        await asyncio.wait_for(posted.wait(), 5)
        await asyncio.sleep(0.3)
        task.cancel()  # the worker dies
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await admin.orders(cid) == []  # not visible yet
    async with Gateway(venue(sim_url)) as retry:
        seen = count_requests(retry)
        res = await retry.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid, lookup_first=True)
    assert res.duplicate_prevented and res.filled_qty == Decimal("0.01")
    assert posts(seen) == 0, seen
    assert len(await admin.orders(cid)) == 1 and len(await executions(admin, cid)) == 1
    await flatten(gw)


async def test_late_order_outside_its_window_is_resent_once(gw: Gateway, admin: Admin) -> None:
    """Processed after ``timestamp + recvWindow``, the lost order never executes: after the
    window the retry sends again, and exactly one order executes."""
    await flatten(gw)
    cid = new_cid()
    await admin.faults(drop_responses=1, execute_late_ms=placing.RECV_WINDOW_MS + 500)
    with pytest.raises(VenueError) as ei:
        await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid)
    assert ei.value.outcome_unknown
    await admin.faults()
    res = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), cid, lookup_first=True)
    assert not res.duplicate_prevented and res.status is OrderStatus.FILLED
    await asyncio.sleep(0.5)
    assert len(await executions(admin, cid)) == 1
    await flatten(gw)


# --- venue metadata that changes ----------------------------------------------------------------
async def test_position_in_a_settling_symbol_is_still_returned(sim_url: str, gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), new_cid())
    await admin.faults(symbol_status={SYMBOL: "SETTLING"})
    async with Gateway(venue(sim_url)) as fresh:  # loads markets while the symbol settles
        m = (await fresh.markets())[SYMBOL]
        assert m.active is False and m.status == "SETTLING"
        pos = {p.symbol: p for p in await fresh.positions()}
        assert pos[SYMBOL].qty == Decimal("0.01") and pos[SYMBOL].market_known
        assert [p.qty for p in await fresh.positions([SYMBOL])] == [Decimal("0.01")]
        seen = count_requests(fresh)
        with pytest.raises(InvalidOrder):  # opening: refused before sending
            await fresh.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), new_cid(), ref_price=Decimal(60000))
        assert posts(seen) == 0
        # closing still goes out (the venue accepts reduce-only while settling)
        closed = await fresh.place_market_order(SYMBOL, Side.SELL, Decimal("0.01"), new_cid("c"), reduce_only=True)
        assert closed.filled_qty == Decimal("0.01")
        assert await fresh.positions() == []


async def test_position_in_a_market_missing_from_the_cache_reloads_markets(gw: Gateway) -> None:
    await flatten(gw)
    await gw.place_market_order(SYMBOL, Side.SELL, Decimal("0.01"), new_cid())
    cache = await gw.markets()
    del cache[SYMBOL]  # as if the market had been listed after our load
    seen = count_requests(gw)
    pos = {p.symbol: p for p in await gw.positions()}
    assert pos[SYMBOL].qty == Decimal("-0.01") and pos[SYMBOL].market_known
    assert sum(1 for s in seen if s.endswith("/exchangeInfo")) == 1, seen
    assert SYMBOL in await gw.markets()
    await flatten(gw)


async def test_qty_step_change_is_picked_up_after_the_filter_error(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    assert (await gw.markets())[SYMBOL].qty_step == Decimal("0.001")
    await admin.market(symbol=SYMBOL, qty_step="0.01")
    try:
        seen = count_requests(gw)
        cid = new_cid()
        res = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.015"), cid)  # 0.015: -1111 now
        assert res.filled_qty == Decimal("0.01") and res.status is OrderStatus.FILLED
        assert (await gw.markets())[SYMBOL].qty_step == Decimal("0.01")
        assert posts(seen) == 2 and len(await admin.orders(cid)) == 1
        await flatten(gw)
    finally:
        await admin.market(symbol=SYMBOL, qty_step="0.001")
        await gw.refresh_markets()
    assert (await gw.markets())[SYMBOL].qty_step == Decimal("0.001")


async def test_markets_are_reloaded_periodically(sim_url: str, admin: Admin,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("venues.marketcache.MARKETS_TTL_S", 0.3)
    async with Gateway(venue(sim_url)) as g:
        assert (await g.markets())[SYMBOL].qty_step == Decimal("0.001")
        await admin.market(symbol=SYMBOL, qty_step="0.002")
        try:
            assert (await g.markets())[SYMBOL].qty_step == Decimal("0.001")  # still trusted
            await asyncio.sleep(0.4)
            assert (await g.markets())[SYMBOL].qty_step == Decimal("0.002")
        finally:
            await admin.market(symbol=SYMBOL, qty_step="0.001")


# --- history whatever the hold ------------------------------------------------------------------
async def test_fills_more_than_seven_days_after_since_are_found(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    res = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.01"), new_cid())
    since = int(time.time() * 1000) - 8 * DAY_MS
    # what one query returns: ccxt caps it at since + 7 days, so the trade is not in it
    assert [t for t in await gw.exchange.fetch_my_trades(SYMBOL, since, 1000) if t["order"] == res.venue_order_id] == []
    seen = count_requests(gw)
    mine = [f for f in await gw.fills(SYMBOL, since) if f.venue_order_id == res.venue_order_id]
    assert sum(f.qty for f in mine) == Decimal("0.01")
    assert sum(1 for s in seen if s.endswith("/userTrades")) == 2, seen  # two windows
    seen.clear()
    by_id = await gw.fills(SYMBOL, since - 30 * DAY_MS, order_ids=[res.venue_order_id])
    assert by_id == mine and sum(1 for s in seen if s.endswith("/userTrades")) == 1, seen
    assert await gw.fills(SYMBOL, since, order_ids=[]) == []
    await flatten(gw)


async def test_funding_income_more_than_seven_days_after_since_is_found(gw: Gateway, admin: Admin) -> None:
    await flatten(gw)
    await gw.place_market_order(SYMBOL, Side.SELL, Decimal("0.01"), new_cid())
    await admin.market(symbol=SYMBOL, funding_rate="0.001")
    await admin.settle()
    since = int(time.time() * 1000) - 20 * DAY_MS
    got = [p for p in await gw.funding_income(since, SYMBOL)]
    assert got and got[-1].amount > 0 and got[-1].timestamp_ms > since + 7 * DAY_MS
    assert len({p.income_id for p in got}) == len(got)
    await admin.market(symbol=SYMBOL, funding_rate=None)
    await flatten(gw)


# --- pure parts ------------------------------------------------------------------------------------
def test_deadline_formula() -> None:
    class FakeExchange:
        def sign(self, path: str, api: str = "private", method: str = "GET", params: Any = None) -> dict:
            return {"url": "http://v/fapi/v1/order", "method": method,
                    "body": "symbol=BTCUSDT&newClientOrderId=abc&timestamp=1000000&recvWindow=5000&signature=x"}

    ex = FakeExchange()
    log = placing.SendLog(ex)
    margin = placing.VENUE_FUTURE_TOLERANCE_MS + placing.CLOCK_MARGIN_MS
    assert log.deadline_ms("abc", now=2_000_000, window_ms=5000, ahead_ms=0) == 2_000_000 + 5000 + margin

    async def send() -> None:
        ex.sign("order", "fapiPrivate", "POST", {})
        raise VenueUnavailable("lost")

    with pytest.raises(VenueUnavailable):
        asyncio.run(log.send("abc", send))
    rec = log.record("abc")
    assert rec is not None and (rec.signed_ts, rec.recv_window_ms, rec.answered) == (1_000_000, 5000, False)
    start = max(rec.local_ms, 1_000_000)
    assert log.deadline_ms("abc", now=0, window_ms=9999, ahead_ms=700) == start + 5000 + 700 + margin
    rec.answered = True  # a definitive answer: nothing in flight
    assert log.deadline_ms("abc", now=0, window_ms=5000, ahead_ms=700) == rec.local_ms
    ex.sign("order", "fapiPrivate", "POST", {})  # outside a send: not recorded
    assert log.record("abc") is rec


async def test_confirm_absent_never_trusts_a_failed_or_early_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placing, "LOOKUP_BACKOFF_S", 0.01)
    calls: list[float] = []

    async def failing() -> OrderResult | None:
        calls.append(time.monotonic())
        raise VenueUnavailable("500")

    async def soon() -> int:
        return placing.now_ms() + 200

    with pytest.raises(OrderOutcomeUnknown):
        await placing.confirm_absent(failing, soon, what="t")
    assert len(calls) == 2 * placing.LOOKUP_ATTEMPTS

    lookups: list[int] = []

    async def not_found() -> OrderResult | None:
        lookups.append(placing.now_ms())
        return None

    deadline_at: list[int] = []

    async def deadline() -> int:
        deadline_at.append(placing.now_ms() + 300)
        return deadline_at[-1]

    assert await placing.confirm_absent(not_found, deadline, what="t") is None
    assert len(lookups) >= 2 and lookups[-1] >= deadline_at[0]  # "not found" trusted only after the deadline


async def test_confirm_absent_finds_an_order_that_appears_inside_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """An order unknown at first (a venue executing late, its answer dropped) and there from the
    third look-up on is returned then, not when the window ends: the wait is cut into polls of
    ``IN_FLIGHT_POLL_S`` (it was one sleep to the deadline: a close round's follower waited 4.1 s)."""
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)
        await real_sleep(0)

    monkeypatch.setattr(placing.asyncio, "sleep", fake_sleep)
    order = OrderResult(venue="v", symbol="X", client_order_id="abc", venue_order_id="1", side=Side.BUY,
                        reduce_only=False, status=OrderStatus.FILLED, requested_qty=Decimal(1), filled_qty=Decimal(1),
                        avg_price=Decimal(1), fee=Decimal(0), timestamp_ms=0)
    lookups: list[int] = []

    async def later() -> OrderResult | None:
        lookups.append(1)
        return order if len(lookups) >= 3 else None

    async def far() -> int:
        return placing.now_ms() + 60_000

    assert await placing.confirm_absent(later, far, what="t") is order
    assert len(lookups) == 3 and sleeps and max(sleeps) <= placing.IN_FLIGHT_POLL_S, (lookups, sleeps)


async def test_clock_offset_is_measured_once_per_ttl(gw: Gateway) -> None:
    clock = placing.Clock(gw.exchange, gw._call, gw.name)
    seen = count_requests(gw)
    assert await clock.refresh()
    assert abs(clock.offset_ms) < 1000 and clock.uncertainty_ms >= 1
    assert clock.ahead_ms() == max(0, clock.offset_ms) + clock.uncertainty_ms
    assert not await clock.refresh() and len(seen) == 1, seen  # trusted for CLOCK_TTL_S: no request


async def test_history_windows_and_pages() -> None:
    assert history.windows(0, 10, 4) == [(0, 4), (5, 9), (10, 10)]
    assert history.windows(5, 5, 4) == [(5, 5)]
    rows = [{"id": str(i), "timestamp": i // 3} for i in range(25)]  # 3 rows per millisecond
    asked: list[tuple[int, int]] = []

    async def fetch(start: int, end: int) -> list[dict[str, Any]]:
        asked.append((start, end))
        return [r for r in rows if start <= r["timestamp"] <= end][:4]

    got = await history.collect(fetch, 0, 100, history.trade_key, width_ms=50, page_limit=4)
    assert [r["id"] for r in got] == [str(i) for i in range(25)]
    assert asked[0] == (0, 50) and asked[-1] == (51, 100)


# --- clock skew: the fallback for -1021 -------------------------------------------------------
async def test_clock_skew_refusal_resyncs_and_the_retry_goes_through(sim_url: str, admin: Admin) -> None:
    """The venue's clock runs 8 s behind (``clock_skew_ms``): a signed request is refused with
    -1021 (ClockSkew, retryable, nothing accepted); the gateway re-syncs its one clock, so the
    retry, signed with the measured offset, succeeds, and the in-flight deadline knows the offset."""
    from venues.errors import ClockSkew

    g = Gateway(venue(sim_url))
    try:
        await g.markets()
        await admin.faults(clock_skew_ms=-8000)  # the venue is 8 s behind: our timestamps look ahead
        with pytest.raises(ClockSkew):
            await g.balance()
        bal = await g.balance()  # re-signed with the measured difference
        assert bal.total > 0
        assert abs(g.clock.offset_ms - 8000) < 1000 and g.exchange.options["timeDifference"] == g.clock.offset_ms
        assert g.clock.ahead_ms() >= 7000
    finally:
        await admin.faults()
        await g.close()


async def test_whole_position_close_without_window_wait_and_resent_fresh_never_flips(gw: Gateway, admin: Admin) -> None:
    """lifecycle-v4's whole-position close: the venue answers 502 before processing (the
    `errors` fault) and the look-up fails too. With ``wait_window=False`` the unknown outcome is
    raised after one look-up, not after the validity window; the caller resends under a fresh
    id, and two reduce-only closes that both land never flip the position."""
    await flatten(gw)
    opened = await gw.place_market_order(SYMBOL, Side.BUY, Decimal("0.02"), new_cid())
    assert opened.filled_qty == Decimal("0.02")
    await admin.faults(error_rate=1.0)
    t0 = time.monotonic()
    with pytest.raises(VenueError) as err:
        await gw.place_market_order(SYMBOL, Side.SELL, Decimal("0.02"), new_cid(), reduce_only=True,
                                    wait_window=False)
    fast = time.monotonic() - t0
    assert err.value.outcome_unknown and err.value.retryable
    window_s = gw.window_ms / 1000
    assert fast < window_s, (fast, window_s)  # one look-up, no wait for the window
    await admin.faults()
    # what a lost-but-executed close and its fresh resend do: both land, the second finds nothing
    a = await gw.place_market_order(SYMBOL, Side.SELL, Decimal("0.02"), new_cid(), reduce_only=True, wait_window=False)
    assert a.filled_qty == Decimal("0.02")
    with pytest.raises(VenueError):  # reduce-only with no position: refused, nothing opened
        await gw.place_market_order(SYMBOL, Side.SELL, Decimal("0.02"), new_cid(), reduce_only=True,
                                    wait_window=False)
    assert all(p.qty == 0 for p in await gw.positions([SYMBOL]))
