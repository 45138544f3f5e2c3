"""Edge model and risk gates on hand-computed numbers (pure functions, no I/O)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from domain.edge import (
    BOOK_TOO_THIN,
    COSTS_EXCEED_EDGE,
    PRICE_DIVERGENCE,
    SETTLEMENT_TOO_CLOSE,
    SPREAD_BELOW_MIN,
    STALE_DATA,
    VENUE_UNHEALTHY,
    EdgeParams,
    LegQuote,
    Level,
    apply_books,
    evaluate_pair,
    interval_from_timestamps,
    rank_pairs,
    settlements_within,
    spread_bps_8h,
    walk_book,
)
from domain.funding import hourly_rate
from domain.risk import (
    COOLDOWN,
    DAILY_LIMIT,
    EXPOSURE_LIMIT,
    HALTED,
    MAX_TRADES,
    SYMBOL_BUSY,
    OpenTrade,
    RiskBook,
    RiskLimits,
    check_gates,
)

H = 3_600_000
NOW = 1_700_000_000_000 - 1_700_000_000_000 % (8 * H)  # exactly on an 8 h boundary


def leg(venue, rate, interval_h, next_ms, mark="100", fee="0.0005", ts=NOW):
    return LegQuote(venue, D(rate), interval_h * H, next_ms, D(mark), ts, D(fee))


def params(**kw):
    base = dict(
        notional_usd=D("1000"), horizon_ms=8 * H, min_spread_bps=D("0"), buffer_bps=D("2"),
        max_price_divergence=D("0.005"), min_settlement_lead_ms=0, stale_after_ms=60_000,
        est_slippage_bps=D("1.5"),
    )
    base.update(kw)
    return EdgeParams(**base)


def test_hourly_normalisation_1h_against_8h():
    # 8 h venue: 0.0001 / 8 = 0.0000125 per hour; 1 h venue: 0.00005 per hour
    assert hourly_rate(D("0.0001"), 8 * H) == D("0.0000125")
    long = leg("a", "0.0001", 8, NOW + 8 * H)  # pays 0.0001 every 8 h
    short = leg("b", "0.00005", 1, NOW + H)  # receives 0.00005 every hour
    # (0.00005 − 0.0000125) × 8 × 10 000 = 3 bps per 8 h (raw rates would say −0.5 bps)
    assert spread_bps_8h(long, short) == D("3")


def test_edge_decomposition_1h_vs_8h_over_8h():
    long = leg("a", "0.0001", 8, NOW + 8 * H)
    short = leg("b", "0.00005", 1, NOW + H)
    e = evaluate_pair("BTC/USDT:USDT", long, short, params(), NOW)
    # settlements in (now, now+8h]: the 8 h venue once (at +8h), the 1 h venue 8 times
    assert (e.settlements_long, e.settlements_short) == (1, 8)
    # gross = (0.00005 × 8 − 0.0001 × 1) × 10 000 = 3 bps = 0.30 USD on 1000
    assert e.gross_bps == D("3") and e.gross_usd == D("0.3")
    # fees: 0.0005 taker × (open + close) × 2 legs = 20 bps; slippage estimate 1.5 × 4 fills = 6
    assert e.fees_bps == D("20") and e.slippage_bps == D("6") and e.buffer_bps == D("2")
    # net = 3 − 20 − 6 − 2 = −25 bps = −2.50 USD → rejected
    assert e.net_bps == D("-25") and e.net_usd == D("-2.5")
    assert e.reason == COSTS_EXCEED_EDGE
    # break-even: 28 bps of costs / (3/8 bps per hour) = 74.67 h
    assert e.breakeven_h.quantize(D("0.01")) == D("74.67")
    assert e.target_settlement_ms == NOW + H


def test_horizon_ending_just_before_a_settlement():
    long = leg("a", "0.0001", 8, NOW + 8 * H)
    short = leg("b", "0.00005", 1, NOW + H)
    e = evaluate_pair("X/USDT:USDT", long, short, params(horizon_ms=8 * H - 1), NOW)
    # the 8 h settlement at +8h is 1 ms outside: the long pays nothing; the short collects
    # +1h..+7h = 7 times → gross = 0.00005 × 7 × 10 000 = 3.5 bps
    assert (e.settlements_long, e.settlements_short) == (0, 7)
    assert e.gross_bps == D("3.5")


def test_settlement_counting():
    # opened 1 ms after a settlement: the next is a full interval away
    assert settlements_within(NOW + 8 * H - 1, 8 * H, NOW, 8 * H - 2) == 0
    assert settlements_within(NOW + 8 * H - 1, 8 * H, NOW, 8 * H - 1) == 1
    # a reported next time already in the past rolls forward by whole intervals
    assert settlements_within(NOW - 1, H, NOW, 2 * H) == 2  # at +1h−1ms and +2h−1ms
    assert settlements_within(NOW + H, H, NOW, 24 * H) == 24


def test_accepted_edge_positive():
    # 60 s venues (demo): long pays −0.0002 (i.e. receives), short receives 0.0008, per minute
    m = 60_000
    long = LegQuote("a", D("-0.0002"), m, NOW + 30_000, D("100"), NOW, D("0.0005"))
    short = LegQuote("b", D("0.0008"), m, NOW + 30_000, D("100.1"), NOW, D("0.0005"))
    e = evaluate_pair("S/USDT:USDT", long, short, params(horizon_ms=6 * m), NOW)
    # 6 settlements each: (0.0008 × 6 + 0.0002 × 6) × 10 000 = 60 bps; costs 20 + 6 + 2 = 28
    assert e.gross_bps == D("60") and e.net_bps == D("32") and e.net_usd == D("3.2")
    assert e.reason is None
    # spread per 8 h: (0.0008 + 0.0002) per minute × 480 min × 10 000 = 4800 bps
    assert e.spread_bps_8h == D("4800")


@pytest.mark.parametrize(
    ("kw", "legs", "reason"),
    [
        ({}, dict(ts=NOW - 60_001), STALE_DATA),
        ({}, dict(mark_s="100.6"), PRICE_DIVERGENCE),  # 0.6 % apart > 0.5 %
        ({"min_spread_bps": D("50")}, {}, SPREAD_BELOW_MIN),
        ({"min_settlement_lead_ms": 30_001}, {}, SETTLEMENT_TOO_CLOSE),
    ],
)
def test_rejection_reasons(kw, legs, reason):
    m = 60_000
    long = LegQuote("a", D("-0.0002"), m, NOW + 30_000, D("100"), legs.get("ts", NOW), D("0.0005"))
    short = LegQuote("b", D("0.0008"), m, NOW + 30_000, D(legs.get("mark_s", "100")), NOW, D("0.0005"))
    kw = {"horizon_ms": 6 * m, **kw}
    if reason == SPREAD_BELOW_MIN:
        short = LegQuote("b", D("0.00001"), 8 * H, NOW + 30_000, D("100"), NOW, D("0.0005"))
        long = LegQuote("a", D("0.00001"), 8 * H, NOW + 30_000, D("100"), NOW, D("0.0005"))
    e = evaluate_pair("S/USDT:USDT", long, short, params(**kw), NOW)
    assert e.reason == reason


def _book(mid_bid="99.9", mid_ask="100.1", qty="5", step="0.1", n=3):
    bids = [Level(D(mid_bid) - D(step) * i, D(qty)) for i in range(n)]
    asks = [Level(D(mid_ask) + D(step) * i, D(qty)) for i in range(n)]
    return bids, asks


def test_walk_book_hand_computed():
    bids, asks = _book(qty="10")
    # buy 1000 USD: 10 at 100.1 holds 1001 → all at 100.1; mid 100 → 10 bps (= half spread)
    w = walk_book(asks, D("100"), D("1000"))
    assert w.avg_price == D("100.1") and w.slippage_bps == D("10") and w.complete
    # depth within 1 % of 100: 100.1, 100.2, 100.3 × 10 = 3006 USD → impact 1000/3006
    assert w.impact == D("1000") / D("3006")
    # 5 per level: 500.5 USD at 100.1, then 499.5 USD at 100.2 (4.98502994... units)
    bids, asks = _book(qty="5")
    w = walk_book(asks, D("100"), D("1000"))
    qty = D("5") + D("499.5") / D("100.2")
    assert w.avg_price == D("1000") / qty
    assert w.slippage_bps == (D("1000") / qty - 100) / 100 * 10_000
    # 1000 of 1503 USD of depth: impact 0.665 > 0.5
    assert w.impact > D("0.5")


def test_apply_books_replaces_estimate_and_flags_thin_books():
    m = 60_000
    long = LegQuote("a", D("-0.0002"), m, NOW + 30_000, D("100"), NOW, D("0.0005"))
    short = LegQuote("b", D("0.0008"), m, NOW + 30_000, D("100"), NOW, D("0.0005"))
    p = params(horizon_ms=6 * m)
    e = evaluate_pair("S/USDT:USDT", long, short, p, NOW)
    deep = _book(qty="20")
    full = apply_books(e, deep, deep, p)
    # every fill at 100.1 / 99.9 against mid 100: 10 bps × 4 fills = 40 bps of slippage
    assert full.slippage_bps == D("40") and full.books_checked
    # net = 60 − 20 − 40 − 2 = −2 → after the books the edge is gone
    assert full.net_bps == D("-2") and full.reason == COSTS_EXCEED_EDGE
    tight = _book("99.99", "100.01", qty="20")
    ok = apply_books(e, tight, tight, p)
    # 1 bp × 4 = 4 → net = 60 − 20 − 4 − 2 = 34 bps
    assert ok.reason is None and ok.net_bps.quantize(D("0.000001")) == D("34")
    thin = apply_books(e, _book(qty="5"), deep, p)
    assert thin.reason == BOOK_TOO_THIN


def test_rank_pairs_orders_by_net_and_counts_reasons():
    m = 60_000
    quotes = {
        "S/USDT:USDT": [
            LegQuote("a", D("-0.0002"), m, NOW + 30_000, D("100"), NOW, D("0.0005")),
            LegQuote("b", D("0.0008"), m, NOW + 30_000, D("100"), NOW, D("0.0005")),
            LegQuote("c", D("0.0004"), m, NOW + 30_000, D("100"), NOW, D("0.0005")),
        ]
    }
    acc, rej, counts = rank_pairs(quotes, params(horizon_ms=6 * m), NOW, unhealthy=("d",))
    # a→b 60 bps gross (net 32), a→c 36 (net 8), c→b 24 (net −4): two accepted, best first
    assert [(e.long_venue, e.short_venue) for e in acc] == [("a", "b"), ("a", "c")]
    assert [e.net_bps for e in acc] == [D("32"), D("8")]
    assert counts[COSTS_EXCEED_EDGE] == 1 and counts[SPREAD_BELOW_MIN] == 3
    assert counts[VENUE_UNHEALTHY] == 6  # d with each of 3 venues, both directions
    assert len(rej) == 4


def test_interval_from_replayed_timestamps():
    ts = [0, 8 * H, 16 * H, 24 * H, 25 * H]
    assert interval_from_timestamps(ts) == 8 * H
    assert interval_from_timestamps([0]) is None


# ---------------------------------------------------------------------------- risk gates
LIM = RiskLimits(
    max_open_trades=2, max_venue_notional_usd=D("1500"), max_total_notional_usd=D("5000"),
    max_trades_per_day=3, max_daily_loss_usd=D("100"), max_consecutive_emergency=2, symbol_cooldown_ms=60_000,
)


def test_gates():
    book = RiskBook(open_trades=[OpenTrade("t1", "BTC/USDT:USDT", "a", "b", D("1000"))])
    g = lambda sym, lv="a", sv="c", n="400", b=book, **kw: check_gates(sym, lv, sv, D(n), b, LIM, NOW, **kw)  # noqa: E731
    assert g("ETH/USDT:USDT", halted=True)[0] == HALTED
    assert g("BTC/USDT:USDT", "c", "d")[0] == SYMBOL_BUSY
    assert g("ETH/USDT:USDT") is None  # a: 1000 + 400 <= 1500
    assert g("ETH/USDT:USDT", n="600")[0] == EXPOSURE_LIMIT  # a: 1600 > 1500
    assert g("ETH/USDT:USDT", "c", "d", n="600") is None
    book.last_close_ms["SOL/USDT:USDT"] = NOW - 59_000
    assert g("SOL/USDT:USDT", "c", "d")[0] == COOLDOWN
    book.last_close_ms["SOL/USDT:USDT"] = NOW - 60_000
    assert g("SOL/USDT:USDT", "c", "d") is None
    book.add(OpenTrade("t2", "ETH/USDT:USDT", "c", "d", D("1000")))
    assert g("SOL/USDT:USDT", "e", "f")[0] == MAX_TRADES
    small = RiskBook(trades_today=3)
    assert g("SOL/USDT:USDT", b=small)[0] == DAILY_LIMIT
    assert g("SOL/USDT:USDT", b=RiskBook(realized_today_usd=D("-100")))[0] == DAILY_LIMIT
    assert g("SOL/USDT:USDT", b=RiskBook(realized_today_usd=D("-99.99"))) is None
    assert g("SOL/USDT:USDT", b=RiskBook(consecutive_emergency=2))[0] == HALTED
    # total gross exposure: 2 legs × notional
    big = RiskBook(open_trades=[OpenTrade("t", "X/USDT:USDT", "x", "y", D("2000"))])
    assert g("SOL/USDT:USDT", n="600", b=big)[0] == EXPOSURE_LIMIT  # 4000 + 1200 > 5000
    assert g("SOL/USDT:USDT", n="500", b=big) is None  # 4000 + 1000 = 5000


def test_report_totals_and_hindsight_bound():
    from domain.report import RateRow, TradeOutcome, hindsight_upper_bound, totals

    rows = [
        # t=0: BTC rates 1, 3, −1 (×1e−4) → best pair 4e−4; ETH 2, 2 → 0
        RateRow(0, "a", "BTC", D("0.0001")), RateRow(0, "b", "BTC", D("0.0003")), RateRow(0, "c", "BTC", D("-0.0001")),
        RateRow(0, "a", "ETH", D("0.0002")), RateRow(0, "b", "ETH", D("0.0002")),
        # t=8h: BTC 1, 2 → 1e−4; ETH 5, 1 → 4e−4
        RateRow(8 * H, "a", "BTC", D("0.0001")), RateRow(8 * H, "b", "BTC", D("0.0002")),
        RateRow(8 * H, "a", "ETH", D("0.0005")), RateRow(8 * H, "b", "ETH", D("0.0001")),
    ]
    # one trade at a time: (4 + 4) e−4 × 1000 = 0.80 USD; two: (4 + 0 + 4 + 1) e−4 × 1000 = 0.90
    assert hindsight_upper_bound(rows, D("1000"), 1) == D("0.8")
    assert hindsight_upper_bound(rows, D("1000"), 2) == D("0.9")
    assert hindsight_upper_bound(rows, D("1000"), 2, start_ms=1) == D("0.5")
    t = totals([
        TradeOutcome("t1", "BTC", "a", "b", "closed", D("3"), D("1"), D("-0.5"), D("1.5")),
        TradeOutcome("t2", "ETH", "a", "b", "closed", D("1"), D("1"), D("0.2"), D("0.2")),
    ])
    # funding 4 − fees 2 − slippage (0.5 − 0.2 = 0.3) = 1.7 = sum of the trades' net
    assert (t.trades, t.funding_usd, t.fees_usd, t.slippage_usd, t.net_usd) == (2, D("4"), D("2"), D("0.3"), D("1.7"))
    assert t.funding_usd - t.fees_usd - t.slippage_usd == t.net_usd
