"""Replay report arithmetic: totals of finished trades and the hindsight upper bound. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True)
class TradeOutcome:
    trade_id: str
    symbol: str
    long_venue: str
    short_venue: str
    state: str
    funding_usd: Decimal
    fees_usd: Decimal
    price_pnl_usd: Decimal  # both legs' price PnL: slippage, spread and basis moves
    net_usd: Decimal  # realised PnL (funding − fees + price PnL)


@dataclass(frozen=True)
class Totals:
    trades: int
    funding_usd: Decimal
    fees_usd: Decimal
    slippage_usd: Decimal  # cost, >= 0 when slippage lost money (−price PnL)
    net_usd: Decimal


def totals(rows: list[TradeOutcome]) -> Totals:
    return Totals(
        trades=len(rows),
        funding_usd=sum((r.funding_usd for r in rows), ZERO),
        fees_usd=sum((r.fees_usd for r in rows), ZERO),
        slippage_usd=-sum((r.price_pnl_usd for r in rows), ZERO),
        net_usd=sum((r.net_usd for r in rows), ZERO),
    )


@dataclass(frozen=True)
class RateRow:
    t_ms: int
    venue: str
    symbol: str
    rate: Decimal


def hindsight_upper_bound(
    rows: list[RateRow], notional_usd: Decimal, max_trades: int, start_ms: int | None = None,
    end_ms: int | None = None,
) -> Decimal:
    """Best possible funding with perfect hindsight and no costs: at every settlement time, for
    each symbol the best pair (short the highest rate settled then, long the lowest), summed
    over the ``max_trades`` best symbols, times the notional."""
    by_t: dict[int, dict[str, list[Decimal]]] = {}
    for r in rows:
        if (start_ms is not None and r.t_ms < start_ms) or (end_ms is not None and r.t_ms > end_ms):
            continue
        by_t.setdefault(r.t_ms, {}).setdefault(r.symbol, []).append(r.rate)
    total = ZERO
    for syms in by_t.values():
        best = sorted((max(rs) - min(rs) for rs in syms.values() if len(rs) >= 2), reverse=True)
        total += sum(best[:max_trades], ZERO)
    return total * notional_usd
