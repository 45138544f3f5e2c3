"""Execution styles (issue 15): the pure arithmetic of how both legs go on and off.

``taker`` sends one market order per leg; ``maker_first`` quotes post-only on the *passive* leg
(the one whose venue charges the costlier taker fee) and hedges each maker fill at once with a
taker order on the *active* leg; ``sliced`` cuts the quantity into pieces, each on both legs
before the next. Which leg is passive, how the quantity is cut and which client ids each piece
uses are decided here, from the trade's inputs only: the workflow calls these, the activities
carry them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from domain.ids import client_order_id
from domain.rounding import round_down

LegName = Literal["long", "short"]
#: taker hedges one maker unit may send (one per maker fill; more fills than this → taker fallback)
HEDGES_PER_UNIT = 16
#: flattens of a passive fill the active venue could not hedge (each with a fresh id)
FLATTENS_PER_UNIT = 4


def passive_leg(long_taker_fee: Decimal, short_taker_fee: Decimal) -> LegName:
    """The leg that quotes post-only: the one whose venue's taker fee is costlier (ties: long)."""
    return "short" if short_taker_fee > long_taker_fee else "long"


def other(leg: LegName) -> LegName:
    return "short" if leg == "long" else "long"


def slice_quantities(qty: Decimal, n: int, step: Decimal, min_qty: Decimal) -> list[Decimal]:
    """``qty`` cut into at most ``n`` pieces on the ``step`` grid, each at least ``min_qty`` and
    at least one step, the pieces summing to ``qty`` exactly (the last takes the remainder).
    Fewer pieces when ``qty`` is too small for ``n``; one piece when it cannot be cut at all."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if qty <= 0:
        raise ValueError(f"qty must be positive, got {qty}")
    unit = max(step, min_qty)
    for k in range(n, 1, -1):
        piece = round_down(qty / k, step)
        if piece >= unit and qty - piece * (k - 1) >= unit:
            return [piece] * (k - 1) + [qty - piece * (k - 1)]
    return [qty]


@dataclass(frozen=True)
class MakerIds:
    """The client ids one maker-first unit may use, per leg, all deterministic.

    ``quotes``: the passive leg's post-only quotes, one per (re-)quote; ``passive_taker``: the
    passive leg's taker fallback for what the quotes did not fill; ``hedges``: the active leg's
    taker hedges, one per maker fill (and the fallback's match); ``flattens``: the passive leg's
    reduce-only flattens of fills the active venue could not hedge."""

    quotes: list[str] = field(default_factory=list)
    passive_taker: str = ""
    hedges: list[str] = field(default_factory=list)
    flattens: list[str] = field(default_factory=list)


def maker_ids(trade_id: str, passive: LegName, unit: int, requotes: int, *, closing: bool) -> MakerIds:
    """Ids of maker unit ``unit`` (0 for an unsliced entry, the slice number otherwise; < 100).
    Step names (≤ 8 characters): ``q<u>n<k>`` quotes, ``f<u>`` fallback, ``h<u>n<k>`` hedges,
    ``x<u>n<k>`` flattens; a close prefixes ``c``: ``cq3n0``. None of them is a step of the close
    loop (``c<n>``, ``c<n>r<k>``, ``s<n>``, ``s<n>r<k>``), of the opening (``o``, ``t<n>``, ``m<n>``,
    ``lf``…, ``b1``) or of a reduction (``r<n>``): tests/test_execution_domain.py checks it."""
    if not 0 <= unit < 100:
        raise ValueError(f"unit must be 0..99, got {unit}")
    if not 0 <= requotes <= 20:
        raise ValueError(f"requotes must be 0..20, got {requotes}")
    pre, active = ("c" if closing else ""), other(passive)
    return MakerIds(
        quotes=[client_order_id(trade_id, passive, f"{pre}q{unit}n{k}") for k in range(requotes + 1)],
        passive_taker=client_order_id(trade_id, passive, f"{pre}f{unit}"),
        hedges=[client_order_id(trade_id, active, f"{pre}h{unit}n{k}") for k in range(HEDGES_PER_UNIT)],
        flattens=[client_order_id(trade_id, passive, f"{pre}x{unit}n{k}") for k in range(FLATTENS_PER_UNIT)],
    )


def slice_step(unit: int) -> str:
    """The step name of a taker slice's opening order on each leg: ``p<u>`` (piece). Not ``s<u>``:
    that is the close round's follower match (``workflows/close_step.py``), and the same step on
    the same leg is the same client id (a chaos run executed one id twice that way)."""
    return f"p{unit}"


#: rounds of a sliced piece's evening trim (``even_steps``): a trim that fills short is trimmed again
EVEN_ROUNDS = 3


def even_steps(unit: int) -> list[str]:
    """Step names of the reduce-only trims that even a taker piece whose legs filled unequal
    amounts (a partial fill), before the next piece: ``e<u>``, then ``e<u>r<k>`` for a trim that
    filled short. None of them is a step of the close, the opening or a reduction (``m<n>`` is
    the opening's own trim; tests/test_execution_domain.py checks it)."""
    return [f"e{unit}", *(f"e{unit}r{k}" for k in range(1, EVEN_ROUNDS))]
