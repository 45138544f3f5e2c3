"""Payloads of the execution styles' activity (issue 15; the arithmetic is ``domain/execution.py``).

One *maker unit*: post-only quotes on the passive leg, each maker fill hedged at once by a taker
order on the active leg, re-quoted up to ``len(ids.quotes) - 1`` times within ``window_s``, then
the rest taker on both legs; the unhedged quantity is capped in notional and time.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field

from venues.models import OrderResult, Side


class MakerUnitRequest(BaseModel):
    symbol: str
    qty: Decimal = Field(gt=0)  # the unit's quantity, the same on both legs (on the common step)
    step: Decimal  # the common quantity step of both venues: hedges are multiples of it
    min_qty: Decimal  # the larger of both venues' minimum quantities
    reduce_only: bool = False  # a close: both legs' orders reduce-only
    passive_venue: str
    passive_side: Side
    active_venue: str
    active_side: Side
    quote_ids: list[str]  # one per (re-)quote, in order
    passive_taker_id: str  # the passive leg's taker fallback
    hedge_ids: list[str]  # the active leg's taker hedges, in order
    flatten_ids: list[str]  # the passive leg's reduce-only flattens when the active venue cannot hedge
    window_s: float = Field(gt=0)  # quoting stops after this long; the rest goes taker
    cap_usd: Decimal = Field(gt=0)  # unhedged notional above this: the lagging leg goes taker at once
    cap_s: float = Field(gt=0)  # a fill unhedged longer than this: the lagging leg goes taker at once
    ref_price: Decimal | None = None  # the last mark known to the workflow (notional checks)


class MakerUnitOutcome(BaseModel):
    passive: list[OrderResult] = Field(default_factory=list)  # every passive order's final state, in order sent
    active: list[OrderResult] = Field(default_factory=list)  # every hedge's final state, in order sent
    sent_ids: list[str] = Field(default_factory=list)  # every id sent or possibly sent (unknown ones: looked up)
    maker_qty: Decimal = Decimal(0)  # filled as maker on the passive leg
    unhedged_max_s: float = 0.0  # longest a fill waited for its hedge (wall seconds)
    unhedged_max_usd: Decimal = Decimal(0)  # most notional unhedged at any moment
    cap_fired: bool = False  # the cap sent the lagging leg taker
    fell_back: bool = False  # the window (or the quotes) ran out: the rest went taker
    active_failed: str | None = None  # the active venue could not trade: what it said (passive fills flattened)
