"""The edge of a funding-rate pair: what it earns over a horizon and what it costs. Pure.

All money and rates are ``Decimal``; no I/O and no clock (``now_ms`` is an argument).

* Each venue's rate is normalised per hour by *its own* settlement interval, so an 8-hourly
  venue and an hourly one compare per hour, not per settlement.
* Expected funding over the horizon counts the settlements that actually fall inside it on
  each venue: a position opened just after a settlement waits a full interval for the next.
  The current rate is the estimate for every settlement in the horizon.
* Costs, priced per execution style (:func:`style_cost`, the cheapest allowed one wins:
  :func:`choose_style`): ``taker`` pays the taker fee on open *and* close of both legs plus the
  slippage of walking each book for the notional (measured from the mid, so it includes half the
  spread) on the side we hit to open and the side we hit to close; ``maker_first`` expects the
  passive leg (:func:`domain.execution.passive_leg`) to fill ``maker_fill_share`` of its
  quantity at the maker fee with no slippage and the rest at the taker fallback's cost; ``sliced``
  walks the books with notional / slices per piece. Then a safety buffer.

Time is in wall milliseconds; ``hour_ms`` is how many wall ms one venue hour lasts (3 600 000,
or 3 600 000 / speed for a replay), so replayed venues whose 8 h intervals pass in seconds are
normalised correctly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from domain.execution import passive_leg
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

#: the execution styles (``config.settings.TradeExecution.style``), in tie-break order: on equal
#: expected cost the earlier wins, so taker wins every tie
STYLES = ("taker", "maker_first", "sliced")


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
    maker_fee: Decimal | None = None  # per maker fill; None: as the taker fee (no maker saving assumed)

    @property
    def fees(self) -> LegFees:
        return LegFees(self.taker_fee, self.taker_fee if self.maker_fee is None else self.maker_fee)


@dataclass(frozen=True)
class LegFees:
    """One venue's fees, fraction of notional per fill."""

    taker: Decimal
    maker: Decimal


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
    styles: tuple[str, ...] = ("taker",)  # the styles the cheapest is chosen from (STYLES)
    maker_fill_share: Decimal = Decimal("0.7")  # maker_first: expected share of the passive leg filled as maker
    slices: int = 4  # sliced: pieces per entry and exit
    slice_style: str = "taker"  # sliced: each piece's style


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
    style: str = "taker"  # the execution style fees_bps and slippage_bps are priced for
    maker_fees_bps: Decimal = ZERO  # the part of fees_bps paid at maker rates (expected)
    long_fees: LegFees | None = None  # None: an edge from before styles (taker only)
    short_fees: LegFees | None = None

    @property
    def costs_bps(self) -> Decimal:
        return self.fees_bps + self.slippage_bps + self.buffer_bps


# ---------------------------------------------------------------------------- styles
@dataclass(frozen=True)
class StyleCost:
    """The expected round-trip cost of one execution style, bps of notional: both legs, entry
    and exit (the buffer excluded)."""

    style: str
    fees_bps: Decimal
    slippage_bps: Decimal
    maker_fees_bps: Decimal = ZERO  # the part of fees_bps paid at maker rates

    @property
    def total_bps(self) -> Decimal:
        return self.fees_bps + self.slippage_bps


def leg_cost(fees: LegFees, slippage_bps: Decimal, maker_share: Decimal) -> StyleCost:
    """One leg's entry and exit, bps: ``maker_share`` of its quantity fills as a maker (maker
    fee, no slippage: a post-only quote fills at its own price), the rest as a taker (taker fee
    plus ``slippage_bps``, the leg's book walk of entry + exit)."""
    maker = maker_share * 2 * fees.maker * BPS
    taker = (1 - maker_share) * 2 * fees.taker * BPS
    return StyleCost("", maker + taker, (1 - maker_share) * slippage_bps, maker)


def style_cost(
    style: str,
    long: LegFees,
    short: LegFees,
    slippage_bps: tuple[Decimal, Decimal],
    *,
    maker_fill_share: Decimal,
    piece_slippage_bps: tuple[Decimal, Decimal] | None = None,
    slice_style: str = "taker",
) -> StyleCost:
    """The expected cost of ``style`` for a pair. ``slippage_bps``: each leg's (long, short)
    book walk of entry + exit for the whole notional; ``piece_slippage_bps``: the same for
    notional / slices (``sliced``; defaults to the whole-notional walk).

    ``taker``: both legs taker. ``maker_first``: the passive leg (the costlier taker fee,
    :func:`domain.execution.passive_leg`) fills ``maker_fill_share`` as a maker and the rest at
    the taker fallback's cost; the active leg hedges taker. ``sliced``: ``slice_style`` priced
    with the pieces' walk (fees are the same share of notional however it is cut)."""
    if style == "sliced":
        if slice_style == "sliced":
            raise ValueError("slice_style must be taker or maker_first")
        inner = style_cost(slice_style, long, short, piece_slippage_bps or slippage_bps,
                           maker_fill_share=maker_fill_share)
        return replace(inner, style="sliced")
    if style == "taker":  # both shares 0 (written out: the backtest ranks every pair with it)
        return StyleCost(style, (long.taker * 2 + short.taker * 2) * BPS, slippage_bps[0] + slippage_bps[1])
    if style == "maker_first":
        shares = (maker_fill_share, ZERO) if passive_leg(long.taker, short.taker) == "long" else (ZERO, maker_fill_share)
    else:
        raise ValueError(f"unknown style {style!r}; one of {', '.join(STYLES)}")
    a = leg_cost(long, slippage_bps[0], shares[0])
    b = leg_cost(short, slippage_bps[1], shares[1])
    return StyleCost(style, a.fees_bps + b.fees_bps, a.slippage_bps + b.slippage_bps,
                     a.maker_fees_bps + b.maker_fees_bps)


