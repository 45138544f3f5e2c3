"""The figures of ``hedgeflow bench``: percentiles, what each figure is computed from (the
venues' own arrival stamps), the targets, and the printed table. Pure functions."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

# targets of issue 12 (loopback, 2-core machine, one bench run)
TARGETS = {
    "leg_skew_ms_p99": 5.0,
    "open_to_hedged_ratio_p99": 2.0,
    "orphan_exposure_ms_p99": 30.0,
    "concurrency_cpu_pct": 50.0,
    "concurrency_cadence": 0.95,
    "concurrency_venue_weight_per_s": 40.0,
}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = max(1, math.ceil(q / 100 * len(xs)))
    return float(xs[min(k, len(xs)) - 1])


def summary(values: Sequence[float], **extra: Any) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    out: dict[str, Any] = {"p50": None, "p99": None, "n": len(vals)}
    if vals:
        out.update(p50=round(percentile(vals, 50), 3), p99=round(percentile(vals, 99), 3),
                   mean=round(sum(vals) / len(vals), 3), max=round(max(vals), 3))
    out.update(extra)
    return out


def iso_ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> tuple[float, float]:
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def arrivals(states: dict[str, dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(venue, clientOrderId) → orders with that id, from /_sim/state of every venue."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for venue, st in states.items():
        for o in st.get("orders", []):
            out.setdefault((venue, o["clientOrderId"]), []).append(o)
    return out


def _arrived(idx: dict, venue: str, cid: str) -> int | None:
    got = idx.get((venue, cid))
    return int(got[0]["arrived_ns"]) if got else None


def skew_and_latency(rows: list[dict], idx: dict, lv: str, sv: str, hedged_key: str) -> tuple[list, list]:
    skews, lats = [], []
    for r in rows:
        a, b = _arrived(idx, lv, r["long_cid"]), _arrived(idx, sv, r["short_cid"])
        if a is not None and b is not None:
            skews.append(abs(a - b) / 1e6)
        if hedged_key == "hedged_ms":
            lats.append(r["hedged_ms"] - r["t0_ns"] / 1e6)
        else:
            lats.append((r["hedged_ns"] - r["t0_ns"]) / 1e6)
    return skews, lats


def orphan_times(rows: list[dict], idx: dict) -> list[float]:
    out = []
    for r in rows:
        opened = _arrived(idx, r["venue"], r["open_cid"] if "open_cid" in r else r["long_cid"])
        closes = r.get("close_cids") or [r.get("close_cid")]
        ends = [x for x in (_arrived(idx, r["venue"], c) for c in closes if c) if x is not None]
        if opened is not None and ends:
            out.append((max(ends) - opened) / 1e6)
    return out


def rounded(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 3)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 2)


def evaluate_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    def row(name: str, value: float | None, target: float, at_least: bool = False) -> dict[str, Any]:
        ok = value is not None and (value >= target if at_least else value <= target)
        miss = None if ok or value is None else round(abs(value - target), 3 if target < 10 else 1)
        return {"target": name, "value": value, "limit": target, "met": ok, "missed_by": miss}

    c, n = r["concurrency"], r["concurrency"]["trades"]
    return [
        row("leg skew p99 ≤ 5 ms", r["leg_skew_ms"]["p99"], TARGETS["leg_skew_ms_p99"]),
        row("open-to-hedged p99 ≤ 2× baseline", r["ratios"]["open_to_hedged_ms"]["p99"],
            TARGETS["open_to_hedged_ratio_p99"]),
        row("orphan exposure p99 ≤ 30 ms", r["orphan_exposure_ms"]["p99"], TARGETS["orphan_exposure_ms_p99"]),
        row(f"{n} holding trades ≤ 50 % of one core", c["worker_cpu_pct"], TARGETS["concurrency_cpu_pct"]),
        row(f"{n} holding trades: cadence ≥ 0.95", c.get("cadence"), TARGETS["concurrency_cadence"], at_least=True),
        row("busiest venue ≤ 40 weight/s", c.get("venue_weight_per_s"), TARGETS["concurrency_venue_weight_per_s"]),
    ]


def format_table(r: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        if x is None:
            return "-"
        return f"{x:,.1f}" if isinstance(x, float) else str(x)

    lines = [
        f"{'figure':<24} {'hedgeflow p50':>13} {'p99':>9} {'n':>5}   {'baseline p50':>12} {'p99':>9}   {'ratio p99':>9}",
        "-" * 92,
    ]
    for key, label in (("leg_skew_ms", "leg skew (ms)"), ("open_to_hedged_ms", "open-to-hedged (ms)"),
                       ("orphan_exposure_ms", "orphan exposure (ms)")):
        h, b = r[key], r["baseline"][key]
        lines.append(f"{label:<24} {f(h['p50']):>13} {f(h['p99']):>9} {h['n']:>5}   {f(b['p50']):>12} "
                     f"{f(b['p99']):>9}   {f(r['ratios'][key]['p99']):>9}")
    o = r["orphan_exposure_ms"]
    lines.append(f"{'  (workflow clock)':<24} {f(o.get('workflow_p50')):>13} {f(o.get('workflow_p99')):>9}")
    c = r["concurrency"]
    lines += [
        "",
        f"concurrency: {c['trades']} trades holding, monitor every {c['monitor_interval_s']:g}s, "
        f"{c['window_s']:g}s window, {c.get('workers', 1)} worker(s) at {f(c.get('hold_venue_rps'))} weight/s "
        f"per venue: worker CPU {f(c['worker_cpu_pct'])}% of one core, "
        f"RSS {f(c['worker_rss_mb'])} MB (peak {f(c['worker_peak_rss_mb'])}), "
        f"dev server CPU {f(c['server_cpu_pct'])}%",
        f"  cadence {c.get('cadence')} ({c.get('cadence_sample')} trades sampled, tick period p50 "
        f"{(c.get('tick_period_s') or {}).get('p50')} s, p99 {(c.get('tick_period_s') or {}).get('p99')} s); busiest venue "
        f"{f(c.get('venue_weight_per_s'))} weight/s; {f(c.get('history_events_per_trade_hour'))} history "
        f"events per trade-hour",
        f"  history events per run: p50 {f(c['history_events_per_run']['p50'])}, "
        f"max {f(c['history_events_per_run'].get('max'))}; {f(c['history_events_per_min'])} events/min per trade",
    ]
    s = r["scan_cycle"]
    if s.get("available"):
        extra = {k: v for k, v in s.items() if k not in ("available", "symbols", "venues")}
        lines.append(f"scanner cycle {s['symbols']} symbols x {s['venues']} venues: "
                     + ", ".join(f"{k} {f(v) if not isinstance(v, dict) else v}" for k, v in extra.items()))
    else:
        lines.append(f"scanner cycle: not measured ({s.get('reason')})")
    lines += ["", "targets:"]
    for t in r["targets"]:
        mark = "met" if t["met"] else (f"MISSED by {t['missed_by']}" if t["missed_by"] is not None else "n/a")
        lines.append(f"  {t['target']:<42} value {f(t['value']):>8}  {mark}")
    m = r["meta"]
    start = f"load avg at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}, " \
        if m.get("loadavg_at_start") else ""
    lines.append(f"\n{m['mode']} run, {m['wall_s']:g}s wall, {m['cpus']} CPUs, {start}load avg at end "
                 f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_end'])}")
    return "\n".join(lines)


def markdown_table(r: dict[str, Any]) -> str:
    """The README's figures table (``## Figures``), rendered from one bench JSON: every row from
    the run, nothing typed by hand (``python -m lab.figures bench.json``)."""
    def f(x: Any, unit: str = "") -> str:  # small figures (cadence, its miss) keep three decimals
        if x is None:
            return "—"
        if isinstance(x, float):
            return f"{x:,.3f}{unit}" if abs(x) < 1 else f"{x:,.1f}{unit}"
        return f"{x}{unit}"

    targets = {t["target"]: t for t in r["targets"]}

    def verdict(name: str) -> str:
        t = next((t for k, t in targets.items() if k.endswith(name) or name in k), None)
        if t is None:
            return ""
        return "met" if t["met"] else (f"missed by {f(t['missed_by'])}" if t["missed_by"] is not None else "n/a")

    m, c = r["meta"], r["concurrency"]
    rows = [f"<!-- figures: hedgeflow bench --opens {m['opens']} --orphans {m['orphans']} --concurrent "
            f"{m['concurrent']} ({m['wall_s']:g} s wall), {m['cpus']} CPUs, load average "
            f"{m['loadavg_at_start'][0]:.1f} at start, {m['loadavg_at_end'][0]:.1f} at end; "
            f"rendered by lab/figures.py markdown_table -->",
            "| figure (ms unless stated) | hedgeflow p50 | hedgeflow p99 | baseline p50 | baseline p99 | ratio p99 | target |",
            "|---|---|---|---|---|---|---|"]
    for key, label, target in (("leg_skew_ms", "leg skew", "p99 ≤ 5 ms — " + verdict("leg skew p99 ≤ 5 ms")),
                               ("open_to_hedged_ms", "open-to-hedged",
                                "p99 ≤ 2× baseline — " + verdict("open-to-hedged p99 ≤ 2× baseline")),
                               ("orphan_exposure_ms", "orphan exposure, venue clock",
                                "p99 ≤ 30 ms — " + verdict("orphan exposure p99 ≤ 30 ms"))):
        h, b = r[key], r["baseline"][key]
        rows.append(f"| {label} (n = {h['n']}) | {f(h['p50'])} | {f(h['p99'])} | {f(b['p50'])} | {f(b['p99'])} "
                    f"| {f(r['ratios'][key]['p99'])} | {target} |")
    o = r["orphan_exposure_ms"]
    rows.append(f"| orphan exposure, workflow clock | {f(o.get('workflow_p50'))} | {f(o.get('workflow_p99'))} "
                "| | | | |")
    s = r["scan_cycle"]
    if s.get("available"):
        rows.append(f"| scanner cycle, {s['symbols']} symbols × {s['venues']} venues | "
                    + ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("available", "symbols", "venues"))
                    + " | | | | | |")
    n, tp = c["trades"], c.get("tick_period_s") or {}
    rows += [
        f"| {n} holding trades, monitor every {c['monitor_interval_s']:g} s, {c['window_s']:g} s window, "
        f"{c.get('workers', 1)} worker(s) at {f(c.get('hold_venue_rps'))} weight/s per venue | worker "
        f"{f(c['worker_cpu_pct'])} % of one core, RSS {f(c['worker_rss_mb'])} MB; dev server "
        f"{f(c['server_cpu_pct'])} % | | | | | ≤ 50 % of one core — {verdict('≤ 50 % of one core')} |",
        f"| cadence ({c.get('cadence_sample')} trades sampled) | {f(c.get('cadence'))} (tick period p50 "
        f"{f(tp.get('p50'))} s, p99 {f(tp.get('p99'))} s) | | | | | ≥ 0.95 — {verdict('cadence ≥ 0.95')} |",
        f"| busiest venue | {f(c.get('venue_weight_per_s'))} weight/s | | | | | ≤ 40 — "
        f"{verdict('busiest venue ≤ 40 weight/s')} |",
        f"| history events per trade-hour | {f(c.get('history_events_per_trade_hour'))} | | | | | |",
    ]
    if c.get("opening"):
        op = c["opening"]
        rows.append(f"| opening the {n} trades, {op['in_flight']} at a time | {f(op['wall_s'])} s wall; start to "
                    f"holding p50 {f(op['start_to_holding_s']['p50'])} s, p99 {f(op['start_to_holding_s']['p99'])} s "
                    f"| | | | | |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m lab.figures bench.json: the README's table from that run
    import json
    import sys

    print(markdown_table(json.loads(open(sys.argv[1]).read())))
