"""Fast tests of the trade's dangerous branches: the real TradeWorkflow on the session's dev
server, in-process, with faked activities of the same names (``tests/fake_venues.py``), one
test per branch. Seconds each; the real-process tests (simulators over HTTP, real ccxt,
SIGKILLed workers) stay in ``test_trade_workflow.py`` and ``test_trade_crash.py``.

(Temporal's time-skipping test server is a separate download, not on PyPI, so durations are
scaled down instead: poll 50 ms, monitor 100 ms, close backoff capped at 200 ms.)

``HEDGEFLOW_RECORD_HISTORIES=1`` saves each branch's history under ``tests/histories/`` for the
replay guard in ``test_trade_workflow.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

from domain.ids import client_order_id
from messages.trade import CloseRequest, HoldParams, TradeParams, TradeStatus
from tests.fake_venues import FakeActivities, FakeVenue
from workers.worker import workflow_runner
from workflows.alerts import AlertWorkflow
from workflows.trade import TradeWorkflow
from workflows.visibility import search_attributes_for

HISTORIES = Path(__file__).parent / "histories"
SYMBOL = "BTC/USDT:USDT"


class Bench:
    def __init__(self, client, task_queue: str, fakes: FakeActivities) -> None:
        self.client, self.tq, self.fakes = client, task_queue, fakes

    async def start(self, notional: str = "1000", **kw) -> WorkflowHandle:
        hold = HoldParams(**({"monitor_interval_s": 0.1} | kw.pop("hold", {})))
        p = TradeParams(trade_id=f"trade-branch-{uuid.uuid4().hex[:10]}", symbol=SYMBOL, long_venue="fa",
                        short_venue="fb", notional_usd=D(notional), verify_poll_s=0.05, close_retry_max_s=0.2,
                        hold=hold, **kw)
        return await self.client.start_workflow(TradeWorkflow.run, args=[p, None], id=p.trade_id,
                                                task_queue=self.tq, search_attributes=search_attributes_for(p))

    async def until(self, h: WorkflowHandle, pred: Callable[[TradeStatus], bool], timeout: float = 20) -> TradeStatus:
        deadline = time.monotonic() + timeout
        while True:
            st = await h.query(TradeWorkflow.status)
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; state {st.state}, events {[e.what for e in st.events[-8:]]}")
            await asyncio.sleep(0.05)

    async def alerted(self, *kinds: str, timeout: float = 10) -> None:
        """Alerts travel on their own path (child workflows): wait until these were delivered."""
        deadline = time.monotonic() + timeout
        while not set(kinds) <= {a.kind for a in self.fakes.alerts}:
            assert time.monotonic() < deadline, f"alerts {kinds} not delivered: {[a.kind for a in self.fakes.alerts]}"
            await asyncio.sleep(0.05)

    def flat(self) -> bool:
        return all(v.position == 0 for v in self.fakes.v.values())

    def executed_at_most_once(self) -> bool:
        return all(n == 1 for v in self.fakes.v.values() for n in v.executions.values())


@pytest.fixture
async def bench(temporal_env, task_queue, request):
    fakes = FakeActivities(FakeVenue("fa"), FakeVenue("fb"))
    client = await temporal_env.client()
    b = Bench(client, task_queue, fakes)
    async with Worker(client, task_queue=task_queue, workflows=[TradeWorkflow, AlertWorkflow], activities=fakes.all(),
                      workflow_runner=workflow_runner()):
        yield b


async def record(h: WorkflowHandle, name: str, version: str = "v7") -> None:
    if os.environ.get("HEDGEFLOW_RECORD_HISTORIES"):
        HISTORIES.mkdir(exist_ok=True)
        # one file per lifecycle version (v2: lifecycle-v2, v3 … v9): older ones stay to prove replay
        (HISTORIES / f"{name}_{version}.json").write_text((await h.fetch_history()).to_json())


async def flat_then_end(bench: Bench, h: WorkflowHandle, name: str | None = None,
                        ready: Callable[[TradeStatus], bool] = lambda s: True, version: str = "v7") -> TradeStatus:
    """Both fakes flat (and ``ready``): the test has seen what it needs. The trade would end ~30 s
    later (``UNSEEN_FINAL_MS``: ids whose outcome was unknown, such as orders a venue refused with
    a 5xx, are looked up that long before "flat" counts), so it is terminated, unless histories
    are being recorded."""
    st = await bench.until(h, lambda s: bench.flat() and ready(s), timeout=30)
    if os.environ.get("HEDGEFLOW_RECORD_HISTORIES") and name:
        await h.result()
        await record(h, name, version)
    else:
        await h.terminate("test done: flat, the rest is the unseen-id wait")
    return st


async def test_one_leg_refused_flattens_the_other(bench):
    bench.fakes.v["fb"].refuse = True
    h = await bench.start()
    st = await h.result()
    assert st.state == "aborted" and st.abort_reason.startswith("LEG_FAILED")
    assert st.emergency and bench.flat()
    assert st.orphan_exposure_ms is not None
    assert any("flattened in the same step" in e.what for e in st.events), st.events  # lifecycle-v6
    await bench.alerted("emergency_close", "trade_aborted")
    await record(h, "trade_leg_failed")


async def test_one_leg_outcome_unknown_is_never_resent_and_flattened(bench):
    """The short order executes but its answer is lost: it is not placed again while the long
    leg waits unhedged; the trade flattens both venues (the close looks the lost order up) and
    ends aborted. Every client id executed at most once."""
    bench.fakes.v["fb"].lose_answer = 1  # executes, but the answer is lost
    h = await bench.start()
    st = await h.result()
    assert st.state == "aborted" and st.abort_reason.startswith("LEG_FAILED") and "outcome unknown" in st.abort_reason
    assert bench.flat() and bench.executed_at_most_once()
    fb = bench.fakes.v["fb"]
    filled = [cid for cid, o in fb.orders.items() if o.filled_qty > 0]
    assert len(filled) == 2, filled  # the lost open and what flattened it (the v4 chase or a close), once each
    await record(h, "trade_leg_unknown")


async def test_cancel_during_the_final_ledger_write_still_records_the_trade(bench):
    """lifecycle-v5: the trade is flat and aborted, its final ledger write failed once and waits
    for its retry (1 s); an operator's cancel then arrives. Before v5 the cancel cut the write
    and the trade was never recorded (seen in the 100-trade chaos run: ledger 99 of 100 trades)."""
    bench.fakes.v["fb"].refuse = True
    bench.fakes.final_record_failures = 1
    h = await bench.start()
    await bench.until(h, lambda st: st.state == "aborted")
    await asyncio.sleep(0.3)  # the first write has failed; the retry is 1 s away
    assert bench.fakes.final_record_failures == 0 and "aborted" not in bench.fakes.records
    await h.cancel()
    st = await h.result()
    assert st.state == "aborted" and bench.flat()
    assert bench.fakes.records[-1:] == ["aborted"], bench.fakes.records
    assert not bench.fakes.leases
    await record(h, "trade_cancel_final_record")


async def test_close_requested_before_any_order_opens_nothing(bench):
    for v in bench.fakes.v.values():
        v.check_slow_s = 1.0  # the pre-trade reads take a moment: the signal arrives meanwhile
    h = await bench.start()
    await h.signal(TradeWorkflow.emergency_close, CloseRequest(reason="changed my mind"))
    st = await h.result()
    assert st.state == "aborted" and "close requested before opening" in st.abort_reason
    assert all(not v.executions for v in bench.fakes.v.values())


async def test_both_legs_refused_leaves_nothing(bench):
    bench.fakes.v["fa"].refuse = bench.fakes.v["fb"].refuse = True
    st = await (await bench.start()).result()
    assert st.state == "aborted" and st.abort_reason.startswith("LEG_FAILED")
    assert bench.flat() and all(not v.executions for v in bench.fakes.v.values())


async def test_partial_fill_is_trimmed_at_once(bench):
    """lifecycle-v3: the venue that filled short is not asked again while the gap is open; the
    longer leg is trimmed at once (hedged first; v2 topped up first: its saved history replays)."""
    bench.fakes.v["fa"].partial = D("0.5")  # every opening order on the long venue half fills
    bench.fakes.v["fa"].step = bench.fakes.v["fb"].step = D("0.1")
    h = await bench.start(topup_attempts=1)
    st = await bench.until(h, lambda s: s.state == "holding")
    L, S = st.leg("long"), st.leg("short")
    assert st.target_qty == D("10") and L.filled_qty == S.filled_qty == D("5")
    assert not any("t1" in c for c in L.client_order_ids) and any("m1" in c for c in S.client_order_ids)
    assert bench.fakes.v["fa"].position == D("5") and bench.fakes.v["fb"].position == D("-5")
    await h.signal(TradeWorkflow.close, CloseRequest(reason="done"))
    assert (await h.result()).state == "closed" and bench.flat()
    await record(h, "trade_topup_trim")


async def test_a_trim_that_fills_short_is_trimmed_again(bench):
    """lifecycle-v5: the long leg half fills (5 of 10) and the trim of the short half fills too
    (2.5 of 5): the short is trimmed again (m2, m3) until the legs are equal, instead of holding
    a gap of a step or more (within max_gap, but naked) for the whole hold."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    fa.partial, fb.close_partial = D("0.5"), D("0.5")
    fa.step = fb.step = D("0.1")
    h = await bench.start(hold={"max_gap": D("0.9")})  # a gap the hedge check would accept
    st = await bench.until(h, lambda s: s.state == "holding")
    L, S = st.leg("long"), st.leg("short")
    assert L.filled_qty == S.filled_qty == D("5"), (L.filled_qty, S.filled_qty)
    assert fa.position == D("5") and fb.position == D("-5")
    # v9: the trim's rest goes out from the trim's own activity (m1r1); v5-v8 trimmed again (m2)
    assert client_order_id(st.trade_id, "short", "m1r1") in S.client_order_ids, S.client_order_ids
    await h.signal(TradeWorkflow.close, CloseRequest(reason="done"))
    assert (await h.result()).state == "closed" and bench.flat()
    await record(h, "trade_trim_again")


