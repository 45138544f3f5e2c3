"""The edge of a funding-rate pair: what it earns over a horizon and what it costs. Pure.

All money and rates are ``Decimal``; no I/O and no clock (``now_ms`` is an argument).

* Each venue's rate is normalised per hour by *its own* settlement interval, so an 8-hourly
  venue and an hourly one compare per hour, not per settlement.
* Expected funding over the horizon counts the settlements that actually fall inside it on
  each venue: a position opened just after a settlement waits a full interval for the next.
  The current rate is the estimate for every settlement in the horizon.
* Worst-case costs: taker fee on open *and* close of both legs, slippage from walking each
  book for the notional (measured from the mid, so it includes half the spread) on the side
  we hit to open and the side we hit to close, and a safety buffer.

Time is in wall milliseconds; ``hour_ms`` is how many wall ms one venue hour lasts (3 600 000,
or 3 600 000 / speed for a replay), so replayed venues whose 8 h intervals pass in seconds are
normalised correctly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from domain.funding import BPS, HOUR_MS
from domain.funding import spread_bps_8h as funding_spread

ZERO = Decimal(0)

# coded rejection reasons (the scanner adds the risk-gate ones from domain.risk)
SPREAD_BELOW_MIN = "SPREAD_BELOW_MIN"
COSTS_EXCEED_EDGE = "COSTS_EXCEED_EDGE"
BOOK_TOO_THIN = "BOOK_TOO_THIN"
PRICE_DIVERGENCE = "PRICE_DIVERGENCE"
STALE_DATA = "STALE_DATA"
SETTLEMENT_TOO_CLOSE = "SETTLEMENT_TOO_CLOSE"
VENUE_UNHEALTHY = "VENUE_UNHEALTHY"


@dataclass(frozen=True)
class LegQuote:
    """One venue's funding for one symbol, as the scanner saw it."""

    venue: str
    rate: Decimal  # per settlement interval; the rate that settles at next_funding_ms
    interval_ms: int  # wall ms between settlements
    next_funding_ms: int
    mark_price: Decimal
    timestamp_ms: int  # when the venue produced the data
    taker_fee: Decimal  # fraction of notional per fill


@dataclass(frozen=True)
class EdgeParams:
    notional_usd: Decimal
    horizon_ms: int  # expected holding time, wall ms
    min_spread_bps: Decimal  # bps of notional per 8 venue hours
    buffer_bps: Decimal
    max_price_divergence: Decimal  # |mark_long − mark_short| / min(marks)
    min_settlement_lead_ms: int
    stale_after_ms: int
    est_slippage_bps: Decimal = Decimal("1.5")  # per fill, until the books are known
    hour_ms: int = HOUR_MS
    depth_band: Decimal = Decimal("0.01")  # depth counted within 1 % of mid
    max_impact: Decimal = Decimal("0.5")  # notional / that depth


@dataclass(frozen=True)
class Edge:
    """Decomposition of one (symbol, long venue, short venue) candidate, in bps of notional
    unless the name says USD. ``reason`` is None for an accepted candidate."""

    symbol: str
    long_venue: str
    short_venue: str
    spread_bps_8h: Decimal  # short hourly rate − long hourly rate, × 8 h
    settlements_long: int
    settlements_short: int
    gross_bps: Decimal  # expected funding over the horizon
    fees_bps: Decimal
    slippage_bps: Decimal
    buffer_bps: Decimal
    net_bps: Decimal
    gross_usd: Decimal
    net_usd: Decimal
    breakeven_h: Decimal | None  # venue hours of spread needed to pay the costs; None if spread <= 0
    target_settlement_ms: int  # the first settlement either leg collects (stamp of the trade id)
    books_checked: bool = False
    reason: str | None = None
    detail: str = ""

    @property
    def costs_bps(self) -> Decimal:
        return self.fees_bps + self.slippage_bps + self.buffer_bps


