"""The edge model prices the execution style and the scanner chooses one (issue 15 part 3):
hand-computed costs, a property, the choice, the settings. Pure functions, no I/O."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.scanner import settings_for_style
from config.settings import ConfigError, load_settings
from control.trades import params_from_settings
from domain.edge import (
    STYLES,
    EdgeParams,
    LegFees,
    LegQuote,
    Level,
    StyleCost,
    apply_books,
    cheapest_style,
    choose_style,
    evaluate_pair,
    rank_pairs,
    style_cost,
    walk_book,
)
from messages.scanner import ScannerParams

H = 3_600_000
NOW = 1_700_000_000_000 - 1_700_000_000_000 % (8 * H)
A = LegFees(D("0.0005"), D("0.0002"))  # the long venue
B = LegFees(D("0.00055"), D("0.0002"))  # the short venue: costlier taker → the passive leg
SHARE = D("0.7")


def params(**kw) -> EdgeParams:
    base = dict(notional_usd=D("1000"), horizon_ms=6 * 60_000, min_spread_bps=D("0"), buffer_bps=D("2"),
                max_price_divergence=D("0.005"), min_settlement_lead_ms=0, stale_after_ms=60_000,
                est_slippage_bps=D("1.5"))
    return EdgeParams(**(base | kw))


def quotes(long_fee=A, short_fee=B) -> tuple[LegQuote, LegQuote]:
    m = 60_000  # 60 bps of gross over the horizon: 6 settlements of a 10 bps spread
    long = LegQuote("a", D("-0.0002"), m, NOW + 30_000, D("100"), NOW, long_fee.taker, long_fee.maker)
    short = LegQuote("b", D("0.0008"), m, NOW + 30_000, D("100"), NOW, short_fee.taker, short_fee.maker)
    return long, short


# ---------------------------------------------------------------------------- hand-computed
def test_each_style_priced_by_hand():
    slip = (D(3), D(3))  # each leg: 1.5 bps in, 1.5 bps out
    taker = style_cost("taker", A, B, slip, maker_fill_share=SHARE)
    # 2 × 5 + 2 × 5.5 = 21 bps of taker fees, 3 + 3 of slippage
    assert (taker.fees_bps, taker.slippage_bps, taker.maker_fees_bps) == (D(21), D(6), D(0))
    mf = style_cost("maker_first", A, B, slip, maker_fill_share=SHARE)
    # short (passive): 0.7 × 2 × 2 = 2.8 maker + 0.3 × 2 × 5.5 = 3.3 taker, slippage 0.3 × 3 = 0.9;
    # long (active): 10 taker, 3 slippage
    assert mf.maker_fees_bps == D("2.8") and mf.fees_bps == D("16.1") and mf.slippage_bps == D("3.9")
    assert mf.total_bps == D("20.0")
    sl = style_cost("sliced", A, B, slip, maker_fill_share=SHARE, piece_slippage_bps=(D(1), D(1)))
    assert (sl.style, sl.fees_bps, sl.slippage_bps) == ("sliced", D(21), D(2))  # taker pieces, less slip
    slm = style_cost("sliced", A, B, slip, maker_fill_share=SHARE, piece_slippage_bps=(D(1), D(1)),
                     slice_style="maker_first")
    assert (slm.fees_bps, slm.slippage_bps) == (D("16.1"), D("1.3"))  # 1 + 0.3 × 1
    # the passive leg follows the costlier taker fee: swapped venues, the long leg quotes
    swapped = style_cost("maker_first", B, A, (D(3), D(0)), maker_fill_share=SHARE)
    assert swapped.slippage_bps == D("0.9")
    with pytest.raises(ValueError):
        style_cost("iceberg", A, B, slip, maker_fill_share=SHARE)


def test_choice_cheapest_and_ties_go_to_taker():
    c = lambda s, f, sl: StyleCost(s, D(f), D(sl))  # noqa: E731
    assert choose_style([c("taker", 21, 6), c("maker_first", "16.1", "3.9"), c("sliced", 21, 2)]).style == "maker_first"
    assert choose_style([c("sliced", 20, 1), c("maker_first", 20, 1), c("taker", 20, 1)]).style == "taker"
    assert choose_style([c("sliced", 20, 1), c("maker_first", 20, 1)]).style == "maker_first"
    assert STYLES[0] == "taker"
    # a maker fee as dear as the taker fee on books that cost nothing to walk saves nothing: taker
    # wins the tie; the same fees with slippage: the maker share saves its slippage
    same = LegFees(D("0.0005"), D("0.0005"))
    slip = (D(3), D(3))
    both = params(styles=("maker_first", "taker"))
    assert cheapest_style(same, same, (D(0), D(0)), None, both).style == "taker"
    assert cheapest_style(same, same, slip, None, both).style == "maker_first"
    assert cheapest_style(A, B, slip, None, params(styles=("maker_first", "taker"))).style == "maker_first"
    assert cheapest_style(A, B, slip, None, params()).style == "taker"  # the default allows taker only


def test_first_pass_prices_the_chosen_style():
    long, short = quotes()
    e = evaluate_pair("S/USDT:USDT", long, short, params(), NOW)
    assert (e.style, e.fees_bps, e.slippage_bps, e.maker_fees_bps) == ("taker", D(21), D(6), D(0))
    assert e.net_bps == D(60) - 21 - 6 - 2
    m = evaluate_pair("S/USDT:USDT", long, short, params(styles=("taker", "maker_first", "sliced")), NOW)
    # before the books a piece is assumed to slip as much as the whole: sliced saves nothing yet
    assert (m.style, m.fees_bps, m.slippage_bps, m.maker_fees_bps) == ("maker_first", D("16.1"), D("3.9"), D("2.8"))
    assert m.net_bps == D(60) - D("16.1") - D("3.9") - 2 and m.costs_bps == D("22.0")
    # an edge only maker_first pays for: 25.2 bps gross, taker's costs 29, maker_first's 22
    long2 = LegQuote("a", D("-0.0002"), 60_000, NOW + 30_000, D("100"), NOW, A.taker, A.maker)
    short2 = LegQuote("b", D("0.00022"), 60_000, NOW + 30_000, D("100"), NOW, B.taker, B.maker)
    assert evaluate_pair("S/USDT:USDT", long2, short2, params(), NOW).reason == "COSTS_EXCEED_EDGE"
    ok = evaluate_pair("S/USDT:USDT", long2, short2, params(styles=("taker", "maker_first")), NOW)
    assert ok.reason is None and ok.style == "maker_first"
    # a venue whose maker fee is unknown is priced at its taker fee: only the slippage is saved
    long3, short3 = (LegQuote(q.venue, q.rate, q.interval_ms, q.next_funding_ms, q.mark_price, q.timestamp_ms,
                              q.taker_fee) for q in (long, short))
    u = evaluate_pair("S/USDT:USDT", long3, short3, params(styles=("maker_first", "taker")), NOW)
    assert (u.style, u.fees_bps, u.slippage_bps, u.maker_fees_bps) == ("maker_first", D(21), D("3.9"), D("7.7"))


def _layered(qty_near="2"):
    """Best level 1 bp from mid 100 holding 200 USD, then 10 bps deep."""
    bids = [Level(D("99.99"), D(qty_near)), Level(D("99.9"), D("20"))]
    asks = [Level(D("100.01"), D(qty_near)), Level(D("100.1"), D("20"))]
    return bids, asks


def test_books_price_sliced_with_the_piece_walk():
    long, short = quotes()
    p = params(styles=("taker", "sliced"), slices=4)
    e = evaluate_pair("S/USDT:USDT", long, short, p, NOW)
    book = _layered()
    full = apply_books(e, book, book, p)
    bids, asks = book
    whole = walk_book(asks, D(100), D(1000)).slippage_bps + walk_book(bids, D(100), D(1000)).slippage_bps
    piece = walk_book(asks, D(100), D(250)).slippage_bps + walk_book(bids, D(100), D(250)).slippage_bps
    assert piece < whole
    assert full.reason is None and full.style == "sliced" and full.books_checked
    assert full.slippage_bps == 2 * piece and full.fees_bps == D(21)
    assert full.net_bps == D(60) - 21 - 2 * piece - 2
    # the same books, taker only: the whole-notional walk (what the edge always was)
    taker = apply_books(evaluate_pair("S/USDT:USDT", long, short, params(), NOW), book, book, params())
    assert taker.style == "taker" and taker.slippage_bps == 2 * whole
    # maker_first after books: the passive (short) leg walks for 30 % of its quantity only
    pm = params(styles=("taker", "maker_first"))
    mf = apply_books(evaluate_pair("S/USDT:USDT", long, short, pm, NOW), book, book, pm)
    assert mf.style == "maker_first" and mf.slippage_bps == whole + D("0.3") * whole
    assert mf.fees_bps == D("16.1") and mf.maker_fees_bps == D("2.8")


def test_rank_pairs_orders_by_the_chosen_style():
    long, short = quotes()
    acc, _, _ = rank_pairs({"S/USDT:USDT": [long, short]}, params(styles=("taker", "maker_first")), NOW)
    # a→b (long a, short b) and b→a: both cheaper maker_first, ranked by their net
    assert [e.style for e in acc] == ["maker_first"] * len(acc) and acc[0].net_bps >= acc[-1].net_bps


# ---------------------------------------------------------------------------- property
fee = st.decimals(min_value=D(0), max_value=D("0.002"), places=6)
slip = st.decimals(min_value=D(0), max_value=D(50), places=3)
share = st.decimals(min_value=D(0), max_value=D(1), places=3)


@settings(max_examples=300, deadline=None)
@given(lt=fee, st_=fee, lm=st.decimals(min_value=D("-0.0005"), max_value=D("0.002"), places=6),
       sm=st.decimals(min_value=D("-0.0005"), max_value=D("0.002"), places=6), sl_l=slip, sl_s=slip, s=share)
def test_maker_first_never_dearer_than_taker(lt, st_, lm, sm, sl_l, sl_s, s):
    long, short = LegFees(lt, min(lm, lt)), LegFees(st_, min(sm, st_))  # maker fee ≤ taker fee
    slips = (sl_l, sl_s)
    taker = style_cost("taker", long, short, slips, maker_fill_share=s)
    mf = style_cost("maker_first", long, short, slips, maker_fill_share=s)
    assert mf.total_bps <= taker.total_bps
    assert mf.fees_bps - mf.maker_fees_bps >= 0 and mf.slippage_bps >= 0
    zero = style_cost("maker_first", long, short, slips, maker_fill_share=D(0))
    assert (zero.fees_bps, zero.slippage_bps, zero.maker_fees_bps) == (taker.fees_bps, taker.slippage_bps, D(0))
    # the scanner's choice among every style is never dearer than taker, and sliced with smaller
    # pieces never dearer than its piece style unsliced
    pieces = (sl_l / 2, sl_s / 2)
    chosen = cheapest_style(long, short, slips, pieces, params(styles=STYLES, maker_fill_share=s))
    assert chosen.total_bps <= taker.total_bps
    sliced = style_cost("sliced", long, short, slips, maker_fill_share=s, piece_slippage_bps=pieces)
    assert sliced.total_bps <= taker.total_bps


# ---------------------------------------------------------------------------- settings
def test_scanner_settings_allow_styles():
    s = load_settings(environ={})
    sp = ScannerParams.from_settings(s)
    assert sp.styles == ["taker"] and sp.edge_params().styles == ("taker",)  # nothing changes unless asked
    assert sp.maker_fill_share == D("0.7") and sp.edge_params().maker_fill_share == D("0.7")
    assert sp.maker_fees["sim-b"] == s.venue("sim-b").maker_fee and sp.taker_fees["sim-b"] == D("0.00055")
    env = {"HEDGEFLOW__SCANNER__STYLES": '["maker_first", "taker", "maker_first"]',
           "HEDGEFLOW__SCANNER__MAKER_FILL_SHARE": "0.5", "HEDGEFLOW__TRADE__SLICES": "6"}
    sp = ScannerParams.from_settings(load_settings(environ=env))
    ep = sp.edge_params()
    assert ep.styles == ("maker_first", "taker") and ep.maker_fill_share == D("0.5") and ep.slices == 6
    # unset: the trade's own style only
    sp = ScannerParams.from_settings(load_settings(environ={"HEDGEFLOW__TRADE__STYLE": "sliced"}))
    assert sp.edge_params().styles == ("sliced",)
    for bad in ({"HEDGEFLOW__SCANNER__MAKER_FILL_SHARE": "1.5"}, {"HEDGEFLOW__SCANNER__STYLES": '["iceberg"]'},
                {"HEDGEFLOW__SCANNER__STYLES": "[]"}):
        with pytest.raises(ConfigError, match="scanner"):
            load_settings(environ=bad)


def test_the_chosen_style_goes_into_the_trade_input():
    s = load_settings(environ={})
    assert settings_for_style(s, None) is s
    for style in STYLES:
        tp = params_from_settings(settings_for_style(s, style), "BTC/USDT:USDT", "sim-a", "sim-b", D(100), "trade-x")
        assert tp.style == style
    assert s.trade.style == "taker"  # the settings themselves are left alone


def test_every_place_that_names_the_styles_names_the_same_ones():
    """The styles are spelled in domain/edge.py (STYLES), in the settings and in the scanner's
    messages (pydantic Literals: config may not import domain); they must never drift apart."""
    from typing import get_args

    from config.settings import ScannerTuning, TradeExecution
    from domain.edge import STYLES
    from messages.scanner import ScannerParams, StartTradeRequest

    def literal(model, field: str) -> tuple[str, ...]:
        ann = model.model_fields[field].annotation
        while get_args(ann) and not all(isinstance(a, str) for a in get_args(ann)):
            ann = next(a for a in get_args(ann) if a is not type(None))
        return get_args(ann)

    assert literal(TradeExecution, "style") == STYLES
    assert literal(ScannerTuning, "styles") == STYLES
    assert literal(StartTradeRequest, "style") == STYLES
    assert set(literal(TradeExecution, "slice_style")) == set(literal(ScannerParams, "slice_style")) < set(STYLES)
