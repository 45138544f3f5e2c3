"""The one pre-trade gate (``domain/risk.py``) and the lifecycle table (``domain/lifecycle.py``):
pure functions, no server."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal as D

import pytest

from domain import risk
from domain.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    Exit,
    ExitReason,
    IllegalTransition,
    TradeState,
    check_transition,
)

VENUES = ["sim-a", "sim-b"]


def req(symbol="BTC/USDT:USDT", long="sim-a", short="sim-b", notional="1000", limit="10000"):
    return risk.check_request(symbol, long, short, D(notional), venues=VENUES, max_order_notional_usd=D(limit))


@pytest.mark.parametrize(("kw", "code", "names"), [
    ({"long": "nope"}, risk.UNKNOWN_VENUE, "--long"),
    ({"short": "nope"}, risk.UNKNOWN_VENUE, "--short"),
    ({"short": "sim-a"}, risk.SAME_VENUE, "--long and --short"),
    ({"notional": "0"}, risk.NOTIONAL_INVALID, "--notional"),
    ({"notional": "20000"}, risk.NOTIONAL_LIMIT, "limits.max_order_notional_usd"),
    ({"symbol": "BTCUSDT"}, risk.BAD_SYMBOL, "--symbol"),
])
def test_request_refusals_name_the_field_and_the_fix(kw, code, names):
    r = req(**kw)
    assert r is not None and r.code == code and names in r.detail


def test_a_good_request_passes():
    assert req() is None


@dataclass
class Facts:
    venue: str = "sim-a"
    error: str | None = None
    one_way: bool = True
    position_qty: D = D(0)
    free_margin: D = D(10_000)
    mark_price: D | None = D(100)
    margin_mode: str = "cross"


def venues(*checks, notional="1000"):
    return risk.check_venues("BTC/USDT:USDT", D(notional), leverage=3, margin_buffer=D("1.1"),
                             max_order_notional_usd=D(10_000), checks=list(checks))


@pytest.mark.parametrize(("facts", "code"), [
    (Facts(error="unknown symbol"), risk.BAD_SYMBOL),
    (Facts(one_way=False), risk.NOT_ONE_WAY_MODE),
    (Facts(margin_mode="isolated"), risk.ISOLATED_MARGIN),
    (Facts(position_qty=D("0.1")), risk.POSITION_EXISTS),
    (Facts(free_margin=D(300)), risk.INSUFFICIENT_MARGIN),  # needs 1000 / 3 × 1.1 = 366.67
    (Facts(mark_price=None), risk.NO_PRICE),
])
def test_venue_refusals(facts, code):
    r = venues(Facts(venue="sim-b"), facts)
    assert r is not None and r.code == code and facts.venue in r.detail


def test_venues_pass_and_notional_limit():
    assert venues(Facts(), Facts(venue="sim-b")) is None
    assert venues(Facts(), notional="20000").code == risk.NOTIONAL_LIMIT


def test_sizing_refusals():
    leg = risk.LegMarket(D("0.001"), D("0.001"), D("100"), D("50000"))
    assert risk.size_pair(D("50"), leg, leg).refusal.code == risk.BELOW_MIN_QTY
    assert risk.size_pair(D("0"), leg, leg).refusal.code == risk.NOTIONAL_INVALID
    ok = risk.size_pair(D("1000"), leg, leg)
    assert ok.refusal is None and ok.qty == D("0.02")


def test_sizing_and_margin_in_usd_at_each_venues_settlement_rate():
    """A USDC venue (Hyperliquid) priced 50,000 USDC beside a USDT venue at 49,990 USDT: with
    USDC at 1.01 USD the USDC price is the higher in USD (50,500), so the notional buys less."""
    usdt = risk.LegMarket(D("0.0001"), D("0.0001"), D("5"), D("49990"))
    usdc = risk.LegMarket(D("0.0001"), D("0.0001"), D("5"), D("50000"), usd_rate=D("1.01"))
    assert risk.size_pair(D("1000"), usdt, usdc).qty == D("0.0198")  # 1000 / 50,500, rounded down
    assert risk.size_pair(D("1000"), usdt, risk.LegMarket(D("0.0001"), D("0.0001"), D("5"), D("50000"))).qty \
        == D("0.0200")
    # 350 USDC at 1.05 USD = 367.5 USD free >= 366.67 needed; at 1 it is short
    assert venues(Facts(), Facts(venue="sim-d", free_margin=D(350))).code == risk.INSUFFICIENT_MARGIN
    ok = risk.check_venues("BTC/USDT:USDT", D(1000), leverage=3, margin_buffer=D("1.1"), max_order_notional_usd=D(10_000),
                           checks=[Facts(), Facts(venue="sim-d", free_margin=D(350))], usd_rates={"sim-d": D("1.05")})
    assert ok is None


def test_every_state_is_reachable_and_terminal_states_are_dead_ends():
    reached = {TradeState.OPENING} | {b for _, b in TRANSITIONS}
    assert reached == set(TradeState)
    assert not any(a in TERMINAL for a, _ in TRANSITIONS)


@pytest.mark.parametrize(("a", "b"), [("holding", "opening"), ("closed", "closing"), ("aborted", "holding"),
                                      ("opening", "holding"), ("verifying", "closed")])
def test_illegal_steps_raise(a, b):
    with pytest.raises(IllegalTransition, match=f"{a} → {b}"):
        check_transition(a, b)


def test_exit_text_keeps_the_recorded_reasons():
    assert Exit(ExitReason.SIGNAL_CLOSE, False, "done").text == "signal: done"
    assert Exit(ExitReason.ERROR, True, "KeyError").text == "error: KeyError"
    assert Exit(ExitReason.SPREAD_EXIT, False, "0.5 bps/8h < 1").text == "SPREAD_EXIT (0.5 bps/8h < 1)"
    assert Exit(ExitReason.MAX_HOLD).text == "MAX_HOLD"
