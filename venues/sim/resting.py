"""Resting orders of the simulated venue: the open LIMIT orders of :attr:`Engine.resting`
matched against the synthetic book on every tick of the price path (pure accounting, no I/O).

A resting BUY at ``p`` fills when the book's best ask is at or below ``p`` (a SELL: best bid at
or above ``p``), at its own limit price, as a maker (``maker_fee``). Per tick it gets at most what
the book shows at prices that reach it (the ask levels at or below ``p``; bid levels at or above
``p``): a thin book fills it in part over several ticks (PARTIALLY_FILLED, then FILLED). The
synthetic book is the rest of the market, so the liquidity a tick shows is shared: the orders of
one symbol take it in price-time priority (best price first, then the oldest), each level once.

A reduce-only resting order never opens or flips a position: its fill is capped at what is held
when it fills, and the rest expires (EXPIRED) once nothing is left to reduce, as Binance expires
a reduce-only order whose position is gone.
"""

from __future__ import annotations

from decimal import Decimal

from .engine import Engine
from .records import ZERO, Mutation, Order


def _reaches(o: Order, level_price: Decimal) -> bool:
    return level_price <= o.price if o.side == "BUY" else level_price >= o.price


def _held_against(e: Engine, o: Order) -> Decimal:
    """How much of the position ``o`` (reduce-only) may still close."""
    pos = e.position(o.symbol).qty
    return abs(pos) if pos and (pos > 0) != (o.side == "BUY") else ZERO


def _expire(e: Engine, o: Order, now_ms: int, mut: Mutation) -> None:
    o.status, o.update_time = "EXPIRED", now_ms
    e.unrest(o)
    mut.orders.append(o)


def match_resting(e: Engine, sym: str, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]],
                  now_ms: int) -> Mutation:
    """Fill the resting orders of ``sym`` that this tick's book (``bids`` / ``asks``, best first)
    crosses; return what changed (the caller persists it)."""
    mut = Mutation()
    book = e.resting.get(sym)
    if not book:
        return mut
    left = {"BUY": [[p, q] for p, q in asks], "SELL": [[p, q] for p, q in bids]}  # what each side may still take
    queue = sorted(book.values(), key=lambda o: (-o.price if o.side == "BUY" else o.price, o.order_id))
    for o in queue:
        levels = [lv for lv in left[o.side] if lv[1] > 0 and _reaches(o, lv[0])]
        if not levels:
            continue
        want = o.orig_qty - o.executed_qty
        if o.reduce_only:
            held = _held_against(e, o)
            if not held:
                _expire(e, o, now_ms, mut)
                continue
            want = min(want, held)
        take = min(want, sum((lv[1] for lv in levels), ZERO))
        rest = take
        for lv in levels:
            used = min(rest, lv[1])
            lv[1] -= used
            rest -= used
            if not rest:
                break
        e.fill(o, o.price, take, now_ms, mut, maker=True)
        o.update_time = now_ms
        if o.executed_qty >= o.orig_qty:
            o.status = "FILLED"
            e.unrest(o)
        elif o.reduce_only and not _held_against(e, o):
            o.status = "EXPIRED"  # the position is closed: the rest of a reduce-only order expires
            e.unrest(o)
        else:
            o.status = "PARTIALLY_FILLED"
        mut.orders.append(o)
    return mut