async def test_cancel_while_opening_closes_and_ends_canceled(bench):
    for v in bench.fakes.v.values():
        v.slow_s = 1.0  # the opening orders are in flight when the cancel arrives
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "verifying")
    await h.cancel()
    with pytest.raises(WorkflowFailureError):
        await h.result()
    assert (await h.describe()).status == WorkflowExecutionStatus.CANCELED
    assert bench.flat()
    await record(h, "trade_cancel_opening")


async def test_cancel_while_opening_waits_for_the_lone_legs_flatten_and_records_it(bench):
    """lifecycle-v6: the short is refused and the long (slow venue) fills alone while a cancel
    arrives: ``place_orders`` flattens the long itself; the workflow waits for that answer before
    it acts on the cancel, so the flatten's id is the trade's (booked, recorded), not an order
    the ledger never hears of (chaos: ledger ≠ venues by one flatten)."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    fa.slow_s, fb.refuse = 1.0, True
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "verifying")
    await h.cancel()
    with pytest.raises(WorkflowFailureError):
        await h.result()
    assert (await h.describe()).status == WorkflowExecutionStatus.CANCELED
    assert bench.flat() and bench.executed_at_most_once()
    st = await h.query(TradeWorkflow.status)
    lf = client_order_id(st.trade_id, "long", "lf")
    assert lf in fa.orders and lf in st.leg("long").client_order_ids, (sorted(fa.orders), st.events)
    assert any("taken once their answers were in" in e.what for e in st.events), st.events
    await record(h, "trade_cancel_lone_flatten")


async def test_cancel_while_closing_keeps_closing(bench):
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    bench.fakes.v["fb"].down = True
    await h.signal(TradeWorkflow.close, CloseRequest(reason="into an outage"))
    await bench.until(h, lambda s: s.state == "closing" and s.close_attempts >= 2)
    await h.cancel()
    await asyncio.sleep(0.5)
    assert (await h.query(TradeWorkflow.status)).state == "closing"  # the cancel changed nothing
    bench.fakes.v["fb"].down = False
    try:  # closed first; it then ends Canceled, or Completed when the close loop absorbed the cancel
        await h.result()
    except WorkflowFailureError:
        assert (await h.describe()).status == WorkflowExecutionStatus.CANCELED
    assert (await h.query(TradeWorkflow.status)).state == "closed" and bench.flat()
    await record(h, "trade_cancel_closing")


async def test_continue_as_new_then_reduction_keeps_legs_equal(bench):
    """The carry bug: after continue-as-new the market step was reset to 0.001, so halving 15
    reduced 7 on the step-1 venue and 7.5 on the step-0.1 one: a permanent gap."""
    bench.fakes.v["fa"].step, bench.fakes.v["fb"].step = D("1"), D("0.1")
    h = await bench.start(notional="1500", history_limit=100, hold={"monitor_interval_s": 0.05})
    st = await bench.until(h, lambda s: s.state == "holding")
    assert st.target_qty == D("15")
    await bench.until(h, lambda s: s.runs >= 2, timeout=60)
    bench.fakes.v["fa"].liq_price = D("92")  # 8 % away: reduce, not close
    st = await bench.until(h, lambda s: s.reductions >= 1 and s.leg("short").filled_qty < 15, timeout=20)
    await asyncio.sleep(0.3)
    assert bench.fakes.v["fa"].position == D("8") and bench.fakes.v["fb"].position == D("-8")
    st = await h.query(TradeWorkflow.status)
    assert st.state == "holding" and st.leg("long").filled_qty == st.leg("short").filled_qty == D("8")
    await h.signal(TradeWorkflow.close, CloseRequest(reason="done"))
    assert (await h.result()).state == "closed" and bench.flat()
    await record(h, "trade_continue_as_new_reduce")


async def test_close_retried_across_a_long_outage(bench):
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    bench.fakes.v["fa"].down = True
    await h.signal(TradeWorkflow.close, CloseRequest(reason="venue down"))
    await bench.until(h, lambda s: s.close_attempts >= 12, timeout=30)
    bench.fakes.v["fa"].down = False
    st = await h.result()
    assert st.state == "closed" and bench.flat() and st.close_attempts >= 12
    await bench.alerted("close_stuck", "trade_closed")
    assert [a.kind for a in bench.fakes.alerts].count("close_stuck") == 1
    await record(h, "trade_close_retry")


# ---------------------------------------------------------------------------- issue 10: faults
async def test_lone_leg_flattened_while_the_other_venue_stays_down(bench):
    """The short leg is refused and its venue then goes down: the long leg on the healthy
    venue is flattened at once, not after the outage."""
    fb = bench.fakes.v["fb"]
    fb.refuse = True
    fb.down_after_answer = True  # the refusing venue goes down right after answering
    h = await bench.start()
    t0 = time.monotonic()
    await bench.until(h, lambda s: s.state == "emergency_closing")
    while bench.fakes.v["fa"].position != 0:
        assert time.monotonic() - t0 < 5, "the lone leg waited for the broken venue"
        await asyncio.sleep(0.05)
    assert fb.down and (await h.query(TradeWorkflow.status)).state == "emergency_closing"
    fb.down = False
    st = await h.result()
    assert st.state == "aborted" and bench.flat()


async def test_long_outage_close_keeps_each_run_small(bench):
    h = await bench.start(history_limit=100)
    await bench.until(h, lambda s: s.state == "holding")
    bench.fakes.v["fb"].down = True
    await h.signal(TradeWorkflow.close, CloseRequest(reason="outage"))
    await bench.until(h, lambda s: s.runs >= 3, timeout=60)
    # a graceful close keeps the pair hedged while one venue is unreachable: the healthy leg waits
    assert bench.fakes.v["fa"].position == -bench.fakes.v["fb"].position != 0
    bench.fakes.v["fb"].down = False
    st = await h.result()
    assert st.state == "closed" and bench.flat() and st.runs >= 3
    async for w in bench.client.list_workflows(f"WorkflowId = '{h.id}'"):
        n = len((await bench.client.get_workflow_handle(h.id, run_id=w.run_id).fetch_history()).events)
        assert n < 250, f"run {w.run_id} has {n} events"


async def test_hedged_pair_closes_one_leg_after_the_other(bench):
    """The first leg's venue answers reads but refuses every order: the other leg waits, so
    the pair stays hedged (closing both at once would leave the short naked on fb)."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    fa.orders_down = True
    await h.signal(TradeWorkflow.close, CloseRequest(reason="orders down on fa"))
    await bench.until(h, lambda s: s.close_attempts >= 4)
    assert fa.position == -fb.position != 0, "one leg was closed while the other could not be"
    fa.orders_down = False
    st = await flat_then_end(bench, h)
    assert any("long on fa first" in e.what for e in st.events)


