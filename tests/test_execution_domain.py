"""The execution styles' pure arithmetic (domain/execution.py)."""

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.execution import even_steps, maker_ids, passive_leg, slice_quantities, slice_step
from domain.ids import client_order_id, is_valid_client_order_id


def test_passive_leg_is_the_costlier_taker():
    assert passive_leg(D("0.0005"), D("0.00055")) == "short"
    assert passive_leg(D("0.0006"), D("0.0005")) == "long"
    assert passive_leg(D("0.0005"), D("0.0005")) == "long"


@given(qty_steps=st.integers(1, 100_000), n=st.integers(1, 20), min_steps=st.integers(1, 50))
def test_slices_sum_exactly_and_respect_the_minimum(qty_steps, n, min_steps):
    step = D("0.001")
    qty, min_qty = step * qty_steps, step * min_steps
    pieces = slice_quantities(qty, n, step, min_qty)
    assert sum(pieces) == qty
    assert 1 <= len(pieces) <= n
    assert all(p % step == 0 for p in pieces)
    if len(pieces) > 1:
        assert all(p >= min_qty for p in pieces)
    if qty >= min_qty * n:  # room for all n pieces: none is dropped
        assert len(pieces) == n


def test_slices_examples():
    assert slice_quantities(D("1.000"), 4, D("0.001"), D("0.001")) == [D("0.250")] * 4
    assert slice_quantities(D("1.001"), 4, D("0.001"), D("0.001")) == [D("0.250")] * 3 + [D("0.251")]
    assert slice_quantities(D("0.003"), 4, D("0.001"), D("0.002")) == [D("0.003")]
    with pytest.raises(ValueError):
        slice_quantities(D("1"), 0, D("0.001"), D("0.001"))


def test_maker_ids_are_valid_distinct_and_deterministic():
    a = maker_ids("trade-x", "short", 3, 20, closing=False)
    b = maker_ids("trade-x", "short", 3, 20, closing=True)
    every = [*a.quotes, a.passive_taker, *a.hedges, *a.flattens, *b.quotes, b.passive_taker, *b.hedges, *b.flattens]
    assert all(is_valid_client_order_id(i) for i in every)
    assert len(set(every)) == len(every)
    assert maker_ids("trade-x", "short", 3, 20, closing=False) == a
    assert a.quotes[0].startswith("hfS") and a.hedges[0].startswith("hfL")
    with pytest.raises(ValueError):
        maker_ids("trade-x", "short", 100, 2, closing=False)


def test_no_style_id_is_an_id_of_the_close_the_opening_or_a_reduction():
    """The same step on the same leg is the same client id: a sliced opening piece once shared the
    close round's follower match ``s<n>`` and one id executed twice in a chaos run."""
    n = range(25)
    steps = {"o", "lf", "b1", *(f"lfr{k}" for k in (1, 2, 3))}
    for i in n:
        steps |= {f"c{i}", f"s{i}", f"t{i}", f"m{i}", f"r{i}"} | {f"c{i}r{k}" for k in n} | {f"s{i}r{k}" for k in n}
    lifecycle = {client_order_id("t", leg, st) for leg in ("long", "short") for st in steps}
    styles = set()
    for u in range(20):
        piece = [slice_step(u), f"lf{slice_step(u)}", f"b{slice_step(u)}", *(f"lf{slice_step(u)}r{k}" for k in (1, 2, 3)),
                 *even_steps(u)]
        styles |= {client_order_id("t", leg, st) for leg in ("long", "short") for st in piece}
        for closing in (False, True):
            for leg in ("long", "short"):
                ids = maker_ids("t", leg, u, 20, closing=closing)
                styles |= {*ids.quotes, ids.passive_taker, *ids.hedges, *ids.flattens}
    assert not lifecycle & styles
