"""``hedgeflow bench``: leg skew, open-to-hedged latency, orphan exposure, a plain asyncio +
ccxt baseline, the scanner cycle and a 200-trade concurrency run — all measured in one run.

Everything is self-contained: a Temporal dev server on free ports with a temporary state dir,
simulated venues (``python -m venues.sim`` subprocesses) and one worker subprocess
(``python -m hedgeflow worker``). Nothing touches a running ``hedgeflow up``.

Definitions (all loopback, the same simulators for hedgeflow and the baseline):

* **leg skew** — ``|arrived_ns(long open order) − arrived_ns(short open order)|`` as stamped by
  the venues when each request arrived (``/_sim/state``), per open.
* **open-to-hedged** — from the decision (wall clock just before ``open_trade`` is called) to
  the workflow time at which both fills were verified and the hedge gap checked
  (``TradeStatus.hedged_at``). Includes the pre-trade venue checks, leverage, both orders and
  their verification. The baseline does the same venue calls and stops its clock when both
  fills are verified.
* **orphan exposure** — one venue rejects the next order (``reject_orders: 1``), so one leg
  fills alone: ``arrived_ns(lone leg's last close order) − arrived_ns(lone leg's open order)``,
  i.e. venue time from the lone fill to flat. The workflow's own figure
  (``TradeStatus.orphan_exposure_ms``: workflow time from both results known to flat) is
  reported beside it as ``workflow_p50``/``workflow_p99``.
* **concurrency** — N trades opened, then held on ``workers`` workers at the production limiter
  (``hold_venue_rps``, 40 weight/s per venue) at ``monitor_interval_s``: worker CPU, cadence,
  the busiest venue's weight per second, history events per trade-hour (lab/bench_hold.py
  defines each).

The :class:`lab.harness.Lab` (dev server + sims + worker subprocess) is shared with ``hedgeflow chaos``;
the figures and the table are in lab/figures.py, the baseline in lab/baseline.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from lab.baseline import Baseline
from lab.bench_execution import ExecBenchConfig, measure_execution
from lab.bench_hold import measure_concurrency
from lab.figures import (  # noqa: F401 - TARGETS, percentile and summary re-exported for callers
    TARGETS,
    arrivals,
    evaluate_targets,
    format_table,
    iso_ms,
    orphan_times,
    percentile,
    proc_cpu_seconds,
    proc_rss_mb,
    ratio,
    rounded,
    skew_and_latency,
    summary,
)
from lab.harness import Lab, log


@dataclass
class BenchConfig:
    opens: int = 200
    orphans: int = 50
    concurrent: int = 200
    window_s: float = 60.0
    monitor_interval_s: float = 10.0
    notional: Decimal = Decimal("200")
    venue_rps: float = 1000.0
    scan: bool = True
    scan_symbols: int = 300
    scan_venues: int = 3
    open_batch: int = 20
    history_sample: int = 10
    #: the holding phase: worker processes, and their client-side limit per venue (None: venue_rps);
    #: 40 is the production limiter (Binance's 2,400 weight a minute)
    workers: int = 1
    hold_venue_rps: float | None = 40.0
    #: trades whose histories give the cadence and the events per trade-hour (an even sample)
    cadence_sample: int = 50
    #: the workers' sticky schedule-to-start timeout (``tuning.sticky_schedule_to_start_timeout_s``;
    #: None: the default, 1 s, chosen for fail-over to another worker). With one worker busy, a task
    #: that waits 1 s for a slot on its sticky queue goes to the normal queue, which that worker
    #: polls at 1 in 5, and is replayed there from its full history: 200 trades opening on a loaded
    #: machine timed out 420 tasks so in 40 histories and waited up to 38 s each. 10 s: they wait for
    #: their own worker. (The bench kills no worker.)
    sticky_timeout_s: float | None = 10.0
    #: issue 15: the execution styles' figures (lab/bench_execution.py)
    execution: ExecBenchConfig = field(default_factory=ExecBenchConfig)

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(opens=30, orphans=10, concurrent=50, window_s=20.0, execution=ExecBenchConfig.quick())

    @classmethod
    def tiny(cls) -> BenchConfig:
        """Smoke-test size (tests/test_bench.py)."""
        return cls(opens=3, orphans=2, concurrent=3, window_s=3.0, monitor_interval_s=1.0, scan=False,
                   history_sample=2, cadence_sample=3, execution=ExecBenchConfig.tiny())


async def _one_by_one(what: str, symbols: list[str], parts: int,
                      one: Callable[[int, str], Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """``await one(i, symbol)`` for each symbol in turn (i from 1), logging progress ``parts`` times."""
    out = []
    t0, n = time.monotonic(), len(symbols)
    every = max(1, n // parts)
    for i, sym in enumerate(symbols, 1):
        out.append(await one(i, sym))
        if i == n or i % every == 0:
            log(f"  {what}: {i}/{n} ({time.monotonic() - t0:.0f}s)")
    return out


async def measure_opens(lab: Lab, symbols: list[str], cfg: BenchConfig) -> list[dict[str, Any]]:
    """Sequential hedgeflow opens: decision → hedged; each closed before the next starts."""
    lv, sv = lab.venue_names[:2]

    async def one(i: int, sym: str) -> dict[str, Any]:
        t0 = time.time_ns()
        wf = await lab.open(sym, lv, sv, cfg.notional, stamp=f"bo{i}x{t0}")
        st = await lab.wait_state(wf, ("holding", "closed", "aborted"), timeout=60, poll=0.02)
        if st.state != "holding" or not st.hedged_at:
            raise RuntimeError(f"bench open {wf} ended {st.state}: {st.abort_reason}")
        await lab.signal_close(wf)
        final = await lab.result(wf, timeout=60)
        if final.state != "closed":
            raise RuntimeError(f"bench trade {wf} ended {final.state}")
        return {"id": wf, "t0_ns": t0, "hedged_ms": iso_ms(st.hedged_at), "open_ms": st.open_ms,
                "long_cid": st.legs[0].client_order_ids[0], "short_cid": st.legs[1].client_order_ids[0]}

    return await _one_by_one("hedgeflow opens", symbols, 10, one)


async def measure_orphans(lab: Lab, symbols: list[str], cfg: BenchConfig) -> list[dict[str, Any]]:
    lv, sv = lab.venue_names[:2]

    async def one(i: int, sym: str) -> dict[str, Any]:
        await lab.faults(sv, reject_orders=1)
        wf = await lab.open(sym, lv, sv, cfg.notional, stamp=f"bx{i}x{time.time_ns()}")
        final = await lab.result(wf, timeout=90)
        await lab.clear_faults()
        if final.state != "aborted":
            raise RuntimeError(f"orphan trade {wf} ended {final.state}, expected aborted")
        long_leg = final.legs[0]
        return {"id": wf, "venue": lv, "open_cid": long_leg.client_order_ids[0],
                "close_cids": long_leg.client_order_ids[1:], "workflow_ms": final.orphan_exposure_ms}

    return await _one_by_one("hedgeflow orphans", symbols, 5, one)


async def measure_baseline(lab: Lab, symbols: list[str], orphan_symbols: list[str],
                           cfg: BenchConfig) -> tuple[list[dict], list[dict]]:
    lv, sv = lab.venue_names[:2]
    orphans = []
    async with Baseline(lab, lv, sv, leverage=lab.settings.limits.leverage) as bl:
        run = f"{time.time_ns() % 10**8}"
        opens = await _one_by_one("baseline opens", symbols, 5,
                                  lambda i, sym: bl.open_close(sym, cfg.notional, f"bl{run}n{i}"))
        for i, sym in enumerate(orphan_symbols, 1):
            r = await bl.orphan(sym, cfg.notional, f"bo{run}n{i}")
            r["venue"] = lv
            orphans.append(r)
        await lab.clear_faults()
    return opens, orphans


def measure_scan(cfg: BenchConfig) -> dict[str, Any]:
    try:
        from lab.bench_scan import bench_scan_cycle
    except ImportError as exc:
        return {"available": False, "reason": f"lab.bench_scan not importable ({exc})"}
    try:
        r = bench_scan_cycle(symbols=cfg.scan_symbols, venues=cfg.scan_venues)
    except Exception as exc:  # noqa: BLE001 - report, don't lose the rest of the bench
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"available": True, "symbols": cfg.scan_symbols, "venues": cfg.scan_venues, **dict(r)}


async def run_bench(cfg: BenchConfig, *, progress: Callable[[str], None] = log) -> dict[str, Any]:
    started, load0 = time.time(), list(os.getloadavg())
    n_sym = max(cfg.opens, cfg.orphans, cfg.concurrent) + 5
    interval = {"monitor_interval_s": cfg.monitor_interval_s}  # the workers' shared-read bounds follow it
    env = {"HEDGEFLOW__TRADE__MONITOR_INTERVAL_S": str(cfg.monitor_interval_s)}
    if cfg.sticky_timeout_s is not None:
        env["HEDGEFLOW__TUNING__STICKY_SCHEDULE_TO_START_TIMEOUT_S"] = str(cfg.sticky_timeout_s)
    async with Lab(symbols=n_sym + 3, venue_rps=cfg.venue_rps, trade=interval, worker_env_extra=env) as lab:
        syms = await lab.symbol_list()
        if len(syms) < max(cfg.opens, cfg.orphans, cfg.concurrent):
            raise RuntimeError(f"simulators list only {len(syms)} synthetic symbols")
        lv, sv = lab.venue_names[:2]
        progress(f"bench: lab up in {lab.workdir} (server {lab.server.address}, worker pid {lab.worker.pid})")
        # warm-up: first open loads markets, sandboxes, connections (not measured)
        await measure_opens(lab, syms[:1], cfg)
        progress(f"bench: {cfg.opens} hedgeflow opens (sequential)")
        opens = await measure_opens(lab, syms[: cfg.opens], cfg)
        progress(f"bench: {cfg.orphans} single-leg failures (reject_orders=1 on {sv})")
        orphans = await measure_orphans(lab, syms[: cfg.orphans], cfg)
        progress(f"bench: baseline (asyncio + ccxt): {cfg.opens} opens, {cfg.orphans} single-leg failures")
        b_opens, b_orphans = await measure_baseline(lab, syms[: cfg.opens], syms[: cfg.orphans], cfg)
        states = await lab.states()
        idx = arrivals(states)
        skew, lat = skew_and_latency(opens, idx, lv, sv, "hedged_ms")
        b_skew, b_lat = skew_and_latency(b_opens, idx, lv, sv, "hedged_ns")
        orph = orphan_times(orphans, idx)
        b_orph = orphan_times(b_orphans, idx)
        wf_orph = [r["workflow_ms"] for r in orphans if r["workflow_ms"] is not None]
        progress(f"bench: concurrency — {cfg.concurrent} trades holding, monitor every {cfg.monitor_interval_s:g}s, "
                 f"{cfg.workers} worker(s) at {cfg.hold_venue_rps or cfg.venue_rps:g} weight/s per venue")
        conc = await measure_concurrency(lab, syms[: cfg.concurrent], cfg)
        flat = all(not st["positions"] for st in (await lab.states()).values())
    scan = {"available": False, "reason": "skipped"}
    if cfg.scan:
        progress(f"bench: scanner cycle ({cfg.scan_symbols} symbols x {cfg.scan_venues} venues)")
        scan = await asyncio.to_thread(measure_scan, cfg)
    execution = await measure_execution(cfg.execution, progress=progress)
    result: dict[str, Any] = {
        "leg_skew_ms": summary(skew),
        "open_to_hedged_ms": summary(lat),
        "orphan_exposure_ms": summary(orph, workflow_p50=rounded(percentile(wf_orph, 50)),
                                      workflow_p99=rounded(percentile(wf_orph, 99))),
        "baseline": {
            "leg_skew_ms": summary(b_skew),
            "open_to_hedged_ms": summary(b_lat),
            "orphan_exposure_ms": summary(b_orph),
        },
        "scan_cycle": scan,
        "concurrency": conc,
        "execution": execution,
    }
    result["ratios"] = {
        k: {q: ratio(result[k][q], result["baseline"][k][q]) for q in ("p50", "p99")}
        for k in ("leg_skew_ms", "open_to_hedged_ms", "orphan_exposure_ms")
    }
    result["targets"] = evaluate_targets(result)
    result["meta"] = {
        "mode": "quick" if cfg.opens < 200 else "full",
        "opens": cfg.opens, "orphans": cfg.orphans, "concurrent": cfg.concurrent,
        "notional_usd": str(cfg.notional), "venue_requests_per_second": cfg.venue_rps,
        "workers": cfg.workers, "hold_venue_requests_per_second": cfg.hold_venue_rps or cfg.venue_rps,
        "sticky_schedule_to_start_timeout_s": cfg.sticky_timeout_s,
        "loadavg_at_start": load0,
        "venues_flat_after": flat,
        "cpus": os.cpu_count(), "loadavg_at_end": list(os.getloadavg()),
        "python": sys.version.split()[0], "started": datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 1),
    }
    return result