async def test_a_close_round_sends_the_followers_match_in_the_leaders_step(bench):
    """lifecycle-v7: a hedged pair's close round is one activity: the follower's venue is read,
    the leader closes, and the follower's match (its ``s1`` id, not a close loop's ``c<n>``) goes
    out in the same step, before the workflow has even seen the leader's fill."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    await h.signal(TradeWorkflow.close, CloseRequest(reason="done"))
    st = await h.result()
    assert st.state == "closed" and bench.flat() and bench.executed_at_most_once()
    c1, s1 = client_order_id(h.id, "long", "c1"), client_order_id(h.id, "short", "s1")
    assert f"order {c1}" in fa.log and f"order {s1}" in fb.log, (fa.log, fb.log)
    assert not any(f"order {client_order_id(h.id, 'short', 'c1')}" in x for x in fb.log), fb.log
    assert [gap for _, gap in bench.fakes.imbalance[2:]] == [-st.leg("long").opened_qty, 0]  # one step apart
    await record(h, "trade_close_in_step")


async def test_a_follower_unreadable_in_the_close_round_leads_instead(bench):
    """lifecycle-v7: fb answers the close's sequence probe, then goes down. The close round reads
    fb before sending fa's close and finds it down: fa is not closed (that would leave fb's short
    naked for the whole outage); fb leads from then on, and fa follows once fb is back."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    h = await bench.start(hold={"monitor_interval_s": 30})
    await bench.until(h, lambda s: s.state == "holding")
    await asyncio.sleep(0.3)  # the monitor's reads are done: the next read of fb is the probe
    fb.down_after_reads = 1
    await h.signal(TradeWorkflow.close, CloseRequest(reason="fb goes down"))
    await bench.until(h, lambda s: any("closes first now" in e.what for e in s.events))
    await bench.until(h, lambda s: s.close_attempts >= 4)
    assert fa.position == -fb.position != 0, "the leader closed while its follower could not"
    fb.down, fb.down_after_reads = False, None
    st = await flat_then_end(bench, h, "trade_close_in_step_follower_down")
    assert bench.executed_at_most_once()
    assert client_order_id(h.id, "long", "c1") not in st.leg("long").client_order_ids  # never sent


