"""TradeWorkflow end to end: real Temporal dev server, real simulators over HTTP, real ccxt.

Each test uses its own symbol so that positions of one test never meet another's; faults are
cleared after every test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.worker import Replayer
from trade_harness import TEST_API_SECRET, settings_for, start_sims, wait_for

from control.trades import TradeRefused, open_trade
from domain.ids import client_order_id
from messages.trade import CloseRequest, HoldParams, HoldParamsPatch, TradeStatus
from workers.registry import WORKFLOWS
from workers.worker import run_worker, workflow_runner

_symbols = itertools.count(1)
CENT = Decimal("0.01")


def next_symbol() -> str:
    return f"S{next(_symbols):03d}/USDT:USDT"


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sims")
    venues = start_sims(tmp, ["sim-a", "sim-b"])
    yield venues
    for s in venues.values():
        s.stop()


@pytest.fixture(autouse=True)
def clear_faults(sims):
    yield
    for s in sims.values():
        s.faults()


class Env:
    def __init__(self, client, settings, task_queue, sims):
        self.client = client
        self.settings = settings
        self.task_queue = task_queue
        self.sims = sims

    async def open(self, symbol: str, notional: str = "1000", **overrides) -> WorkflowHandle:
        wf_id = await open_trade(
            self.client, self.settings, symbol, "sim-a", "sim-b", Decimal(notional), **overrides
        )
        return self.client.get_workflow_handle(wf_id, result_type=TradeStatus)

    async def status(self, handle: WorkflowHandle) -> TradeStatus:
        return await handle.query("status", result_type=TradeStatus)

    async def wait_state(self, handle: WorkflowHandle, *states: str, timeout: float = 30) -> TradeStatus:
        async def check():
            st = await self.status(handle)
            return st if st.state in states else None

        return await wait_for(check, timeout=timeout, what=f"state in {states}")

    def flat(self, symbol: str) -> bool:
        return all(s.position_qty(symbol) == 0 for s in self.sims.values())


@pytest_asyncio.fixture
async def env(temporal_env, task_queue, sims):
    client = await temporal_env.client()
    settings = settings_for(sims)
    settings.temporal.task_queue = task_queue
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_worker(settings, client=client, task_queue=task_queue, stop_event=stop, quiet=True,
                   graceful_shutdown_timeout=2)
    )
    yield Env(client, settings, task_queue, sims)
    stop.set()
    await asyncio.wait_for(task, 30)


async def test_happy_path_collects_funding_and_pnl_matches_venues(env):
    sym = next_symbol()
    for s, rate in ((env.sims["sim-a"], "-0.0005"), (env.sims["sim-b"], "0.0010")):
        s.market(sym, price="100", funding_rate=rate)
    before = {n: s.wallet() for n, s in env.sims.items()}
    h = await env.open(sym, "1000")
    st = await env.wait_state(h, "holding")
    assert st.target_qty > 0
    assert [leg.filled_qty for leg in st.legs] == [st.target_qty, st.target_qty]
    assert env.sims["sim-a"].position_qty(sym) == st.target_qty
    assert env.sims["sim-b"].position_qty(sym) == -st.target_qty

    # one settlement: the long receives (negative rate), the short receives (positive rate)
    for s in env.sims.values():
        s.settle(sym)
    await h.signal("close", CloseRequest(reason="test done"))
    final = await h.result()
    assert final.state == "closed"
    assert env.flat(sym)
    # funding: long 10 × 100 × 0.0005 = 0.5, short 10 × 100 × 0.0010 = 1.0
    assert final.funding_collected_usd == Decimal("1.5")
    after = {n: s.wallet() for n, s in env.sims.items()}
    venue_change = sum(after[n] - before[n] for n in after)
    assert final.realized_pnl_usd is not None
    assert final.realized_pnl_usd.quantize(CENT) == venue_change.quantize(CENT)
    per_leg = sum(leg.realized_pnl for leg in final.legs)
    assert per_leg == final.realized_pnl_usd
    # client ids are what the venue saw, and each appears once
    ids = [cid for leg in final.legs for cid in leg.client_order_ids]
    for s in env.sims.values():
        counts = Counter(o["clientOrderId"] for o in s.orders(ids))
        assert counts and all(c == 1 for c in counts.values()), counts


async def test_one_leg_rejected_flattens_the_other(env):
    sym = next_symbol()
    env.sims["sim-b"].faults(reject_orders=1)
    h = await env.open(sym)
    final = await h.result()
    assert final.state == "aborted"
    assert final.abort_reason.startswith("LEG_FAILED")
    assert final.orphan_exposure_ms is not None and final.orphan_exposure_ms >= 0
    assert env.flat(sym)


async def test_lone_leg_and_a_late_opening_are_each_flat_within_two_seconds(env):
    """sim-b answers every request 2.5 s late (and executes it then): the long fills on sim-a at
    once and waits at most the companion grace for the short, so it is flat again well inside 2 s
    (with only the 2 s opening deadline it stayed naked 2.4 s). The short's opening then executes
    late, after the long is gone: the reduce-only close sent right behind it (lifecycle-v4, no
    read of the slow venue first) executes right after it (a read first left it naked 3.5 s)."""
    sym = next_symbol()
    b = env.sims["sim-b"]
    b.faults(latency_ms=2500)
    h = await env.open(sym)
    await env.wait_state(h, "emergency_closing", "aborted")
    st = await env.status(h)
    long, short = st.legs

    def done_on_b():
        orders = b.orders(short.client_order_ids)
        return orders if len([o for o in orders if o["status"] in ("FILLED", "EXPIRED")]) >= 2 else None

    orders_b = await wait_for(done_on_b, timeout=20, what="the short's opening and its chase on sim-b")
    b.faults()  # the rest (look-ups, the books) at full speed
    final = await h.result()
    events = [e.what for e in final.events]
    assert final.state == "aborted" and final.abort_reason.startswith("LEG_FAILED"), final.abort_reason
    assert env.flat(sym), events

    def naked(orders, opening_side):
        opened = next(o for o in orders if o["side"] == opening_side and Decimal(o["executedQty"]) > 0)
        closed = next(o for o in orders if o["side"] != opening_side and Decimal(o["executedQty"]) > 0)
        return (closed["arrived_ns"] - opened["arrived_ns"]) / 1e9

    long_naked = naked(env.sims["sim-a"].orders(final.legs[0].client_order_ids), "BUY")
    short_naked = naked(orders_b, "SELL")  # both waited the same 2.5 s on sim-b: arrival order = execution order
    assert long_naked < 2.0, f"the long stayed naked {long_naked:.2f} s: {events}"
    assert short_naked < 2.0, f"the late short stayed naked {short_naked:.2f} s: {events}"
    # the chase of the unknown short: from place_orders itself on v6, from the close loop before
    assert any("followed at once" in e or "follows it on sim-b" in e for e in events), events


def _naked_s(orders: list[dict], opening_side: str) -> float:
    """Venue time from the executed opening to the executed close of one leg."""
    opened = next(o for o in orders if o["side"] == opening_side and Decimal(o["executedQty"]) > 0)
    closed = next(o for o in orders if o["side"] != opening_side and Decimal(o["executedQty"]) > 0)
    return (closed["arrived_ns"] - opened["arrived_ns"]) / 1e9


async def test_lone_leg_is_flattened_in_the_opening_step(env):
    """lifecycle-v6: sim-b refuses the short; the long is flattened by the same activity that
    placed it, under its own ``lf`` id, with no workflow round trip in between."""
    sym = next_symbol()
    env.sims["sim-b"].faults(reject_orders=1)
    h = await env.open(sym)
    final = await h.result()
    events = [e.what for e in final.events]
    assert final.state == "aborted" and final.abort_reason.startswith("LEG_FAILED"), final.abort_reason
    assert env.flat(sym), events
    long = final.legs[0]
    flatten_id = client_order_id(final.trade_id, "long", "lf")
    orders = env.sims["sim-a"].orders(long.client_order_ids)
    assert [o["side"] for o in orders] == ["BUY", "SELL"], orders  # one opening, one close: nothing more
    assert orders[1]["clientOrderId"] == flatten_id and orders[1]["reduceOnly"] in (True, "true"), orders
    assert any("flattened in the same step" in e for e in events), events
    assert long.fees > 0 and long.filled_qty == 0


async def test_lone_leg_on_a_thin_book_is_flattened_with_its_rest_in_the_same_step(env):
    """sim-a fills every order only in part (half of it) and sim-b refuses the short: the lone
    long's flatten fills half, and its rest goes out at once from the same activity (``lfr1``,
    ``lfr2`` …), not one workflow round trip and a position read per remainder."""
    sym = next_symbol()
    env.sims["sim-a"].faults(partial_fill_ratio=0.5)
    env.sims["sim-b"].faults(reject_orders=1)
    h = await env.open(sym)
    final = await h.result()
    env.sims["sim-a"].faults()
    events = [e.what for e in final.events]
    assert final.state == "aborted" and final.abort_reason.startswith("LEG_FAILED"), final.abort_reason
    assert env.flat(sym), events
    long = final.legs[0]
    ids = [client_order_id(final.trade_id, "long", st) for st in ("lf", "lfr1", "lfr2")]
    sent = {o["clientOrderId"]: o for o in env.sims["sim-a"].orders(long.client_order_ids)}
    assert all(i in sent for i in ids), (sorted(sent), events)  # the first and at least two rests
    assert all(sent[i]["side"] == "SELL" and sent[i]["reduceOnly"] in (True, "true") for i in ids)
    assert all(i in long.client_order_ids for i in ids)  # issued: the ledger books their fills


async def test_late_companion_is_cancelled_and_the_lone_leg_flattened(env):
    """sim-b accepts the short and would execute it 2.5 s later (``execute_late_ms``): the long
    must not wait that long naked. The activity cancels the waiting short (it never executes)
    and flattens the long in the same step; before v6 the long stayed naked until the short
    executed late (2.5 s)."""
    sym = next_symbol()
    b = env.sims["sim-b"]
    b.faults(execute_late_ms=2500)
    h = await env.open(sym)
    final = await h.result()
    await asyncio.sleep(3)  # past the moment the short would have executed
    b.faults()
    events = [e.what for e in final.events]
    assert final.state == "aborted" and final.abort_reason.startswith("LEG_FAILED"), (final.abort_reason, events)
    assert env.flat(sym), events
    short_orders = b.orders(final.legs[1].client_order_ids)
    assert short_orders and all(Decimal(o["executedQty"]) == 0 for o in short_orders), short_orders
    assert short_orders[0]["status"] == "CANCELED", short_orders
    long_naked = _naked_s(env.sims["sim-a"].orders(final.legs[0].client_order_ids), "BUY")
    assert long_naked < 2.0, f"the long stayed naked {long_naked:.2f} s: {events}"
    assert any("cancelled" in e for e in events) and any("flattened in the same step" in e for e in events), events


async def test_a_late_leg_beside_a_refused_one_is_cancelled_before_it_executes(env):
    """sim-a would execute the long 2.5 s late and sim-b refuses the short: the long is cancelled
    by the opening step itself while it waits, so nothing ever executes (it used to execute late
    and then be flattened on the same late venue: naked 3.7 s in the 100-trade chaos run)."""
    sym = next_symbol()
    a = env.sims["sim-a"]
    a.faults(execute_late_ms=2500)
    env.sims["sim-b"].faults(reject_orders=1)
    h = await env.open(sym)
    final = await h.result()
    await asyncio.sleep(3)  # past the moment the long would have executed
    a.faults()
    events = [e.what for e in final.events]
    assert final.state == "aborted" and final.abort_reason.startswith("LEG_FAILED"), (final.abort_reason, events)
    assert env.flat(sym), events
    long_orders = a.orders(final.legs[0].client_order_ids)
    assert long_orders and all(Decimal(o["executedQty"]) == 0 for o in long_orders), long_orders
    assert long_orders[0]["status"] == "CANCELED", long_orders


async def test_partial_fill_is_trimmed_to_a_hedge(env):
    sym = next_symbol()
    env.sims["sim-b"].faults(partial_fill_ratio=0.5)
    h = await env.open(sym)
    st = await env.wait_state(h, "holding")
    env.sims["sim-b"].faults()
    assert st.hedge_gap is not None and st.hedge_gap <= Decimal("0.05")
    assert abs(env.sims["sim-a"].position_qty(sym) + env.sims["sim-b"].position_qty(sym)) <= (
        st.target_qty * Decimal("0.05")
    )
    # the longer leg is trimmed at once (lifecycle-v9: in the opening step itself), the short-filling
    # venue not asked again
    assert any("trimmed in the same step" in e.what for e in st.events), [e.what for e in st.events]
    assert not any("topping up" in e.what for e in st.events)
    await h.signal("close", CloseRequest(reason="done"))
    assert (await h.result()).state == "closed"
    assert env.flat(sym)


async def test_unequal_partial_fills_are_evened_in_the_opening_step(env):
    """Both venues fill in part (0.5 and 0.9), one trim round allowed, max_gap 0.001: lifecycle-v9
    trims the longer leg and its rests inside the opening step, so the pair holds hedged to the lot
    (until v9 one trim round left a gap and the trade closed both: HEDGE_GAP; that branch has no
    test against the simulators since v9, see the README's open points)."""
    sym = next_symbol()
    env.sims["sim-a"].faults(partial_fill_ratio=0.5)
    env.sims["sim-b"].faults(partial_fill_ratio=0.9)
    h = await _open_with(env, sym, topup_attempts=0, trim_rounds=1, max_gap="0.001")
    st = await env.wait_state(h, "holding", "emergency_closing", "aborted", timeout=30)
    for s in env.sims.values():
        s.faults()
    assert st.state == "holding" and st.hedge_gap is not None and st.hedge_gap <= Decimal("0.001"), st
    assert env.sims["sim-a"].position_qty(sym) == -env.sims["sim-b"].position_qty(sym)
    await h.signal("close", CloseRequest(reason="done"))
    assert (await h.result()).state == "closed"
    assert env.flat(sym)


async def _open_with(env: Env, sym: str, **kw) -> WorkflowHandle:
    from messages.trade import HoldParams

    hold_kw = {k: kw.pop(k) for k in list(kw) if k in HoldParams.model_fields}
    overrides = dict(kw)
    if hold_kw:
        base = env.settings.trade
        overrides["hold"] = HoldParams(
            monitor_interval_s=base.monitor_interval_s, max_gap=base.max_gap, exit_spread_bps=base.exit_spread_bps,
            exit_checks=base.exit_checks, max_hold_s=base.max_hold_s,
            reduce_liq_distance=base.reduce_liq_distance, close_liq_distance=base.close_liq_distance,
        ).model_copy(update={k: Decimal(v) if isinstance(v, str) else v for k, v in hold_kw.items()})
    return await env.open(sym, **overrides)


async def test_dropped_responses_place_exactly_one_order_per_client_id(env):
    sym = next_symbol()
    for s in env.sims.values():
        s.faults(drop_responses=1)
    h = await env.open(sym)
    st = await env.wait_state(h, "holding")
    for s, leg in zip(env.sims.values(), st.legs, strict=True):
        orders = s.orders(leg.client_order_ids)
        counts = Counter(o["clientOrderId"] for o in orders)
        assert counts and all(c == 1 for c in counts.values()), counts
    await h.signal("close", CloseRequest(reason="done"))
    assert (await h.result()).state == "closed"
    assert env.flat(sym)


async def test_outage_during_close_stays_closing_then_flattens(env):
    sym = next_symbol()
    h = await env.open(sym)
    await env.wait_state(h, "holding")
    env.sims["sim-b"].faults(outage=True)
    await h.signal("close", CloseRequest(reason="close into an outage"))
    await asyncio.sleep(3)
    st = await env.status(h)
    assert st.state == "closing"
    # the close keeps retrying through the outage, and the leg stays open until it ends
    await wait_for(lambda: _close_attempts_at_least(env, h, 2), timeout=40, what="a second close attempt")
    assert (await env.status(h)).state == "closing"
    assert env.sims["sim-b"].position_qty(sym) != 0
    env.sims["sim-b"].faults()
    final = await h.result()
    assert final.state == "closed"
    assert env.flat(sym)


async def test_cancel_closes_both_legs_and_ends_canceled(env):
    sym = next_symbol()
    h = await env.open(sym)
    await env.wait_state(h, "holding")
    await h.cancel()  # what the Web UI and `temporal workflow cancel` do
    await wait_for(lambda: _is_status(h, WorkflowExecutionStatus.CANCELED), timeout=30, what="Canceled")
    assert env.flat(sym)


async def _close_attempts_at_least(env: Env, h: WorkflowHandle, n: int) -> bool:
    return (await env.status(h)).close_attempts >= n


async def _is_status(h: WorkflowHandle, status: WorkflowExecutionStatus) -> bool:
    return (await h.describe()).status == status


async def test_emergency_close_signal(env):
    sym = next_symbol()
    h = await env.open(sym)
    await env.wait_state(h, "holding")
    await h.signal("emergency_close", CloseRequest(reason="operator panic"))
    final = await h.result()
    assert final.state == "closed"
    assert "operator panic" in final.close_reason
    assert env.flat(sym)


async def test_leg_closed_behind_our_back_is_detected(env):
    sym = next_symbol()
    h = await env.open(sym)
    st = await env.wait_state(h, "holding")
    # someone closes the short leg by hand on the venue
    env.sims["sim-b"].market(sym, price="100")

    from venues.gateway import Gateway

    gw = Gateway(env.settings.venue("sim-b"))
    try:
        from venues.models import Side

        await gw.place_market_order(sym, Side.BUY, st.target_qty, "manualclose1", reduce_only=True)
    finally:
        await gw.close()
    final = await h.result()
    assert final.close_reason == "LEG_CHANGED"
    assert env.flat(sym)


async def test_bad_update_is_rejected_and_trade_untouched(env):
    sym = next_symbol()
    h = await env.open(sym)
    before = await env.wait_state(h, "holding")
    with pytest.raises(WorkflowUpdateFailedError):
        await h.execute_update("update_hold", HoldParamsPatch(max_gap=Decimal("2")))
    with pytest.raises(WorkflowUpdateFailedError):
        await h.execute_update("update_hold", HoldParamsPatch(monitor_interval_s=-1))
    after = await env.status(h)
    assert after.hold == before.hold
    good = await h.execute_update("update_hold", HoldParamsPatch(exit_checks=7), result_type=HoldParams)
    assert good.exit_checks == 7
    assert (await env.status(h)).hold.exit_checks == 7
    await h.signal("close", CloseRequest(reason="done"))
    await h.result()
    assert env.flat(sym)


async def test_second_trade_on_same_symbol_and_venue_is_refused(env):
    sym = next_symbol()
    h = await env.open(sym)
    await env.wait_state(h, "holding")
    with pytest.raises(TradeRefused, match="already has an open trade"):
        await env.open(sym)
    await h.signal("close", CloseRequest(reason="done"))
    await h.result()


async def test_long_hold_continues_as_new_with_bounded_history(env):
    sym = next_symbol()
    h = await env.open(sym, history_limit=150)
    await wait_for(lambda: _runs_at_least(env, h, 3), timeout=90, what="two continue-as-new")
    # the report lists the trade once, from its live run (its earlier runs' results would wait for it)
    from control.report import collect
    rows = await asyncio.wait_for(collect(env.client, env.settings.temporal.task_queue), timeout=20)
    mine = [r for r in rows if r.trade_id == h.id]
    assert len(mine) == 1 and mine[0].open, rows
    await h.signal("close", CloseRequest(reason="done"))
    final = await h.result()
    assert final.state == "closed" and final.runs >= 3
    assert env.flat(sym)
    # every finished run's history stays near the limit
    run_ids = []
    async for w in env.client.list_workflows(f"WorkflowId = '{h.id}'"):
        run_ids.append(w.run_id)
    assert len(run_ids) >= 3
    for run_id in run_ids:
        hist = await env.client.get_workflow_handle(h.id, run_id=run_id).fetch_history()
        assert len(hist.events) < 150 + 60, len(hist.events)


async def _runs_at_least(env: Env, h: WorkflowHandle, n: int) -> bool:
    st = await env.status(env.client.get_workflow_handle(h.id))
    return st.runs >= n


async def test_histories_replay_and_hold_no_secret(env, tmp_path):
    sym = next_symbol()
    h = await env.open(sym)
    await env.wait_state(h, "holding")
    await h.signal("close", CloseRequest(reason="done"))
    await h.result()
    history = await h.fetch_history()
    text = history.to_json()
    assert TEST_API_SECRET not in text
    assert "hf-test-key" not in text
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner(),
                        data_converter=env.client.data_converter)
    await replayer.replay_workflow(history)
    assert json.loads(text)["events"]
    if os.environ.get("HEDGEFLOW_RECORD_HISTORIES"):
        # add to the determinism guard (the file of the current lifecycle version; earlier ones stay)
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / "trade_open_hold_close_v3.json").write_text(text)


HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.name)
async def test_saved_histories_still_replay(path, temporal_env):
    """Histories recorded from earlier versions must replay on the current code: a change
    that breaks this needs `workflow.patched()` (or a new workflow type), not a new file."""
    from temporalio.client import WorkflowHistory

    client = await temporal_env.client()
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner(),
                        data_converter=client.data_converter)
    await replayer.replay_workflow(history)
