"""The backtest's figures: per-trade rows and totals under the CONTRACT's JSON names, Sharpe and
drawdown of the equity curve. Pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from domain.backtest import DAY_MS, BacktestResult
from domain.backtest_model import ZERO, BtTrade, Series

CENT = Decimal("0.01")


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def money(d: Decimal) -> float:
    return float(d.quantize(CENT))


def daily_pnl(t_ms: list[int], equity: list[Decimal]) -> list[Decimal]:
    """Equity change per UTC day (the last point of each day against the day before's)."""
    closes: dict[int, Decimal] = {}
    for t, e in zip(t_ms, equity, strict=True):
        closes[t // DAY_MS] = e
    if not closes:
        return []
    days = sorted(closes)
    out, prev, last = [], ZERO, ZERO
    for d in range(days[0], days[-1] + 1):
        last = closes.get(d, last)
        out.append(last - prev)
        prev = last
    return out


def sharpe(daily: list[Decimal]) -> float:
    """Annualised Sharpe of the daily PnL (mean / sample std × √365); 0 with no variation."""
    if len(daily) < 2:
        return 0.0
    xs = [float(x) for x in daily]
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return 0.0 if var <= 0 else mean / math.sqrt(var) * math.sqrt(365)


def max_drawdown(equity: list[Decimal]) -> Decimal:
    """Largest fall of the equity from a previous peak (USD, >= 0); the curve starts at 0."""
    peak, worst = ZERO, ZERO
    for e in equity:
        peak = max(peak, e)
        worst = max(worst, peak - e)
    return worst


def trade_row(t: BtTrade, marks: tuple[Decimal, Decimal] | None = None) -> dict[str, Any]:
    """One trade under the CONTRACT's names (``closed_at`` null while open; an open trade's net
    is marked at ``marks``, without closing costs)."""
    net = t.net(*marks) if marks is not None and t.closed_ms is None else t.net()
    basis = net - t.funding_usd + t.fees_usd + t.slippage_usd
    return {
        "symbol": t.symbol, "long_venue": t.long_venue, "short_venue": t.short_venue,
        "opened_at": iso(t.opened_ms), "closed_at": iso(t.closed_ms), "qty": str(t.qty),
        "notional_usd": money(t.notional_usd), "funding_usd": money(t.funding_usd), "fees_usd": money(t.fees_usd),
        "slippage_usd": money(t.slippage_usd), "basis_usd": money(basis), "net_usd": money(net),
        "exit_reason": t.exit_reason, "entry_edge": float(t.entry_edge_bps.quantize(Decimal("0.0001"))),
        "settlements": len(t.settlements), "reductions": t.reductions,
    }


def summarise(res: BacktestResult, series: dict[tuple[str, str], Series], bound_usd: Decimal,
              wall_s: float) -> dict[str, Any]:
    """The backtest's JSON (``../shared/CONTRACT.md``: ``trades``, ``totals``,
    ``hindsight_bound_usd``, ``wall_s``; more keys beside them)."""
    rows, nets = [], []
    funding = fees = slip = ZERO
    for t in res.trades:
        marks = res.marks(series, t) if t.closed_ms is None else None
        row = trade_row(t, marks)
        rows.append(row)
        nets.append(t.net(*marks) if marks else t.net())
        funding, fees, slip = funding + t.funding_usd, fees + t.fees_usd, slip + t.slippage_usd
    net = sum(nets, ZERO)
    closed = [n for t, n in zip(res.trades, nets, strict=True) if t.closed_ms is not None]
    c = res.curve
    totals = {
        "trades": len(rows), "open_trades": sum(1 for t in res.trades if t.closed_ms is None),
        "funding_usd": money(funding), "fees_usd": money(fees), "slippage_usd": money(slip),
        "basis_usd": money(net - funding + fees + slip), "net_usd": money(net),
        "win_rate": round(sum(1 for n in closed if n > 0) / len(closed), 4) if closed else None,
        "sharpe": round(sharpe(daily_pnl(c.t_ms, c.equity)), 3),
        "max_drawdown_usd": money(max_drawdown(c.equity)), "capital_used_usd": money(res.peak_margin_usd),
    }
    return {
        "period": {"from": iso(res.start_ms), "to": iso(res.end_ms)},
        "trades": rows, "totals": totals, "hindsight_bound_usd": money(bound_usd),
        "net_over_bound": round(float(net / bound_usd), 4) if bound_usd > 0 else None,
        "cycles": res.cycles, "refusals": res.refusals, "wall_s": round(wall_s, 3),
    }