async def test_a_followers_match_refused_with_a_5xx_is_sent_again_at_once(bench):
    """lifecycle-v7: the follower's venue answers the match with a 503 (nothing executed): the
    close round sends it again at once under its next id (a reduce-only close of the whole
    position cannot close more than is there), without a read or a workflow round trip; it used
    to wait for the follower's own loop (naked 3.4 and 3.8 s in the 100-trade chaos run)."""
    fb = bench.fakes.v["fb"]
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    fb.close_errors = 1
    await h.signal(TradeWorkflow.close, CloseRequest(reason="done"))
    s1, s1r1 = (client_order_id(h.id, "short", x) for x in ("s1", "s1r1"))
    await flat_then_end(bench, h, "trade_close_in_step_match_retried",
                        ready=lambda s: s1r1 in s.leg("short").client_order_ids)
    assert bench.executed_at_most_once()
    assert fb.log[fb.log.index(f"fail {s1}") + 1] == f"order {s1r1}", fb.log  # at once: no read between


async def test_a_cancel_during_a_close_round_waits_for_both_fills(bench):
    """lifecycle-v7: a workflow cancel while the close round is between the leader's fill and
    the follower's slow match does not cut the round: the match executes and is booked (its id
    issued, so the ledger records it), and the trade ends flat."""
    fb = bench.fakes.v["fb"]
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    fb.slow_s = 1.5
    await h.signal(TradeWorkflow.close, CloseRequest(reason="done"))
    await bench.until(h, lambda s: any("in step" in e.what for e in s.events))
    await asyncio.sleep(0.4)  # the round is waiting for fb's answer
    await h.cancel()
    s1 = client_order_id(h.id, "short", "s1")
    st = await flat_then_end(bench, h, ready=lambda s: s1 in s.leg("short").client_order_ids
                             and s.leg("short").filled_qty == 0)
    assert bench.executed_at_most_once() and fb.executions.get(s1) == 1, fb.executions
    assert st.leg("short").fees >= 0 and s1 not in st.leg("short").pending


