"""lifecycle-v9 branches, on the real TradeWorkflow with the faked activities of
``tests/fake_venues.py`` (see ``tests/test_trade_branches.py``): a whole close's rests from one
activity, a lone leg's flatten resting until flat on a thin book, a cancel that waits for a trim in
flight. ``HEDGEFLOW_RECORD_HISTORIES=1`` saves each history as ``tests/histories/<name>_v9.json``."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from domain.ids import client_order_id
from messages.trade import CloseRequest
from tests.test_trade_branches import bench, flat_then_end, record  # noqa: F401 - the fixture
from workflows.trade import TradeWorkflow


async def test_a_whole_close_and_its_rests_go_out_from_one_activity(bench):  # noqa: F811
    """The lone long's own flatten fails (a 503) and its venue fills half of each order: the close
    loop's c1 and every rest behind it (c1r1, c1r2, ...) go out from one ``close_whole`` activity,
    none as its own ``place_order`` (each rest was an activity and a workflow task: ~1 s at load)."""
    fa = bench.fakes.v["fa"]
    fa.step = bench.fakes.v["fb"].step = D("0.1")
    fa.close_partial, fa.close_errors = D("0.5"), 1
    bench.fakes.v["fb"].refuse = True
    h = await bench.start()
    c1 = client_order_id(h.id, "long", "c1")
    rest = [client_order_id(h.id, "long", f"c1r{k}") for k in (1, 2, 3)]
    st = await flat_then_end(bench, h, "trade_close_whole_rests",
                             ready=lambda s: all(cid in s.leg("long").client_order_ids for cid in rest), version="v9")
    assert bench.executed_at_most_once()
    calls = bench.fakes.calls
    assert ("close_whole", c1) in calls, calls
    ours = {c1, *(client_order_id(h.id, "long", f"c1r{k}") for k in range(1, 13))}
    assert not [cid for kind, cid in calls if kind == "place_order" and cid in ours], calls
    assert all(cid in fa.executions for cid in rest), sorted(fa.executions)
    assert client_order_id(st.trade_id, "long", "c2") not in st.leg("long").client_order_ids


async def test_a_lone_legs_flatten_rests_until_flat_on_a_thin_book(bench):  # noqa: F811
    """The short is refused and the long's venue fills half of each reduce-only order (10 at step 0.1:
    100 lots): ``place_orders`` flattens it in rests until flat (lfr1 … lfr6); three rests (v6-v8)
    left 0.7 to the close loop's own close (c1 and its rests: 1-2 s more at load)."""
    fa = bench.fakes.v["fa"]
    fa.step = bench.fakes.v["fb"].step = D("0.1")
    fa.close_partial = D("0.5")
    bench.fakes.v["fb"].refuse = True
    h = await bench.start()
    st = await h.result()
    assert st.state == "aborted" and bench.flat() and bench.executed_at_most_once()
    ids = st.leg("long").client_order_ids
    assert client_order_id(st.trade_id, "long", "lfr4") in ids, ids
    assert client_order_id(st.trade_id, "long", "c1") not in ids, ids  # the flatten closed it all
    await record(h, "trade_lone_flatten_rests", "v9")


