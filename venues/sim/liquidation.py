"""Liquidation of the simulated venue (pure accounting on an :class:`~venues.sim.engine.Engine`).

A position is liquidated when its mark crosses the liquidation price that positionRisk
reports (:meth:`Engine.liquidation_price`, Binance's USD-M formula):

- isolated: when isolatedWallet + uPnL <= maintenance margin of the position;
- cross: when cross wallet + cross uPnL <= maintenance margin of all cross positions; the
  cross position with the worst uPnL goes first, then the account is checked again.

The position is closed at the liquidation price by an order whose ``clientOrderId`` starts
with ``autoclose-`` (as Binance names its liquidation orders), the realized PnL is booked as
``REALIZED_PNL`` and the margin left over is charged as ``INSURANCE_CLEAR`` (all of the
isolated wallet; the maintenance margin of a cross position). Open orders of the symbol are
cancelled.
"""

from __future__ import annotations

from decimal import Decimal

from .engine import Engine
from .records import ZERO, Mutation, Order, Trade, q8

LIQUIDATION_PREFIX = "autoclose-"


def _due_isolated(e: Engine, marks: dict[str, Decimal]) -> list[str]:
    out = []
    for p in e.positions.values():
        if p.qty and e.is_isolated(p.symbol) and p.symbol in marks:
            m = marks[p.symbol]
            if p.iso_margin + p.qty * (m - p.entry) <= abs(p.qty) * m * e.mmr(p.symbol):
                out.append(p.symbol)
    return out


def _cross_due(e: Engine, marks: dict[str, Decimal]) -> str | None:
    cross = [p for p in e.positions.values() if p.qty and not e.is_isolated(p.symbol) and p.symbol in marks]
    if not cross:
        return None
    equity = e.cross_wallet() + sum((p.qty * (marks[p.symbol] - p.entry) for p in cross), ZERO)
    mm = sum((abs(p.qty) * marks[p.symbol] * e.mmr(p.symbol) for p in cross), ZERO)
    if equity > mm:
        return None
    return min(cross, key=lambda p: p.qty * (marks[p.symbol] - p.entry)).symbol


def liquidate_due(e: Engine, marks: dict[str, Decimal], now_ms: int) -> Mutation:
    """Liquidate every position whose mark has crossed its liquidation price."""
    mut = Mutation()
    for sym in _due_isolated(e, marks):
        mut.merge(_liquidate(e, sym, marks, now_ms))
    for _ in range(len(e.positions)):
        sym = _cross_due(e, marks)
        if sym is None:
            break
        mut.merge(_liquidate(e, sym, marks, now_ms))
    return mut


def _liquidate(e: Engine, sym: str, marks: dict[str, Decimal], now_ms: int) -> Mutation:
    mut = Mutation()
    p = e.positions[sym]
    spec = e.specs.get(sym)
    lp = e.liquidation_price(sym, marks)
    if lp <= 0:
        lp = marks[sym]
    if spec is not None:
        lp = spec.round_price(lp)
    for o in e.open_orders(sym):
        mut.merge(e.cancel(o, now_ms))
    qty, side = abs(p.qty), ("SELL" if p.qty > 0 else "BUY")
    isolated, iso_before = e.is_isolated(sym), p.iso_margin
    oid = e.reserve_order_id()
    order = Order(order_id=oid, client_order_id=f"{LIQUIDATION_PREFIX}{now_ms}", symbol=sym, side=side, type="LIMIT",
                  orig_qty=qty, price=lp, time_in_force="IOC", reduce_only=True, executed_qty=qty,
                  cum_quote=qty * lp, status="FILLED", time=now_ms, update_time=now_ms)
    realized = q8(e._apply_fill(sym, -p.qty, lp, now_ms))
    tid = e.next_trade_id
    e.next_trade_id += 1
    trade = Trade(tid, oid, sym, side, lp, qty, qty * lp, ZERO, realized, now_ms)
    e.trades.append(trade)
    e.wallet += realized
    if realized:
        mut.income.append(e._income(sym, "REALIZED_PNL", realized, now_ms, str(tid)))
    left = iso_before + realized if isolated else qty * lp * e.mmr(sym)
    left = q8(max(ZERO, min(left, e.cross_wallet() if not isolated else left)))
    if left:
        e.wallet -= left
        mut.income.append(e._income(sym, "INSURANCE_CLEAR", -left, now_ms, str(tid)))
    e.wallet_update_time = now_ms
    e.index_order(order)
    mut.orders.append(order)
    mut.trades.append(trade)
    mut.positions.append(p)
    mut.wallet = True
    return mut


def liquidation_view(e: Engine, unified) -> list[dict]:
    """The liquidations so far (for ``/_sim/state``): one entry per ``autoclose-`` order."""
    out = []
    for o in sorted(e.orders.values(), key=lambda o: o.order_id):
        if not o.client_order_id.startswith(LIQUIDATION_PREFIX):
            continue
        tids = {str(t.id) for t in e.trades if t.order_id == o.order_id}
        charged = sum((-i.income for i in e.income if i.income_type == "INSURANCE_CLEAR" and i.trade_id in tids), ZERO)
        out.append({"symbol": unified(o.symbol), "venue_symbol": o.symbol, "side": o.side, "qty": str(o.orig_qty),
                    "price": str(o.price), "orderId": o.order_id, "clientOrderId": o.client_order_id,
                    "insurance_clear": str(charged), "time": o.time})
    return out