async def test_a_venue_that_filled_late_closes_first(bench):
    """lifecycle-v7: fb filled the short 2.5 s after accepting it (a venue that matches late, as
    its answer says): it leads the close, so the pair is unequal only for the prompt venue's
    match, not for the late venue's delay (naked 2.5 s in the 100-trade chaos run)."""
    bench.fakes.v["fb"].exec_late_ms = 2500
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    await h.signal(TradeWorkflow.close, CloseRequest(reason="done"))
    st = await h.result()
    assert st.state == "closed" and bench.flat()
    assert any("short on fb first" in e.what for e in st.events), [e.what for e in st.events]


async def test_follower_matches_what_the_leader_has_closed(bench):
    """The leg that closes first fills half of each order: the other leg closes exactly what it
    closed, round by round, so after every one of its orders the pair is hedged again."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    fa.step = fb.step = D("0.1")
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    fa.close_partial = D("0.5")
    fb.reads = 0
    await h.signal(TradeWorkflow.close, CloseRequest(reason="thin book on fa"))
    st = await h.result()
    assert st.state == "closed" and bench.flat()
    closes = [(v, gap) for v, gap in bench.fakes.imbalance[2:]]  # after the two opening orders
    follower = [gap for v, gap in closes if v == "fb"]
    assert len(follower) >= 3, closes  # fb matched in several steps, not all at the end
    assert all(gap == 0 for gap in follower), closes
    # v7: each match went out in its leader's round (``s<n>``), not from fb's own close loop
    in_step = {client_order_id(h.id, "short", f"s{k}") for k in range(1, 40)}
    matches = set(fb.executions) - {client_order_id(h.id, "short", "o")}
    assert matches <= in_step and len(matches) == len(follower), (len(matches & in_step), len(follower))


async def test_a_partly_filled_close_of_a_lone_leg_sends_the_rest_without_a_read(bench):
    """lifecycle-v5: the lone leg's venue fills half of each order; the rest follows at once
    (steps c1r1, c1r2, ...), not after a read of the venue each round (c1, c2, ...)."""
    fa = bench.fakes.v["fa"]
    fa.step = bench.fakes.v["fb"].step = D("0.1")
    fa.close_partial = D("0.5")
    fa.close_errors = 1  # the lone leg's own flatten (lf, lifecycle-v6) fails: the close loop's c1 and its rests close it
    bench.fakes.v["fb"].refuse = True
    h = await bench.start()
    rest = [client_order_id(h.id, "long", f"c1r{k}") for k in (1, 2, 3)]
    st = await flat_then_end(bench, h, ready=lambda s: all(cid in s.leg("long").client_order_ids for cid in rest))
    assert bench.executed_at_most_once()
    assert client_order_id(st.trade_id, "long", "c3") not in st.leg("long").client_order_ids, st.leg("long")


async def test_a_naked_leg_whose_close_fails_is_sent_again_at_once_without_a_read(bench):
    """lifecycle-v6: the lone long's venue fails its next two reduce-only orders (the flatten sent
    by ``place_orders`` and the close loop's first): the loop sends the next one at once under a
    fresh id, without reading the venue first (it used to back off, read, then send)."""
    fa = bench.fakes.v["fa"]
    fa.close_errors = 2
    bench.fakes.v["fb"].refuse = True
    h = await bench.start()
    c1, c2 = (client_order_id(h.id, "long", f"c{k}") for k in (1, 2))
    # flat once c2 executed; the trade then ends ~30 s later (UNSEEN_FINAL_MS: the failed ids'
    # outcomes were unknown, so they are looked up that long): the test does not wait for that
    st = await bench.until(h, lambda s: f"order {c2}" in fa.log and c2 not in s.leg("long").pending)
    assert bench.flat() and bench.executed_at_most_once()
    assert c2 in st.leg("long").client_order_ids, st.leg("long").client_order_ids  # c1 failed, c2 closed it
    between = fa.log[fa.log.index(f"fail {c1}") + 1:fa.log.index(f"order {c2}")]
    assert between == [], fa.log  # no read between the failed close and the next
    await h.terminate("test done: flat, the rest is the unseen-id wait")


async def test_a_venue_unreadable_at_the_hedge_check_is_no_gap(bench):
    """lifecycle-v5: both legs filled, then fb stops answering before the hedge check reads it.
    The readable leg is not flattened (that left the other naked on the silent venue for 52 s in
    the chaos run); the check reads again until fb answers, then the trade holds."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    fb.down_after_answer = True
    h = await bench.start()
    await bench.until(h, lambda s: any("a venue cannot be read" in e.what for e in s.events))
    await asyncio.sleep(1.5)
    assert fa.position != 0 and fb.position != 0  # nothing closed while fb is silent
    fb.down = False
    st = await bench.until(h, lambda s: s.state == "holding")
    assert st.hedge_gap == 0 and not any("closing both" in e.what for e in st.events)
    await h.signal(TradeWorkflow.close, CloseRequest(reason="done"))
    st = await h.result()
    assert st.state == "closed" and bench.flat()
    await record(h, "trade_hedge_check_unreadable")