def interval_from_timestamps(times_ms: list[int]) -> int | None:
    """Settlement interval of replayed data: the median spacing of its timestamps (ms)."""
    ts = sorted(set(times_ms))
    gaps = sorted(b - a for a, b in zip(ts, ts[1:], strict=False) if b > a)
    if not gaps:
        return None
    return gaps[len(gaps) // 2]


def next_settlement(next_funding_ms: int, interval_ms: int, now_ms: int) -> int:
    """The first settlement strictly after ``now_ms`` (a reported time already past rolls on)."""
    if next_funding_ms > now_ms:
        return next_funding_ms
    k = (now_ms - next_funding_ms) // interval_ms + 1
    return next_funding_ms + k * interval_ms


def settlements_within(next_funding_ms: int, interval_ms: int, now_ms: int, horizon_ms: int) -> int:
    """How many settlements fall in ``(now, now + horizon]``."""
    if interval_ms <= 0:
        raise ValueError("interval_ms must be > 0")
    first = next_settlement(next_funding_ms, interval_ms, now_ms)
    end = now_ms + horizon_ms
    if first > end:
        return 0
    return (end - first) // interval_ms + 1


def spread_bps_8h(long: LegQuote, short: LegQuote, hour_ms: int = HOUR_MS) -> Decimal:
    """What the pair earns per 8 venue hours (:func:`domain.funding.spread_bps_8h`)."""
    return funding_spread(long.rate, long.interval_ms, short.rate, short.interval_ms, hour_ms)


def _first_pass(
    symbol: str, long: LegQuote, short: LegQuote, p: EdgeParams, now_ms: int, build: bool = True
) -> Edge | str:
    """The decomposition and its first reason (:func:`evaluate_pair`). With ``build`` False a
    rejected pair returns only its reason, computed no further than that reason needs (an
    accepted pair is always the whole Edge)."""
    oldest = min(long.timestamp_ms, short.timestamp_ms)
    lo, hi = sorted((long.mark_price, short.mark_price))
    reason = None
    if now_ms - oldest > p.stale_after_ms:
        reason = STALE_DATA
    elif lo <= 0 or (hi - lo) / lo > p.max_price_divergence:
        reason = PRICE_DIVERGENCE
    if reason is not None and not build:
        return reason
    spread = spread_bps_8h(long, short, p.hour_ms)
    if reason is None and spread < p.min_spread_bps:
        reason = SPREAD_BELOW_MIN
        if not build:
            return reason
    target = min(
        next_settlement(long.next_funding_ms, long.interval_ms, now_ms),
        next_settlement(short.next_funding_ms, short.interval_ms, now_ms),
    )
    lead = target - now_ms
    if reason is None and lead < p.min_settlement_lead_ms:
        reason = SETTLEMENT_TOO_CLOSE
        if not build:
            return reason
    slippage_bps = p.est_slippage_bps * 4
    n_long = settlements_within(long.next_funding_ms, long.interval_ms, now_ms, p.horizon_ms)
    n_short = settlements_within(short.next_funding_ms, short.interval_ms, now_ms, p.horizon_ms)
    gross = (short.rate * n_short - long.rate * n_long) * BPS
    fees = (long.taker_fee * 2 + short.taker_fee * 2) * BPS
    net = gross - fees - slippage_bps - p.buffer_bps
    costs = fees + slippage_bps + p.buffer_bps
    if reason is None and net <= 0:
        reason = COSTS_EXCEED_EDGE
        if not build:
            return reason
    detail = {
        None: "",
        STALE_DATA: lambda: f"data {now_ms - oldest} ms old",
        PRICE_DIVERGENCE: lambda: f"marks {long.mark_price} / {short.mark_price}",
        SPREAD_BELOW_MIN: lambda: f"{spread:.4f} < {p.min_spread_bps} bps/8h",
        SETTLEMENT_TOO_CLOSE: lambda: f"settlement in {lead} ms",
        COSTS_EXCEED_EDGE: lambda: f"gross {gross:.4f} <= costs {costs:.4f} bps",
    }[reason]
    return Edge(
        symbol=symbol,
        long_venue=long.venue,
        short_venue=short.venue,
        spread_bps_8h=spread,
        settlements_long=n_long,
        settlements_short=n_short,
        gross_bps=gross,
        fees_bps=fees,
        slippage_bps=slippage_bps,
        buffer_bps=p.buffer_bps,
        net_bps=net,
        gross_usd=gross * p.notional_usd / BPS,
        net_usd=net * p.notional_usd / BPS,
        breakeven_h=costs / (spread / 8) if spread > 0 else None,
        target_settlement_ms=target,
        reason=reason,
        detail=detail() if callable(detail) else detail,
    )


def evaluate_pair(symbol: str, long: LegQuote, short: LegQuote, p: EdgeParams, now_ms: int) -> Edge:
    """First pass, from the funding snapshot alone: slippage is the per-fill estimate (4 fills).

    Reasons, first that applies: STALE_DATA, PRICE_DIVERGENCE, SPREAD_BELOW_MIN,
    SETTLEMENT_TOO_CLOSE, COSTS_EXCEED_EDGE.
    """
    e = _first_pass(symbol, long, short, p, now_ms)
    assert isinstance(e, Edge)
    return e


# ---------------------------------------------------------------------------- books
@dataclass(frozen=True)
class Level:
    price: Decimal
    qty: Decimal  # base units


@dataclass(frozen=True)
class BookWalk:
    avg_price: Decimal | None
    slippage_bps: Decimal  # |avg − mid| / mid: half spread + market impact
    impact: Decimal  # notional / depth within the band on this side
    complete: bool  # the book held the whole notional


def mid_price(bids: list[Level], asks: list[Level]) -> Decimal | None:
    if not bids or not asks:
        return None
    return (bids[0].price + asks[0].price) / 2


def walk_book(levels: list[Level], mid: Decimal, notional_usd: Decimal, band: Decimal = Decimal("0.01")) -> BookWalk:
    """Fill ``notional_usd`` against ``levels`` (best first)."""
    remaining = notional_usd
    qty = ZERO
    depth = ZERO
    for lv in levels:
        value = lv.price * lv.qty
        if abs(lv.price - mid) <= mid * band:
            depth += value
        if remaining > 0:
            take = min(value, remaining)
            qty += take / lv.price
            remaining -= take
    impact = notional_usd / depth if depth > 0 else Decimal("Infinity")
    if qty == 0:
        return BookWalk(None, ZERO, impact, False)
    filled = notional_usd - remaining
    avg = filled / qty
    return BookWalk(avg, abs(avg - mid) / mid * BPS, impact, remaining <= 0)


def apply_books(
    edge: Edge,
    long_book: tuple[list[Level], list[Level]],
    short_book: tuple[list[Level], list[Level]],
    p: EdgeParams,
) -> Edge:
    """Second pass: replace the slippage estimate by walking both books, open and close.

    The long leg buys the asks to open and sells the bids to close; the short leg the other
    way round. BOOK_TOO_THIN when a side cannot hold the notional or it would take more than
    ``max_impact`` of the depth within ``depth_band`` of mid; COSTS_EXCEED_EDGE as before.
    """
    slip = ZERO
    worst = ZERO
    for venue, (bids, asks) in ((edge.long_venue, long_book), (edge.short_venue, short_book)):
        mid = mid_price(bids, asks)
        if mid is None or mid <= 0:
            return replace(edge, books_checked=True, reason=BOOK_TOO_THIN, detail=f"{venue}: empty book side")
        for side in (asks, bids):
            w = walk_book(side, mid, p.notional_usd, p.depth_band)
            worst = max(worst, w.impact)
            if not w.complete or w.impact > p.max_impact:
                return replace(
                    edge, books_checked=True, reason=BOOK_TOO_THIN,
                    detail=f"{venue}: impact {w.impact:.3f} of depth within {p.depth_band:%} of mid",
                )
            slip += w.slippage_bps
    fresh = _decompose_with_slippage(edge, slip, p)
    if fresh.net_bps <= 0:
        return replace(fresh, reason=COSTS_EXCEED_EDGE,
                       detail=f"gross {fresh.gross_bps:.4f} <= costs {fresh.costs_bps:.4f} bps after books")
    return fresh


def _decompose_with_slippage(edge: Edge, slippage_bps: Decimal, p: EdgeParams) -> Edge:
    net = edge.gross_bps - edge.fees_bps - slippage_bps - edge.buffer_bps
    costs = edge.fees_bps + slippage_bps + edge.buffer_bps
    breakeven = costs / (edge.spread_bps_8h / 8) if edge.spread_bps_8h > 0 else None
    return replace(
        edge, slippage_bps=slippage_bps, net_bps=net, net_usd=net * p.notional_usd / BPS,
        breakeven_h=breakeven, books_checked=True, reason=None, detail="",
    )


def rank_pairs(
    quotes: dict[str, list[LegQuote]],
    p: EdgeParams,
    now_ms: int,
    *,
    unhealthy: tuple[str, ...] = (),
    keep_rejected: bool = True,
) -> tuple[list[Edge], list[Edge], dict[str, int]]:
    """Evaluate every ordered (long, short) venue pair of every symbol.

    Returns (accepted best net first, rejected best net first, counts by reason). Pairs that
    involve an ``unhealthy`` venue are counted VENUE_UNHEALTHY without being evaluated. Without
    ``keep_rejected`` the rejected list stays empty (only counted), which is cheaper (the backtest).
    """
    accepted: list[Edge] = []
    rejected: list[Edge] = []
    counts: dict[str, int] = {}
    for symbol in sorted(quotes):
        legs = quotes[symbol]
        for long in legs:
            for short in legs:
                if long.venue == short.venue:
                    continue
                e = _first_pass(symbol, long, short, p, now_ms, keep_rejected)
                if isinstance(e, str):
                    counts[e] = counts.get(e, 0) + 1
                elif e.reason is None:
                    accepted.append(e)
                else:
                    rejected.append(e)
                    counts[e.reason] = counts.get(e.reason, 0) + 1
        if unhealthy:
            n = len(legs)
            pairs = sum(2 * n for _ in unhealthy) + (len(unhealthy) * (len(unhealthy) - 1))
            counts[VENUE_UNHEALTHY] = counts.get(VENUE_UNHEALTHY, 0) + pairs
    key = lambda e: (-e.net_bps, e.symbol, e.long_venue, e.short_venue)  # noqa: E731
    accepted.sort(key=key)
    rejected.sort(key=key)
    return accepted, rejected, counts
