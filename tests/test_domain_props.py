"""Property tests for the pure quantity and id arithmetic (domain/rounding.py, domain/ids.py)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.ids import MAX_LEN, client_order_id, is_valid_client_order_id
from domain.rounding import (
    base_to_contracts,
    below_minimum,
    common_step,
    contracts_to_base,
    round_down,
    round_up,
)

# Steps as venues publish them: 1, 5, 25 … × 10^-k.
steps = st.builds(
    lambda mant, exp: Decimal(mant).scaleb(-exp),
    st.sampled_from([1, 2, 5, 10, 25, 50, 100]),
    st.integers(min_value=0, max_value=8),
)
qtys = st.decimals(min_value=0, max_value=Decimal(10) ** 7, places=10, allow_nan=False, allow_infinity=False)
sizes = st.builds(
    lambda mant, exp: Decimal(mant).scaleb(-exp),
    st.sampled_from([1, 10, 100, 1000]),
    st.integers(min_value=0, max_value=4),
)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


@given(qtys, steps)
def test_round_down_is_the_largest_multiple_not_above(qty: Decimal, step: Decimal) -> None:
    r = round_down(qty, step)
    assert is_multiple(r, step)
    assert 0 <= r <= qty
    assert qty - r < step


@given(qtys, steps)
def test_round_down_is_idempotent(qty: Decimal, step: Decimal) -> None:
    r = round_down(qty, step)
    assert round_down(r, step) == r


@given(qtys, steps)
def test_round_up_is_the_smallest_multiple_not_below(qty: Decimal, step: Decimal) -> None:
    r = round_up(qty, step)
    assert is_multiple(r, step)
    assert qty <= r < qty + step
    assert round_up(r, step) == r and (r == round_down(qty, step)) == is_multiple(qty, step)


@given(steps, steps)
def test_common_step_is_a_multiple_of_both(a: Decimal, b: Decimal) -> None:
    c = common_step(a, b)
    assert is_multiple(c, a) and is_multiple(c, b)
    assert c >= max(a, b)
    assert common_step(b, a) == c


@given(steps, st.integers(min_value=1, max_value=1000))
def test_common_step_is_the_coarser_when_one_divides_the_other(a: Decimal, k: int) -> None:
    coarse = a * k
    assert common_step(a, coarse) == coarse
    assert common_step(coarse, a) == coarse


@given(steps, steps, qtys)
def test_rounding_to_common_step_suits_both_venues(a: Decimal, b: Decimal, qty: Decimal) -> None:
    r = round_down(qty, common_step(a, b))
    assert round_down(r, a) == r and round_down(r, b) == r


@given(qtys, sizes)
def test_contracts_round_trip(base: Decimal, size: Decimal) -> None:
    assert contracts_to_base(base_to_contracts(base, size), size) == base


@given(st.integers(min_value=0, max_value=10**9), sizes)
def test_whole_contracts_round_trip(n: int, size: Decimal) -> None:
    contracts = Decimal(n)
    assert base_to_contracts(contracts_to_base(contracts, size), size) == contracts


@given(qtys, st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10) ** 6, places=2), steps,
       st.decimals(min_value=0, max_value=1000, places=2))
def test_below_minimum_agrees_with_its_inputs(qty: Decimal, price: Decimal, min_qty: Decimal,
                                              min_notional: Decimal) -> None:
    reason = below_minimum(qty, price, min_qty, min_notional)
    ok = qty > 0 and qty >= min_qty and qty * price >= min_notional
    assert (reason is None) == ok


def test_rounding_refuses_floats_and_bad_steps() -> None:
    with pytest.raises(TypeError):
        round_down(0.3, Decimal("0.1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        round_down(Decimal(1), Decimal(0))
    with pytest.raises(ValueError):
        round_down(Decimal(-1), Decimal("0.1"))
    with pytest.raises(ValueError):
        common_step(Decimal(0), Decimal(1))


# --- client order ids ---------------------------------------------------------------------
trade_ids = st.text(min_size=1, max_size=64)
legs = st.sampled_from(["long", "short"])
step_names = st.from_regex(r"\A[A-Za-z0-9]{1,8}\Z")
ALNUM = re.compile(r"\A[A-Za-z0-9]{1,32}\Z")


@given(trade_ids, legs, step_names)
def test_id_shape(trade_id: str, leg: str, step: str) -> None:
    cid = client_order_id(trade_id, leg, step)
    assert len(cid) <= MAX_LEN
    assert ALNUM.match(cid)
    assert is_valid_client_order_id(cid)


@given(trade_ids, legs, step_names)
def test_id_is_deterministic(trade_id: str, leg: str, step: str) -> None:
    assert client_order_id(trade_id, leg, step) == client_order_id(trade_id, leg, step)


@settings(max_examples=50)
@given(st.lists(st.tuples(trade_ids, legs, step_names), min_size=2, max_size=60, unique=True))
def test_distinct_inputs_give_distinct_ids(keys: list[tuple[str, str, str]]) -> None:
    ids = [client_order_id(*k) for k in keys]
    assert len(set(ids)) == len(ids)


@given(
    st.one_of(
        st.tuples(st.just(""), legs, step_names),
        st.tuples(trade_ids, st.text().filter(lambda s: s not in ("long", "short")), step_names),
        st.tuples(trade_ids, legs, st.text().filter(lambda s: not re.fullmatch(r"[A-Za-z0-9]{1,8}", s))),
    )
)
def test_invalid_inputs_raise(args: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError):
        client_order_id(*args)


@pytest.mark.parametrize("step", ["o\n", "", "toolong12", "a-b", "é"])
def test_invalid_steps_raise(step: str) -> None:
    with pytest.raises(ValueError):
        client_order_id("trade-1", "long", step)


def test_validator_rejects_trailing_newline() -> None:
    assert not is_valid_client_order_id("abc\n")
    assert not is_valid_client_order_id("a" * 33)
    assert is_valid_client_order_id("a" * 32)