async def test_emergency_close_keeps_the_pair_hedged_while_one_venue_is_down(bench):
    """An emergency close (not about one leg) while fb is unreachable: fb goes first, and fa
    waits for it instead of being flattened into a naked short."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    fb.down = True
    await bench.until(h, lambda s: any("monitor read failed" in e.what for e in s.events))
    await h.signal(TradeWorkflow.emergency_close, CloseRequest(reason="operator"))
    st = await bench.until(h, lambda s: s.close_attempts >= 4)
    assert fa.position == -fb.position != 0, [e.what for e in st.events]
    fb.down = False
    st = await h.result()
    assert st.state == "closed" and st.emergency and bench.flat()
    assert any("short on fb first" in e.what for e in st.events)


async def test_emergency_close_keeps_the_pair_hedged_when_both_probes_fail(bench):
    """fb is down and fa answers too slowly for the close's quick probe (a loaded worker): the
    probe tells the venues nothing apart, so fb's earlier failure still decides: fb goes first.
    (Both probes failing at one instant tied the venues, and the tie sent fa first: naked.)"""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    fb.down = True
    await bench.until(h, lambda s: any("monitor read failed" in e.what for e in s.events))
    fa.read_slow_s = 2.5  # over the probe's 2 s
    await h.signal(TradeWorkflow.emergency_close, CloseRequest(reason="operator"))
    await bench.until(h, lambda s: any("first, then the other" in e.what for e in s.events), timeout=20)
    fa.read_slow_s = 0
    await bench.until(h, lambda s: s.close_attempts >= 4, timeout=20)
    assert fa.position == -fb.position != 0
    fb.down = False
    st = await h.result()
    assert st.state == "closed" and st.emergency and bench.flat()
    assert any("short on fb first" in e.what for e in st.events)


async def test_unreadable_venue_does_not_blind_the_other_legs_liquidation_check(bench):
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "holding")
    bench.fakes.v["fb"].down = True
    bench.fakes.v["fa"].liq_price = D("96")  # 4 % away: below close_liq_distance
    await bench.until(h, lambda s: s.state == "emergency_closing")
    t0 = time.monotonic()
    while bench.fakes.v["fa"].position != 0:
        assert time.monotonic() - t0 < 5
        await asyncio.sleep(0.05)
    bench.fakes.v["fb"].down = False
    st = await h.result()
    assert st.close_reason == "LIQUIDATION_RISK" and bench.flat()


async def test_reduction_without_improvement_closes(bench):
    """Hysteresis: reduce once, cool down, re-read; still as near (isolated margin) → close."""
    fa = bench.fakes.v["fa"]
    fa.liq_sticky, fa.liq_price = True, D("92")  # 8 % away and it does not move
    h = await bench.start(hold={"reduce_cooldown_s": 0.5})
    st = await h.result()
    assert st.reductions == 1 and st.close_reason == "LIQUIDATION_RISK" and bench.flat()


async def test_failed_opening_carried_across_continue_as_new_still_ends_aborted(bench):
    """The lone leg's venue is flat at once; the other venue stays down long enough for the
    close to continue-as-new: the next run finishes the close and ends ``aborted`` (LEG_FAILED)."""
    fb = bench.fakes.v["fb"]
    fb.refuse = True
    fb.down_after_answer = True
    h = await bench.start(history_limit=100)
    await bench.until(h, lambda s: s.runs >= 2 and s.state == "emergency_closing", timeout=60)
    fb.down = False
    st = await h.result()
    assert st.state == "aborted" and st.abort_reason.startswith("LEG_FAILED") and bench.flat()
    assert st.orphan_exposure_ms is not None and st.orphan_exposure_ms > 0
