"""Hand-computed cases for the pure trade arithmetic."""

from decimal import Decimal as D

import pytest

from domain.funding import interval_ms_from_hours
from domain.funding import spread_bps_8h as spread
from domain.hedge import hedge_gap, liquidation_distance, pair_excess
from domain.ids import trade_workflow_id
from domain.pnl import FillLike, leg_pnl
from domain.risk import LegMarket, size_pair


def test_size_pair_uses_coarser_step_and_higher_price():
    long = LegMarket(qty_step=D("0.001"), min_qty=D("0.001"), min_notional=D("5"), price=D("30000"))
    short = LegMarket(qty_step=D("0.01"), min_qty=D("0.01"), min_notional=D("5"), price=D("30010"))
    s = size_pair(D("1000"), long, short)
    # 1000 / 30010 = 0.033322... -> down to 0.01 step
    assert s.reason is None
    assert s.qty == D("0.03") and s.step == D("0.01")


def test_size_pair_refuses_below_minimum_with_reason():
    leg = LegMarket(qty_step=D("0.001"), min_qty=D("0.001"), min_notional=D("100"), price=D("30000"))
    s = size_pair(D("50"), leg, leg)
    assert s.reason == "BELOW_MIN_QTY"
    assert "minimum notional 100" in s.detail


def test_size_pair_refuses_nonpositive_notional():
    leg = LegMarket(D("0.001"), D("0.001"), D("5"), D("30000"))
    assert size_pair(D("0"), leg, leg).reason == "NOTIONAL_INVALID"


def test_hedge_gap():
    assert hedge_gap(D("1.00"), D("0.96"), D("1.00")) == D("0.04")
    assert hedge_gap(D("0.5"), D("-0.5"), D("0.5")) == 0  # sign is ignored
    with pytest.raises(ValueError):
        hedge_gap(D("1"), D("1"), D("0"))


def test_liquidation_distance():
    assert liquidation_distance(D("100"), D("80")) == D("0.2")
    assert liquidation_distance(D("100"), D("125")) == D("0.25")
    assert liquidation_distance(D("100"), None) is None
    assert liquidation_distance(D("100"), D("0")) is None


def test_spread_normalises_each_venue_by_its_interval():
    # long pays 0.0001 per 8 h; short receives 0.0001 per 1 h = 0.0008 per 8 h
    # net 0.0007 per 8 h = 7 bps
    h8, h1 = interval_ms_from_hours(D("8")), interval_ms_from_hours(D("1"))
    assert spread(D("0.0001"), h8, D("0.0001"), h1) == D("7")
    # identical rates on identical intervals earn nothing
    assert spread(D("0.0003"), h8, D("0.0003"), h8) == 0


def test_leg_pnl_long_round_trip():
    fills = [
        FillLike("buy", D("0.5"), D("30000"), D("7.5")),
        FillLike("sell", D("0.5"), D("30100"), D("7.525")),
    ]
    pnl = leg_pnl(fills, [D("-1.5"), D("0.25")])
    assert pnl.price_pnl == D("50.0")
    assert pnl.fees == D("15.025")
    assert pnl.funding == D("-1.25")
    assert pnl.total == D("33.725")
    assert pnl.net_qty == 0


def test_leg_pnl_rejects_bad_side():
    with pytest.raises(ValueError):
        leg_pnl([FillLike("hold", D("1"), D("1"), D("0"))], [])


def test_trade_workflow_id():
    assert trade_workflow_id("BTC/USDT:USDT", "sim-a", "sim-b", "20261123T101500") == (
        "trade-BTCUSDT-sim-a-sim-b-20261123T101500"
    )
    with pytest.raises(ValueError):
        trade_workflow_id("///", "a", "b", "x")


def test_liquidation_action_with_hysteresis():
    from domain.hedge import LiqAction, liquidation_action

    kw = dict(close_below=D("0.05"), reduce_below=D("0.10"), now_ms=100_000, cooldown_ms=60_000)
    assert liquidation_action(None, **kw) is LiqAction.NONE
    assert liquidation_action(D("0.20"), **kw) is LiqAction.NONE
    assert liquidation_action(D("0.04"), **kw) is LiqAction.CLOSE
    assert liquidation_action(D("0.08"), **kw) is LiqAction.REDUCE
    # reduced 30 s ago: cool down; 70 s ago and no further away: close; further away: reduce again
    assert liquidation_action(D("0.08"), last_reduce_ms=70_000, dist_at_reduce=D("0.08"), **kw) is LiqAction.COOLING
    assert liquidation_action(D("0.08"), last_reduce_ms=30_000, dist_at_reduce=D("0.08"), **kw) \
        is LiqAction.NO_IMPROVEMENT
    assert liquidation_action(D("0.09"), last_reduce_ms=30_000, dist_at_reduce=D("0.08"), **kw) is LiqAction.REDUCE
    # earlier versions: no hysteresis, every reading in the zone reduces
    assert liquidation_action(D("0.08"), last_reduce_ms=70_000, dist_at_reduce=D("0.08"), hysteresis=False,
                              **kw) is LiqAction.REDUCE


def test_close_sequence_keeps_a_hedged_pair_hedged():
    from domain.hedge import close_sequence

    # a hedged pair: the leg on the venue that failed last goes first, ties to long
    assert close_sequence(True, True, at_once=False) == "long"
    assert close_sequence(True, True, at_once=False, long_failed_ms=5, short_failed_ms=9) == "short"
    assert close_sequence(True, True, at_once=False, long_failed_ms=9, short_failed_ms=5) == "long"
    # the close is about one leg, or only one leg holds anything: each venue at once
    assert close_sequence(True, True, at_once=True, short_failed_ms=9) == "both"
    assert close_sequence(True, False, at_once=False, short_failed_ms=9) == "both"
    assert close_sequence(False, True, at_once=False) == "both"


def test_pair_excess():
    assert pair_excess(D("1.43"), D("2.86")) == ("short", D("1.43"))
    assert pair_excess(D("0.32"), D("0.23")) == ("long", D("0.09"))
    assert pair_excess(D("1"), D("1")) is None
    assert pair_excess(D("0"), D("1")) is None and pair_excess(D("1"), D("0")) is None  # a lone leg: flattened
