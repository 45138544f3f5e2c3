"""The backtest engine (``domain.backtest``) on small hand-made series: funding settlement by
settlement, entry timing, the exit rules, sizing and fees through the domain, the event-skipping
scanner against a cycle at every grid point, and the hindsight bound with mixed intervals."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from config import load_settings
from domain.backtest import CYCLE, Backtest
from domain.backtest_model import load_series
from domain.replay_data import ReplayRow
from domain.report import RateRow, hindsight_bound_curve, hindsight_upper_bound
from domain.risk import LegMarket, size_pair
from hedgeflow.commands.backtest import params_for

H = 3_600_000
T0 = 1_700_006_400_000  # a UTC midnight
SYM = "BTC/USDT:USDT"


def params(*overrides: tuple[str, str], venues=("a", "b")):
    return params_for(load_settings(profile="replay", environ={}), list(overrides), list(venues))


def rows_two_venues(hours: int = 48, flip_at_h: int | None = 30, price_a=D("30000"), price_b=D("30000"),
                    rate_a=D("-0.0002")):
    """``a`` settles hourly, ``b`` every 8 h. ``a`` pays the long (negative rate) and ``b`` pays the
    short well, so long a / short b opens at once; from ``flip_at_h`` ``a``'s hourly rate is a
    little above ``b``'s per hour: the spread is −0.4 bps per 8 h (an exit; the reverse pair is
    below ``min_spread_bps``)."""
    out = []
    for h in range(hours + 1):
        ra = rate_a if flip_at_h is None or h < flip_at_h else D("0.00013")
        out.append(ReplayRow(T0 + h * H, "a", SYM, ra, price_a))
        if h % 8 == 0:
            out.append(ReplayRow(T0 + h * H, "b", SYM, D("0.001"), price_b))
    return out


def run(rows, p):
    series = load_series(rows)
    return Backtest(series, p).run(), series


def test_funding_is_qty_mark_rate_at_each_settlement_on_each_venues_schedule():
    rows = rows_two_venues()
    res, _ = run(rows, params())
    (tr,) = res.trades
    assert (tr.long_venue, tr.short_venue) == ("a", "b")
    assert tr.opened_ms == T0  # the first cycle: the row at T0 is already settled, so not paid
    # independent recomputation: every settlement after the open, up to and including the close
    expect = D(0)
    for r in rows:
        if tr.opened_ms < r.t_ms <= tr.closed_ms:
            amount = tr.qty * r.price * r.rate
            expect += -amount if r.venue == "a" else amount
    assert tr.funding_usd == expect
    hourly = [s for s in tr.settlements if s[1] == "a"]
    eight = [s for s in tr.settlements if s[1] == "b"]
    assert len(hourly) > 20 and len(eight) == len(hourly) // 8  # each venue on its own schedule
    assert all(amount > 0 for *_, amount in hourly if _[0] < T0 + 30 * H)  # the long received a negative rate


def test_spread_exit_after_exit_checks_monitor_ticks_and_sizing_and_fees_through_the_domain():
    p = params(("taker_fee.a", "0.0002"), ("taker_fee.b", "0.0006"))
    res, _ = run(rows_two_venues(), p)
    (tr,) = res.trades
    assert tr.exit_reason == "SPREAD_EXIT"
    mi = p.hold.monitor_interval_ms
    flip = T0 + 30 * H  # first monitor tick at the flip sees the spread below 0; the 3rd in a row exits
    first = tr.opened_ms + -(-(flip - tr.opened_ms) // mi) * mi
    assert tr.closed_ms == first + (p.hold.exit_checks - 1) * mi
    qty = size_pair(D("1000"), LegMarket(p.qty_step, p.min_qty, p.min_notional, D("30000")),
                    LegMarket(p.qty_step, p.min_qty, p.min_notional, D("30000"))).qty
    assert tr.qty == qty == D("0.033")
    # four fills on the book model: 1 bp from the mark each (half spread), each venue's own fee
    fill = D("30000") * D("0.0001")
    expect_fees = qty * ((30000 + fill) * D("0.0002") + (30000 - fill) * D("0.0006")
                         + (30000 - fill) * D("0.0002") + (30000 + fill) * D("0.0006"))
    assert tr.fees_usd == expect_fees
    assert tr.slippage_usd == 4 * qty * fill
    assert tr.net() == tr.funding_usd - tr.fees_usd - tr.slippage_usd + tr.basis_usd


def test_costs_gate_the_entry_with_the_scanners_edge_model():
    # a spread worth 26 bps per 8 h opens at a 24 h horizon but not at 1 h (costs 26 bps round trip)
    assert len(run(rows_two_venues(), params(("horizon_h", "1")))[0].trades) == 0
    assert len(run(rows_two_venues(), params(("min_spread_bps", "30")))[0].trades) == 0
    assert len(run(rows_two_venues(), params())[0].trades) == 1


def test_max_hold_and_cooldown_then_a_second_trade():
    p = params(("max_hold_s", str(10 * 3600)), ("symbol_cooldown_s", str(2 * 3600)))
    res, _ = run(rows_two_venues(flip_at_h=None), p)
    first, second = res.trades[:2]
    assert first.exit_reason == "MAX_HOLD" and first.closed_ms == first.opened_ms + 10 * H
    assert second.opened_ms >= first.closed_ms + 2 * H  # the symbol's cool-down, then a cycle opens again


def test_a_price_run_reduces_then_closes_on_liquidation_risk():
    rows = rows_two_venues(flip_at_h=None)
    bumped = [replace(r, price=r.price * (1 + D("0.015") * max(0, (r.t_ms - T0) // H - 2))) for r in rows]
    res, _ = run(bumped, params())
    tr = res.trades[0]
    assert tr.reductions >= 1 and tr.exit_reason == "LIQUIDATION_RISK" and tr.emergency
    assert tr.held == 0 and tr.qty == D("0.033")


class EveryCycle(Backtest):
    """The scanner as the workflow runs it: a cycle at every grid point."""

    def run(self, progress=None):
        self.start = min(s.times[0] for s in self.series.values())
        self.end = max(s.times[-1] for s in self.series.values())
        for t in range(self.start, self.end + 1, self.p.cycle_ms):
            self._cycles_at.add(t)
            self._push(t, CYCLE)
        return super().run(progress)


@pytest.mark.parametrize("flip", [30, None])
def test_cycles_only_where_a_verdict_can_improve_open_the_same_trades_as_every_cycle(flip):
    # over 12 h: a gives 12 bps, b 10 bps per settlement in the horizon: one (22) does not pay the
    # 26 bps of costs, two (32) do, so an entry waits until a second settlement of b enters the horizon
    p = params(("cycle_s", "600"), ("max_hold_s", str(9 * 3600)), ("symbol_cooldown_s", "1800"), ("horizon_h", "12"))
    rows = rows_two_venues(hours=60, flip_at_h=flip, rate_a=D("-0.0001"))
    fast, _ = run(rows, p)
    full = EveryCycle(load_series(rows), p).run()
    key = [(t.opened_ms, t.closed_ms, t.exit_reason, t.funding_usd) for t in fast.trades]
    assert len(key) >= 3
    assert key == [(t.opened_ms, t.closed_ms, t.exit_reason, t.funding_usd) for t in full.trades]
    assert fast.cycles < full.cycles / 4
    # never in the 4 h after a settlement of b: the next two are then more than 12 h away
    assert all((t.opened_ms - T0) % (8 * H) >= 4 * H for t in fast.trades)
    assert fast.trades[0].opened_ms == T0 + 4 * H  # the cycle where b's second settlement enters the horizon


def test_hindsight_bound_accrues_per_hour_over_common_time_for_mixed_intervals():
    n = D("1000")
    rows = []
    for h in range(1, 25):  # hourly venue: 1e-4 per hour; 8-hourly venue: 0
        rows.append(RateRow(T0 + h * H, "hourly", SYM, D("0.0001")))
    for h in (8, 16, 24):
        rows.append(RateRow(T0 + h * H, "eight", SYM, D("0")))
    # 24 hours × 1e-4 × 1000 = 2.40 USD; pairing same-instant settlements only would see 3 × 1e-4 = 0.30
    assert hindsight_upper_bound(rows, n, 1) == D("2.4")
    curve = hindsight_bound_curve(rows, n, 1)
    assert curve[-1] == (T0 + 24 * H, D("2.4")) and all(b[1] >= a[1] for a, b in zip(curve, curve[1:], strict=False))
    # the 8-hourly venue's rate covers its whole interval: 8e-4 per 8 h beats 1e-4 per hour
    rows2 = [RateRow(r.t_ms, r.venue, r.symbol, D("0.0016") if r.venue == "eight" else r.rate) for r in rows]
    assert hindsight_upper_bound(rows2, n, 1) == D("2.4")  # |2e-4 − 1e-4| per hour × 24 h
    # same intervals: the sum of the best same-instant pairs, as before
    same = [RateRow(T0 + h * H, v, SYM, r) for h in (8, 16) for v, r in (("x", D("0.0003")), ("y", D("-0.0001")))]
    assert hindsight_upper_bound(same, n, 1) == D("0.8")


def test_seven_venues_mixed_schedules_the_same_trades_as_every_cycle_and_as_ranking_every_symbol(tmp_path, monkeypatch):
    from test_backtest_synth import VENUES, write_synthetic

    import domain.backtest as engine
    from domain.replay_data import read_rows

    path = tmp_path / "seven.csv"
    write_synthetic(path, days=10, symbols=3)
    rows = list(read_rows(path))
    p = params(("cycle_s", "600"), ("taker_fee", "0.0002"), ("horizon_h", "48"), ("symbol_cooldown_s", "7200"),
               venues=[v for v, _, _ in VENUES])

    def key(res):
        return [(t.symbol, t.long_venue, t.short_venue, t.opened_ms, t.closed_ms, t.exit_reason, t.funding_usd,
                 t.fees_usd) for t in res.trades]

    fast = Backtest(load_series(rows), p).run()
    assert len(fast.trades) >= 5 and {t.long_venue for t in fast.trades} | {t.short_venue for t in fast.trades} >= {
        "hourly", "offset8"}
    assert key(fast) == key(EveryCycle(load_series(rows), p).run())
    real = engine.check_gates  # without the symbol pre-filter: every symbol ranked every cycle
    monkeypatch.setattr(engine, "check_gates", lambda sym, lv, sv, *a, **k: None if lv == "" else real(sym, lv, sv, *a, **k))
    slow = Backtest(load_series(rows), p).run()
    assert key(fast) == key(slow) and fast.curve.equity == slow.curve.equity


def test_rank_pairs_without_rejected_edges_accepts_and_counts_the_same():
    import random

    from domain.edge import EdgeParams, LegQuote, rank_pairs

    rng = random.Random(3)
    for _ in range(300):
        now = T0 + rng.randrange(8 * H)
        legs = [LegQuote(v, D(str(round(rng.uniform(-0.002, 0.002), 6))), iv, now + rng.randrange(-iv, iv),
                         D(str(round(rng.uniform(99.6, 100.4), 2))), now - rng.choice([0, 0, 0, 120_000]),
                         D(rng.choice(["0.0005", "0.0002"])))
                for v, iv in (("a", H), ("b", 4 * H), ("c", 8 * H), ("d", 8 * H))]
        p = EdgeParams(D(1000), rng.choice([H, 8 * H, 24 * H]), D(rng.choice(["1", "0", "3"])), D(2), D("0.005"),
                       rng.choice([0, 60_000, 3 * H]), 60_000)
        full, rejected, counts = rank_pairs({SYM: legs}, p, now)
        lean, none, lean_counts = rank_pairs({SYM: legs}, p, now, keep_rejected=False)
        assert (lean, none, lean_counts) == (full, [], counts)


def test_odd_files_one_venue_missing_marks_and_a_repeated_row():
    one = [ReplayRow(T0 + h * H, "a", SYM, D("0.001"), D("30000")) for h in range(0, 48, 8)]
    res, _ = run(one, params(venues=["a"]))
    assert res.trades == [] and res.curve.equity[-1] == 0
    rows = rows_two_venues(flip_at_h=None)
    rows = [replace(r, price=None) if r.venue == "a" and r.t_ms > T0 else r for r in rows]  # carried forward
    rows.append(rows[5])  # the same settlement twice
    res, series = run(rows, params())
    assert series[("a", SYM)].prices[-1] == D("30000") and len(series[("a", SYM)].times) == 49
    assert len(res.trades) == 1 and res.trades[0].funding_usd > 0


def test_an_exit_spread_above_the_entry_spread_exits_after_exit_checks_ticks_from_the_open():
    p = params(("exit_spread_bps", "100"))  # the pair opens at 26 bps per 8 h: below 100 from the first tick
    res, _ = run(rows_two_venues(flip_at_h=None), p)
    tr = res.trades[0]
    assert tr.exit_reason == "SPREAD_EXIT"
    assert tr.closed_ms == tr.opened_ms + p.hold.exit_checks * p.hold.monitor_interval_ms
