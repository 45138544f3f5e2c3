"""`hedgeflow bench` internals at a tiny size: the JSON carries every figure the issue names and
each is a positive number. No timed assertions (figures depend on the machine)."""

from __future__ import annotations

import json

from lab.bench import BenchConfig, evaluate_targets, format_table, percentile, run_bench, summary
from lab.figures import markdown_table

FIGURES = ("leg_skew_ms", "open_to_hedged_ms", "orphan_exposure_ms")


def test_percentile_and_summary():
    xs = list(range(1, 101))
    assert percentile(xs, 50) == 50 and percentile(xs, 99) == 99 and percentile([7], 99) == 7
    s = summary([3.0, 1.0, 2.0])
    assert s["p50"] == 2.0 and s["p99"] == 3.0 and s["n"] == 3
    assert summary([])["n"] == 0 and summary([])["p50"] is None


async def test_bench_tiny_run_reports_every_figure(tmp_path):
    result = await run_bench(BenchConfig.tiny())
    json.dumps(result, default=str)  # serialisable
    for key in (*FIGURES, "baseline", "ratios", "scan_cycle", "concurrency", "execution"):
        assert key in result, key
    for key in FIGURES:
        for src in (result[key], result["baseline"][key]):
            assert src["n"] >= 2, (key, src)
            assert src["p50"] > 0 and src["p99"] >= src["p50"], (key, src)
        assert result["ratios"][key]["p99"] > 0
    c = result["concurrency"]
    assert c["trades"] == 3 and c["closed_after"] == 3
    assert c["worker_cpu_pct"] > 0 and c["worker_rss_mb"] > 0
    assert c["history_events_per_run"]["p50"] > 0
    # issue 12: held at the production limiter; ticks, venue weight and events counted in the window
    assert c["hold_venue_rps"] == 40 and c["workers"] == 1
    assert 0 < c["cadence"] <= 1.5 and c["cadence_sample"] == 3
    assert c["venue_weight_per_s"] > 0 and set(c["venue_weight_by_venue"]) == {"sim-a", "sim-b"}
    assert c["venue_weight_per_s"] == max(c["venue_weight_by_venue"].values())
    assert c["history_events_per_trade_hour"] > 0
    assert c["activity_s"]["monitor_read.local_in_task"]["n"] > 0 and c["tick_period_s"]["n"] > 0
    # monitor-v2: one local activity a tick, no activity task (nor monitor-v1's, nor the four before it)
    assert "monitor_read.start_to_close" not in c["activity_s"] and "market_snapshot.start_to_close" not in c["activity_s"]
    o = c["opening"]  # where the opening's time went (status polled from visibility, not queried)
    assert o["start_to_holding_s"]["n"] == 3 and o["wall_s"] > 0 and o["phases_s"]["open"]["n"] == 3
    assert o["phases_s"]["workflow_task.schedule_to_start"]["n"] > 0
    assert result["meta"]["venues_flat_after"] is True
    ex = result["execution"]  # issue 15: one object per style, the same books and price path
    assert set(ex) == {"taker", "maker_first", "sliced"}
    for style in ex.values():
        assert style["cost_per_musd"] > 0 and style["n"] >= 2 and 0 <= style["unhedged_p99_s"] < 5, style
    targets = evaluate_targets(result)
    assert len(targets) == 6 and {t["target"] for t in targets} >= {"busiest venue ≤ 40 weight/s"}
    table = format_table(result)
    assert "leg skew" in table and "open-to-hedged" in table and "orphan exposure" in table
    md = markdown_table(result)  # the README's figures table, from the run
    assert md.count("\n| ") >= 9 and "| leg skew (n = 3) |" in md and "| cadence (3 trades sampled) |" in md
    assert all(line.count("|") == 8 for line in md.splitlines()[1:]), md


def test_execution_exposure_samples_pair_each_imbalance_with_what_evens_it():
    from decimal import Decimal as D

    from lab.bench_execution import exposure_samples

    # a taker pair 5 ms apart; a maker fill in two parts, each hedged 100 ms later; a lag never evened
    assert exposure_samples([(1000, D(1)), (1005, D(-1))]) == [0.005]
    assert exposure_samples([(0, D(2)), (100, D(-2)), (500, D(1)), (600, D(-1))]) == [0.1, 0.1]
    assert exposure_samples([(0, D(2)), (300, D(-1)), (900, D(-1))]) == [0.3, 0.9]
    assert exposure_samples([(0, D(1)), (400, D(-2)), (1000, D(1))]) == [0.4, 0.6]  # overshoot, then evened
    assert exposure_samples([(0, D(1)), (250, D(0.5))]) == [0.25, 0.0]  # never evened: until the last fill
