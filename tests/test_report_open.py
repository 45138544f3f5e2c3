"""``hedgeflow report`` counts trades still open: fees, funding and slippage so far, marked open
(``control.report.outcome`` → ``domain.report.open_outcome``)."""

from __future__ import annotations

from decimal import Decimal as D

from control.report import outcome, render
from domain.lifecycle import TradeState
from domain.report import totals
from messages.trade import LegState, TradeStatus
from venues.models import Position

SYM = "BTC/USDT:USDT"


def status(state: TradeState, **kw) -> TradeStatus:
    long = LegState(venue="sim-a", side="buy", filled_qty=D("0.01"), opened_qty=D("0.01"), avg_price=D("30003"),
                    fees=D("0.150015"), position=Position(symbol=SYM, qty=D("0.01"), entry_price=D("30003"),
                                                          mark_price=D("30010"), unrealized_pnl=D("0.07")))
    short = LegState(venue="sim-b", side="sell", filled_qty=D("0.01"), opened_qty=D("0.01"), avg_price=D("29997"),
                     fees=D("0.149985"), position=Position(symbol=SYM, qty=D("-0.01"), entry_price=D("29997"),
                                                           mark_price=D("30010"), unrealized_pnl=D("-0.13")))
    return TradeStatus(trade_id="trade-BTCUSDT-sim-a-sim-b-s1", state=state, symbol=SYM, long_venue="sim-a",
                       short_venue="sim-b", notional_usd=D("300"), legs=[long, short], **kw)


def test_a_holding_trade_counts_its_opening_fees_funding_and_marked_price_pnl():
    st = status(TradeState.HOLDING, funding_collected_usd=D("0.42"))
    assert st.fees_usd == 0  # the workflow settles fees_usd only at the close
    r = outcome(st)
    assert r.open and r.fees_usd == D("0.300000")  # both opening fills' fees
    assert r.funding_usd == D("0.42")
    assert r.price_pnl_usd == D("-0.06")  # the venues' marks against the entry prices: slippage and basis
    assert r.net_usd == D("0.42") - D("0.3") - D("0.06")
    text = render([r], None, D("300"))
    assert "open, marked" in text and "0.30" in text.splitlines()[1]
    assert "1 open" in text


def test_a_closed_trade_is_reported_from_its_settled_pnl_as_before():
    st = status(TradeState.CLOSED, funding_collected_usd=D("0.5"), fees_usd=D("0.6"), realized_pnl_usd=D("-0.2"))
    for leg, p in zip(st.legs, (D("0.1"), D("-0.2")), strict=True):
        leg.price_pnl = p
    r = outcome(st)
    assert not r.open and (r.fees_usd, r.price_pnl_usd, r.net_usd) == (D("0.6"), D("-0.1"), D("-0.2"))
    t = totals([r, outcome(status(TradeState.HOLDING))])
    assert (t.trades, t.open_trades) == (2, 1)
    assert t.fees_usd == D("0.9")