def choose_style(costs: Iterable[StyleCost]) -> StyleCost:
    """The cheapest expected style; on a tie the earlier in :data:`STYLES` (taker first)."""
    return min(costs, key=lambda c: (c.total_bps, STYLES.index(c.style)))


def cheapest_style(
    long: LegFees, short: LegFees, slippage_bps: tuple[Decimal, Decimal],
    piece_slippage_bps: tuple[Decimal, Decimal] | None, p: EdgeParams,
) -> StyleCost:
    """:func:`choose_style` over the styles ``p`` allows (taker when it allows none)."""
    if len(p.styles) <= 1:
        return style_cost(p.styles[0] if p.styles else "taker", long, short, slippage_bps,
                          maker_fill_share=p.maker_fill_share, piece_slippage_bps=piece_slippage_bps,
                          slice_style=p.slice_style)
    return choose_style(
        style_cost(s, long, short, slippage_bps, maker_fill_share=p.maker_fill_share,
                   piece_slippage_bps=piece_slippage_bps, slice_style=p.slice_style)
        for s in (p.styles or ("taker",))
    )


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
    n_long = settlements_within(long.next_funding_ms, long.interval_ms, now_ms, p.horizon_ms)
    n_short = settlements_within(short.next_funding_ms, short.interval_ms, now_ms, p.horizon_ms)
    gross = (short.rate * n_short - long.rate * n_long) * BPS
    est = p.est_slippage_bps * 2  # per leg: entry + exit, whatever the piece size until the books are known
    lf, sf = long.fees, short.fees
    cost = cheapest_style(lf, sf, (est, est), None, p)
    fees, slippage_bps = cost.fees_bps, cost.slippage_bps
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
        style=cost.style,
        maker_fees_bps=cost.maker_fees_bps,
        long_fees=lf,
        short_fees=sf,
    )


def evaluate_pair(symbol: str, long: LegQuote, short: LegQuote, p: EdgeParams, now_ms: int) -> Edge:
    """First pass, from the funding snapshot alone: slippage is the per-fill estimate (4 taker
    fills; a maker fill's share of them costs none), the style the cheapest of ``p.styles``.

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
    """Second pass: replace the slippage estimate by walking both books, open and close, and
    choose the style again on the walked slippage (``sliced``: also walked with notional /
    slices per piece).

    The long leg buys the asks to open and sells the bids to close; the short leg the other
    way round. BOOK_TOO_THIN when a side cannot hold the notional or it would take more than
    ``max_impact`` of the depth within ``depth_band`` of mid; COSTS_EXCEED_EDGE as before.
    """
    sliced = "sliced" in p.styles and p.slices > 1
    slips: list[Decimal] = []
    pieces: list[Decimal] = []
    for venue, (bids, asks) in ((edge.long_venue, long_book), (edge.short_venue, short_book)):
        mid = mid_price(bids, asks)
        if mid is None or mid <= 0:
            return replace(edge, books_checked=True, reason=BOOK_TOO_THIN, detail=f"{venue}: empty book side")
        slip = piece = ZERO
        for side in (asks, bids):
            w = walk_book(side, mid, p.notional_usd, p.depth_band)
            if not w.complete or w.impact > p.max_impact:
                return replace(
                    edge, books_checked=True, reason=BOOK_TOO_THIN,
                    detail=f"{venue}: impact {w.impact:.3f} of depth within {p.depth_band:%} of mid",
                )
            slip += w.slippage_bps
            if sliced:
                piece += walk_book(side, mid, p.notional_usd / p.slices, p.depth_band).slippage_bps
        slips.append(slip)
        pieces.append(piece)
    fresh = _decompose_with_slippage(edge, (slips[0], slips[1]), (pieces[0], pieces[1]) if sliced else None, p)
    if fresh.net_bps <= 0:
        return replace(fresh, reason=COSTS_EXCEED_EDGE,
                       detail=f"gross {fresh.gross_bps:.4f} <= costs {fresh.costs_bps:.4f} bps after books")
    return fresh


def _decompose_with_slippage(
    edge: Edge, slips: tuple[Decimal, Decimal], pieces: tuple[Decimal, Decimal] | None, p: EdgeParams
) -> Edge:
    if edge.long_fees is None or edge.short_fees is None:  # an edge from before styles: taker, its fees
        cost = StyleCost("taker", edge.fees_bps, slips[0] + slips[1])
    else:
        cost = cheapest_style(edge.long_fees, edge.short_fees, slips, pieces, p)
    net = edge.gross_bps - cost.fees_bps - cost.slippage_bps - edge.buffer_bps
    costs = cost.total_bps + edge.buffer_bps
    breakeven = costs / (edge.spread_bps_8h / 8) if edge.spread_bps_8h > 0 else None
    return replace(
        edge, fees_bps=cost.fees_bps, slippage_bps=cost.slippage_bps, style=cost.style,
        maker_fees_bps=cost.maker_fees_bps, net_bps=net, net_usd=net * p.notional_usd / BPS,
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
