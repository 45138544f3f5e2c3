"""Replay report arithmetic: totals of finished trades and the hindsight upper bound. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

ZERO = Decimal(0)
EIGHT_H_MS = 8 * 3_600_000


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
    net_usd: Decimal  # realised PnL (funding − fees + price PnL); an open trade's so far, marked
    open: bool = False  # still trading: its figures so far, price PnL marked to the venues' marks


def open_outcome(trade_id: str, symbol: str, long_venue: str, short_venue: str, state: str, funding_usd: Decimal,
                 leg_fees: list[Decimal], leg_unrealized: list[Decimal | None]) -> TradeOutcome:
    """A trade still open: the fees its fills paid so far (the opening ones at least), the funding
    collected so far, and as price PnL what the venues mark its positions at (``unrealized_pnl``:
    quantity × (mark − entry price), so it holds the opening slippage and the basis moved since)."""
    fees = sum(leg_fees, ZERO)
    price = sum((u for u in leg_unrealized if u is not None), ZERO)
    return TradeOutcome(trade_id, symbol, long_venue, short_venue, state, funding_usd, fees, price,
                        funding_usd - fees + price, open=True)


@dataclass(frozen=True)
class Totals:
    trades: int
    funding_usd: Decimal
    fees_usd: Decimal
    slippage_usd: Decimal  # cost, >= 0 when slippage lost money (−price PnL)
    net_usd: Decimal
    open_trades: int = 0  # of ``trades``, still open (their figures so far, marked)


def totals(rows: list[TradeOutcome]) -> Totals:
    return Totals(
        trades=len(rows),
        funding_usd=sum((r.funding_usd for r in rows), ZERO),
        fees_usd=sum((r.fees_usd for r in rows), ZERO),
        slippage_usd=-sum((r.price_pnl_usd for r in rows), ZERO),
        net_usd=sum((r.net_usd for r in rows), ZERO),
        open_trades=sum(1 for r in rows if r.open),
    )


@dataclass(frozen=True)
class RateRow:
    t_ms: int
    venue: str
    symbol: str
    rate: Decimal


def hindsight_bound_curve(
    rows: list[RateRow], notional_usd: Decimal, max_trades: int, start_ms: int | None = None,
    end_ms: int | None = None,
) -> list[tuple[int, Decimal]]:
    """The hindsight upper bound accrued over time: ``[(t_ms, cumulative USD), ...]``.

    Each settlement pays for the period since its venue's previous one (the first: the spacing
    to the next), so its rate accrues per hour over that period: an hourly venue's rate over
    each hour, an 8-hourly one's over its 8 hours. At every instant, for each symbol, the best
    pair is short the venue accruing most and long the one accruing least (no costs, perfect
    hindsight, free switching); summed over the ``max_trades`` best symbols, times the notional.
    Venues with the same interval give the sum of the best same-instant pairs; with mixed
    intervals the pairs are taken over common time. Only settlements within
    ``[start_ms, end_ms]`` count; intervals are read from the whole series."""
    series: dict[tuple[str, str], dict[int, Decimal]] = {}
    for r in rows:
        series.setdefault((r.venue, r.symbol), {})[r.t_ms] = r.rate
    events: list[tuple[int, int, str, str, Fraction | None]] = []  # (t, 0 end / 1 start, symbol, venue, per ms)
    for (venue, symbol), by_t in series.items():
        ts = sorted(by_t)
        for i, t in enumerate(ts):
            if (start_ms is not None and t < start_ms) or (end_ms is not None and t > end_ms):
                continue
            iv = (t - ts[i - 1] if i > 0 else ts[1] - ts[0]) if len(ts) > 1 else EIGHT_H_MS
            events.append((t - iv, 1, symbol, venue, Fraction(by_t[t]) / iv))
            events.append((t, 0, symbol, venue, None))
    events.sort(key=lambda e: (e[0], e[1]))
    active: dict[str, dict[str, Fraction]] = {}
    total, out, prev = Fraction(0), [], None
    k = 0
    while k < len(events):
        t = events[k][0]
        if prev is not None and t > prev:
            spreads = sorted((max(v.values()) - min(v.values()) for v in active.values() if len(v) >= 2),
                             reverse=True)
            total += sum(spreads[:max_trades], Fraction(0)) * (t - prev)
            out.append((t, total))
        while k < len(events) and events[k][0] == t:
            _, kind, symbol, venue, per_ms = events[k]
            legs = active.setdefault(symbol, {})
            if kind == 1:
                legs[venue] = per_ms  # type: ignore[assignment]
            else:
                legs.pop(venue, None)
            k += 1
        prev = t
    n = Fraction(notional_usd)
    return [(t, Decimal((v * n).numerator) / Decimal((v * n).denominator)) for t, v in out]


def hindsight_upper_bound(
    rows: list[RateRow], notional_usd: Decimal, max_trades: int, start_ms: int | None = None,
    end_ms: int | None = None,
) -> Decimal:
    """Best possible funding with perfect hindsight and no costs (:func:`hindsight_bound_curve`,
    its last value)."""
    curve = hindsight_bound_curve(rows, notional_usd, max_trades, start_ms, end_ms)
    return curve[-1][1] if curve else ZERO
