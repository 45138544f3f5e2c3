"""The execution styles' branches in the real TradeWorkflow (issue 15; ``workflows/execution.py``),
with the faked activities of ``tests/fake_venues.py`` (the maker unit itself is tested against two
real simulators in ``tests/test_maker_unit.py``): a maker-first entry and close, a sliced entry
and close, a venue that breaks mid-slices, an active venue that cannot hedge."""

from __future__ import annotations

from decimal import Decimal as D

from temporalio.client import WorkflowFailureError

from domain.ids import client_order_id
from messages.trade import CloseRequest
from tests.test_trade_branches import bench, flat_then_end  # noqa: F401 - the fixture
from workflows.trade import TradeWorkflow

FEES = {"fa": D("0.0005"), "fb": D("0.00055")}  # fb's taker is costlier: the short leg quotes


def ids_of(st, leg: str) -> list[str]:
    return next(x for x in st.legs if x.side == ("buy" if leg == "long" else "sell")).client_order_ids


async def test_maker_first_opens_by_quotes_hedged_by_taker_and_closes_the_same_way(bench):  # noqa: F811
    h = await bench.start(style="maker_first", taker_fees=FEES)
    st = await bench.until(h, lambda s: s.state == "holding")
    assert bench.fakes.v["fa"].position == -bench.fakes.v["fb"].position == st.target_qty > 0
    assert client_order_id(st.trade_id, "short", "q0n0") in ids_of(st, "short")  # the passive leg: fb
    assert client_order_id(st.trade_id, "long", "h0n0") in ids_of(st, "long")  # its hedge: fa
    assert client_order_id(st.trade_id, "long", "o") not in ids_of(st, "long")  # no taker opening pair
    await h.signal(TradeWorkflow.close, CloseRequest(reason="test"))
    st = await h.result()
    assert st.state == "closed" and bench.flat() and bench.executed_at_most_once()
    assert client_order_id(st.trade_id, "short", "cq0n0") in ids_of(st, "short")  # the close quoted too
    assert not any(c.startswith("hfLc1") for c in ids_of(st, "long"))  # and left the loop nothing


async def test_maker_first_whose_hedge_venue_refuses_flattens_the_quote_fill(bench):  # noqa: F811
    bench.fakes.v["fa"].refuse = True  # the active venue refuses every opening order
    h = await bench.start(style="maker_first", taker_fees=FEES)
    st = await h.result()
    assert st.state == "aborted" and bench.flat() and bench.executed_at_most_once()
    assert client_order_id(st.trade_id, "short", "x0n0") in ids_of(st, "short")
    assert any("could not hedge" in e.what for e in st.events)


async def test_sliced_opens_piece_by_piece_and_closes_in_slices(bench):  # noqa: F811
    h = await bench.start(style="sliced", slices=3, slice_interval_s=0.05)
    st = await bench.until(h, lambda s: s.state == "holding")
    for n in range(3):
        assert client_order_id(st.trade_id, "long", f"p{n}") in ids_of(st, "long")
    assert bench.fakes.v["fa"].position == -bench.fakes.v["fb"].position == st.target_qty
    before = len(bench.fakes.v["fa"].orders)
    await h.signal(TradeWorkflow.close, CloseRequest(reason="test"))
    st = await h.result()
    assert st.state == "closed" and bench.flat() and bench.executed_at_most_once()
    assert len(bench.fakes.v["fa"].orders) - before >= 3  # closed in pieces, not in one order


async def test_a_venue_down_mid_slices_flattens_the_lone_piece_and_closes_the_rest_hedged(bench):  # noqa: F811
    fb = bench.fakes.v["fb"]
    h = await bench.start(style="sliced", slices=4, slice_interval_s=0.3)
    await bench.until(h, lambda s: client_order_id(s.trade_id, "long", "p0") in ids_of(s, "long")
                      and bench.fakes.v["fa"].position > 0)
    fb.refuse, fb.down_after_answer = True, True  # the next piece is refused, then fb goes down
    await bench.until(h, lambda s: s.state == "emergency_closing", timeout=10)
    await bench.until(h, lambda s: any("failed" in e.what and "piece" in e.what for e in s.events))
    # the pieces that went on stay hedged while fb is down (the lone piece was flattened in its step)
    assert bench.fakes.v["fa"].position == -fb.position != 0
    fb.down, fb.refuse = False, False
    await flat_then_end(bench, h)
    assert bench.flat() and bench.executed_at_most_once()


async def test_a_sliced_piece_filled_in_part_is_evened_before_the_next_piece(bench):  # noqa: F811
    """fb fills 70 % of every opening order: each taker piece leaves its long leg (fa) ahead. Before,
    the gap stayed open (naked) through every pause and the next pieces until the entry's own trim
    after the last one (4.6-7.5 s in a chaos run); now each piece's longer leg is trimmed at once
    (``e<u>``), before the next piece goes out."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    fb.partial = D("0.7")
    h = await bench.start(style="sliced", slices=3, slice_interval_s=0.3)
    st = await bench.until(h, lambda s: client_order_id(s.trade_id, "long", "p1") in ids_of(s, "long"))
    assert client_order_id(st.trade_id, "long", "e0") in ids_of(st, "long")  # piece 1 evened before piece 2
    assert ids_of(st, "long").index(client_order_id(st.trade_id, "long", "e0")) < \
        ids_of(st, "long").index(client_order_id(st.trade_id, "long", "p1"))
    st = await bench.until(h, lambda s: s.state == "holding")
    assert fa.position == -fb.position > 0
    await h.signal(TradeWorkflow.close, CloseRequest(reason="test"))
    st = await h.result()
    assert st.state == "closed" and bench.flat() and bench.executed_at_most_once()


async def test_a_piece_filled_in_part_when_a_cancel_arrives_is_evened_before_the_close(bench):  # noqa: F811
    """The cancel lands while the first piece is being placed (fa answers slowly) and fb fills 70 %:
    the piece is booked, then evened (``e0``) before the close begins (in a chaos run the close's
    first round came 2.1 s later: the gap stayed naked until then)."""
    fa, fb = bench.fakes.v["fa"], bench.fakes.v["fb"]
    fb.partial, fa.slow_s = D("0.7"), 1.0
    h = await bench.start(style="sliced", slices=3, slice_interval_s=0.3)
    await bench.until(h, lambda s: any("sliced entry" in e.what for e in s.events))
    await h.cancel()
    try:  # it ends Canceled once closed (or Completed when the close absorbed the cancel)
        await h.result()
    except WorkflowFailureError:
        pass
    st = await h.query(TradeWorkflow.status)
    assert bench.flat() and bench.executed_at_most_once()
    long_ids = ids_of(st, "long")
    assert client_order_id(st.trade_id, "long", "e0") in long_ids
    assert client_order_id(st.trade_id, "long", "p1") not in long_ids
    whats = [e.what for e in st.events]
    trim = next(i for i, w in enumerate(whats) if "trimming it to match" in w)
    assert trim < next(i for i, w in enumerate(whats) if "closing" in w and "style" in w)