async def test_a_cancel_waits_for_a_trim_in_flight(bench):  # noqa: F811
    """The long fills half (5 of 10) and the short's trim ``m1`` is in flight when a cancel arrives:
    the workflow waits for its answer and books it before the close (a cut trim left its answer
    unbooked and the difference naked through the close's probes and first round: 5.7 s in chaos)."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    fa.partial, fb.reduce_slow_s = D("0.5"), 3.0
    h = await bench.start()
    m1 = client_order_id(h.id, "short", "m1")
    await bench.until(h, lambda s: any(e.what.startswith("trimming short") for e in s.events))
    await h.cancel()
    fb.reduce_slow_s = 0.0  # the trim already in flight keeps its 3 s; the close's orders are quick
    with pytest.raises(WorkflowFailureError):
        await h.result()
    assert (await h.describe()).status == WorkflowExecutionStatus.CANCELED
    assert bench.flat() and bench.executed_at_most_once()
    st = await h.query(TradeWorkflow.status)
    what = [e.what for e in st.events]
    def at(found) -> int:
        return next((i for i, w in enumerate(what) if found(w)), -1)
    booked = at(lambda w: f"({m1}, " in w)  # the trim's fill, booked by the workflow
    taken = at(lambda w: "taken once its answer was in" in w)
    closing = at(lambda w: w.startswith("cancel received"))
    assert 0 <= booked < taken < closing, what
    await record(h, "trade_cancel_trim", "v9")


async def test_a_leg_whose_opening_may_still_land_is_read_again_every_0_2_s(bench):  # noqa: F811
    """The short's opening gets no answer and stays invisible (a venue executing late, its answer
    dropped) until the fourth read of its venue; the long fills alone and is flattened. While that
    opening may still land, the short's close loop reads again every 0.2 s (it backed off 0.5 s,
    1 s, … and each read at load was 1-2 s more: the late short stayed naked 3.5 s in chaos)."""
    fb = bench.fakes.v["fb"]
    fb.land_after_reads = 4
    h = await bench.start()
    st = await h.result()
    assert st.state == "aborted" and bench.flat() and bench.executed_at_most_once()
    assert fb.landing is not None and fb.land_after_reads == 0  # it landed, late, and was closed
    timers = [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
              for e in (await h.fetch_history()).events if e.HasField("timer_started_event_attributes")]
    assert timers.count(0.2) >= 3 and max(timers) <= 0.2, timers
    await record(h, "trade_unknown_open_read_fast", "v9")


async def test_a_followers_excess_and_its_rests_go_out_from_one_activity(bench):  # noqa: F811
    """A cancel during an opening that filled 5 long and 10 short (the long's venue filled half):
    the pair closes in step, the long (its venue filled short) first, and the short first closes
    its excess of 5 over the long on a book that fills half of each order. That excess and its
    rests (c1, c1r1, …) go out from one ``close_whole`` activity (chaos: three closes 0.5 s apart,
    each its own activity and read, while the excess was naked)."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    fa.step = fb.step = D("0.1")
    fa.partial, fb.close_partial = D("0.5"), D("0.5")
    fa.slow_s = fb.slow_s = 0.6  # the opening orders are in flight when the cancel arrives
    h = await bench.start()
    await bench.until(h, lambda s: s.state == "verifying")
    await h.cancel()
    with pytest.raises(WorkflowFailureError):
        await h.result()
    assert bench.flat() and bench.executed_at_most_once()
    c1 = client_order_id(h.id, "short", "c1")
    rests = {client_order_id(h.id, "short", f"c1r{k}") for k in range(1, 13)}
    assert ("close_whole", c1) in bench.fakes.calls, bench.fakes.calls
    assert rests & set(fb.executions), sorted(fb.executions)  # the excess rested in that activity
    assert not [cid for kind, cid in bench.fakes.calls if kind == "place_order" and cid in rests | {c1}]
    st = await h.query(TradeWorkflow.status)
    assert client_order_id(h.id, "short", "c2") not in st.leg("short").client_order_ids, st.events
    await record(h, "trade_follower_excess_rests", "v9")


async def test_a_pair_trimmed_in_the_opening_step_is_booked_and_not_trimmed_again(bench):  # noqa: F811
    """``place_orders`` trims the longer of two unequal legs itself (``mo``, activities/lone_leg.py):
    the workflow books that trim, finds the pair equal and holds, with no trim of its own (m1)."""
    fa = bench.fakes.v["fa"]
    fa.step = bench.fakes.v["fb"].step = D("0.1")
    fa.partial = D("0.5")
    bench.fakes.even_in_step = True
    h = await bench.start()
    st = await bench.until(h, lambda s: s.state == "holding")
    L, S = st.leg("long"), st.leg("short")
    assert L.filled_qty == S.filled_qty == D("5") and bench.fakes.v["fb"].position == D("-5"), (L, S)
    assert client_order_id(h.id, "short", "mo") in S.client_order_ids, S.client_order_ids
    assert client_order_id(h.id, "short", "m1") not in S.client_order_ids, S.client_order_ids
    await h.signal(TradeWorkflow.close, CloseRequest(reason="done"))
    assert (await h.result()).state == "closed" and bench.flat()
    await record(h, "trade_open_trimmed_in_step", "v9")
