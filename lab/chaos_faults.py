"""The seeded fault plan of one chaos batch (pure: drawn from the run's ``random.Random``).

Per venue (p = 0.65) one order-path fault: ``errors`` (error_rate), ``timeouts`` (latency above
the client's timeout: executed after the client gave up), ``drops`` (executed, answered 5xx),
``partial`` fills, ``reject``, a short ``outage``, ``late`` (execute_late_ms, sometimes with a
dropped answer), ``lookups`` (lookup_errors). Per batch: a symbol SETTLING on one venue for a
while then TRADING again (p = 0.5), a funding interval change of a symbol on one venue
(p = 0.5), a price pinned a little away on one venue (p = 0.3) and a coarser qty step on one
venue for a symbol before its trade opens (p = 0.2). Per run: one partition (outage of one venue
for ``partition_s``), one dev-server restart; per batch a worker SIGKILL + restart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("errors", "timeouts", "drops", "partial", "reject", "outage", "late", "lookups")
# every fault but the outage, at its neutral value: clears a venue and keeps a partition going
RESET: dict[str, Any] = {"latency_ms": 0, "error_rate": 0.0, "reject_orders": 0, "partial_fill_ratio": None,
                         "drop_responses": 0, "execute_late_ms": 0, "lookup_errors": 0, "symbol_status": {}}


def fault_for(kind: str, rng: random.Random, timeout_ms: int) -> dict[str, Any]:
    if kind == "errors":
        return {"error_rate": rng.choice([0.2, 0.3, 0.5])}
    if kind == "timeouts":
        return {"latency_ms": timeout_ms + rng.choice([300, 800])}
    if kind == "drops":
        return {"drop_responses": rng.randint(1, 3)}
    if kind == "partial":
        return {"partial_fill_ratio": rng.choice([0.5, 0.7, 0.9])}
    if kind == "reject":
        return {"reject_orders": 1}
    if kind == "outage":
        return {"outage": True}
    if kind == "late":
        f: dict[str, Any] = {"execute_late_ms": rng.choice([300, 1000, 2500])}
        if rng.random() < 0.4:
            f["drop_responses"] = 1
        return f
    if kind == "lookups":
        return {"lookup_errors": rng.randint(1, 4)}
    raise ValueError(kind)


def parse_range(text: str) -> tuple[float, float]:
    """``"30-120"`` → (30, 120); ``"5"`` → (5, 5)."""
    lo, _, hi = str(text).partition("-")
    a, b = float(lo), float(hi or lo)
    if a <= 0 or b < a:
        raise ValueError(f"bad range {text!r}: expected LO-HI seconds, 0 < LO <= HI")
    return a, b


@dataclass
class Timed:
    at_s: float  # since the batch started
    venue: str
    body: dict[str, Any]
    what: str
    until_s: float | None = None  # then ``undo`` is posted
    undo: dict[str, Any] | None = None
    market: bool = False  # POST /_sim/market instead of /_sim/faults


@dataclass
class BatchPlan:
    venue_faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    short_outages: dict[str, float] = field(default_factory=dict)  # venue → seconds
    timed: list[Timed] = field(default_factory=list)
    pre_open: list[Timed] = field(default_factory=list)  # market changes before the trades open
    partition: Timed | None = None


def plan_batch(rng: random.Random, venues: list[str], symbols: list[str], timeout_ms: int,
               partition: tuple[float, float] | None) -> BatchPlan:
    plan = BatchPlan()
    for v in venues:
        if rng.random() < 0.65:
            kind = rng.choice(FAULT_KINDS)
            plan.venue_faults[v] = fault_for(kind, rng, timeout_ms)
            if kind == "outage":
                plan.short_outages[v] = rng.uniform(1.0, 3.0)
    if not symbols:
        return plan
    if rng.random() < 0.5:
        sym, v = rng.choice(symbols), rng.choice(venues)
        at = rng.uniform(0.2, 4.0)
        plan.timed.append(Timed(at, v, {"symbol_status": {sym: "SETTLING"}}, f"{sym} SETTLING",
                                at + rng.uniform(1.0, 4.0), {"symbol_status": {}}))
    if rng.random() < 0.5:
        sym, v = rng.choice(symbols), rng.choice(venues)
        hours = rng.choice([1 / 720, 1 / 360, 1 / 180, 1.0, 4.0])
        at = rng.uniform(0.5, 5.0)
        plan.timed.append(Timed(at, v, {"symbol": sym, "funding_interval_hours": round(hours, 8)},
                                f"{sym} funding interval {hours * 3600:g}s", None,
                                {"symbol": sym, "funding_interval_hours": None}, market=True))
    if rng.random() < 0.3:
        sym, v = rng.choice(symbols), rng.choice(venues)
        at = rng.uniform(0.5, 5.0)
        plan.timed.append(Timed(at, v, {"symbol": sym, "price": None, "_move": rng.choice([-0.02, 0.01, 0.02])},
                                f"{sym} price moved", at + rng.uniform(1.0, 4.0), {"symbol": sym, "price": None},
                                market=True))
    if rng.random() < 0.2:
        sym, v = rng.choice(symbols), rng.choice(venues)
        plan.pre_open.append(Timed(0, v, {"symbol": sym, "_step_x": 10}, f"{sym} qty step ×10", market=True))
    if partition is not None:
        at = rng.uniform(0.5, 3.0)
        plan.partition = Timed(at, rng.choice(venues), {"outage": True}, "partition",
                               at + rng.uniform(*partition), {"outage": False})
    return plan
