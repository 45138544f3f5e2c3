"""``hedgeflow chaos --trades N --seed S``: trades under random venue faults, a partition, worker
SIGKILLs (of one of ``--workers`` workers), a dev-server restart and a dead webhook, with every position sampled all along; then
the invariants.

The run is self-contained (its own dev server with a db file, simulators and worker subprocess;
see :class:`lab.harness.Lab`). Trades run in batches; the seed draws the plan of each batch
(:mod:`lab.chaos_faults`): per-venue order-path faults, a symbol SETTLING for a while, a funding
interval change, a price move, a coarser qty step, a worker SIGKILL + restart, and, once per
run, a partition of one venue (outage for ``--partition-s`` seconds) and a dev-server restart.
The worker starts with ``alerts.webhook_url`` pointing at a closed port (alert children retry on
their own); a worker restart in the second half of the run brings it back to log-only. For each
trade the seed also draws when and how it is ended: ``close``, ``emergency_close`` or a cancel.

:class:`lab.sampler.PositionSampler` reads every venue's positions every 100 ms for the whole run
and integrates each trade's unhedged notional. At the end all faults are cleared, everything
still open is closed, and :func:`lab.chaos_checks.check_invariants` (pure) decides: every trade
ended; venues flat; no client id executed twice; ledger = venues; every emergency alerted (log
lines or AlertWorkflow children); no run near the history limit; no trade naked over 2 s unless
both its venues were down.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from lab.chaos_checks import (  # noqa: F401 - re-exported for tests and callers
    CHECK_NAMES,
    EMERGENCY_REASONS,
    OK_STATUSES,
    Check,
    LedgerView,
    TradeOutcome,
    alerted_trades,
    check_invariants,
    double_executions,
    format_checks,
    format_table,
    orders_per_symbol,
    trade_rows,
    venue_totals,
    was_emergency,
)
from lab.chaos_faults import RESET, BatchPlan, Timed, plan_batch
from lab.harness import Lab, log
from lab.sampler import PositionSampler


# ---------------------------------------------------------------------------------- plan
@dataclass
class ChaosConfig:
    trades: int = 12
    seed: int = 1
    batch: int = 4
    venues: tuple[str, ...] = ("sim-a", "sim-b", "sim-c")
    venue_timeout_ms: int = 1500
    fault_window_s: tuple[float, float] = (4.0, 8.0)
    close_after_s: tuple[float, float] = (1.0, 10.0)
    finish_timeout_s: float = 180.0
    funding_interval_s: int = 10
    monitor_interval_s: float = 1.0
    server_restart: bool = True
    partition_s: tuple[float, float] | None = (30.0, 120.0)  # None: no partition
    dead_webhook: bool = True
    sample_period_s: float = 0.1
    workers: int = 2  # compose runs two replicas: the SIGKILL hits one, the other picks its trades up
    #: execution styles the trades take in turn (issue 15: each style under every fault); not drawn
    #: from the seed's generator, so a seed's fault plan is the same whatever the styles
    styles: tuple[str, ...] = ("taker", "maker_first", "sliced")


#: a styled trade's entry and exit fit the batch's few seconds of faults (maker quotes for 2 s, then taker;
#: four slices 0.3 s apart)
STYLE_TIMES = {"maker_window_s": 2.0, "maker_requotes": 3, "slice_interval_s": 0.3}


@dataclass
class Driven:
    wf_id: str
    symbol: str
    long_venue: str
    short_venue: str
    action: str
    close_at: float
    signalled: bool = False


class Run:
    """One chaos run: the lab, the sampler, the event log and the venues' partition state."""

    def __init__(self, lab: Lab, cfg: ChaosConfig, rng: random.Random, sampler: PositionSampler,
                 webhook_until_batch: int) -> None:
        self.lab, self.cfg, self.rng, self.sampler = lab, cfg, rng, sampler
        self.webhook_until_batch = webhook_until_batch
        self.events: list[str] = []
        self.partitioned: set[str] = set()
        self.t_start = time.monotonic()

    def note(self, b: int, t0: float, what: str) -> None:
        self.events.append(f"batch {b} +{time.monotonic() - t0:.1f}s (run {self.sampler_t():.1f}s): {what}")

    def sampler_t(self) -> float:
        return time.monotonic() - self.sampler.t0

    async def post(self, venue: str, body: dict[str, Any], market: bool = False) -> None:
        try:
            await self.lab.admin(venue, "POST", "/_sim/market" if market else "/_sim/faults", body)
        except Exception as exc:  # noqa: BLE001 - a fault that did not land is an event, not a crash
            self.events.append(f"{venue}: POST {body} failed: {exc}")

    async def clear_venue(self, venue: str) -> None:
        await self.post(venue, {**RESET, "outage": venue in self.partitioned})

    async def apply_market(self, t: Timed) -> dict[str, Any]:
        body = {k: v for k, v in t.body.items() if not k.startswith("_")}
        if "_move" in t.body or "_step_x" in t.body:
            rows = await self.lab.admin(t.venue, "GET", "/_sim/market")
            row = next(r for r in rows if r["symbol"] == t.body["symbol"])
            if "_move" in t.body:
                body["price"] = str(round(Decimal(row["mark_price"]) * Decimal(str(1 + t.body["_move"])), 6))
            if "_step_x" in t.body:
                body["qty_step"] = str(Decimal(row["qty_step"]) * t.body["_step_x"])
        await self.post(t.venue, body, market=True)
        return body

    async def steps(self) -> dict[str, dict[str, Decimal]]:
        out: dict[str, dict[str, Decimal]] = {}
        for v in self.lab.sims:
            rows = await self.lab.admin(v, "GET", "/_sim/market")
            out[v] = {r["symbol"]: Decimal(str(r["qty_step"])) for r in rows}
        return out

    # ------------------------------------------------------------------ one batch
    async def batch(self, b: int, symbols: list[str], restart_server: bool, partition: bool) -> list[Driven]:
        lab, cfg, rng = self.lab, self.cfg, self.rng
        plan: BatchPlan = plan_batch(rng, list(cfg.venues), symbols, cfg.venue_timeout_ms,
                                     cfg.partition_s if partition else None)
        t0 = time.monotonic()
        for t in plan.pre_open:
            body = await self.apply_market(t)
            self.note(b, t0, f"{t.venue} {t.what} {body}")
        for v, f in plan.venue_faults.items():
            await self.post(v, f)
            self.note(b, t0, f"{v} {f}")
        steps = await self.steps()
        driven: list[Driven] = []
        for i, sym in enumerate(symbols):
            lv, sv = rng.sample(list(cfg.venues), 2)
            notional = Decimal(rng.choice([150, 300, 600, 1000]))
            action = rng.choices(["close", "emergency", "cancel"], weights=[55, 30, 15])[0]
            stamp = f"chaos{b}x{i}x{time.time_ns()}"
            step = max(steps[lv].get(sym, Decimal(0)), steps[sv].get(sym, Decimal(0)))
            self.sampler.watch(sym, f"pending-{stamp}", lv, sv, step)
            style = cfg.styles[(b * cfg.batch + i) % len(cfg.styles)]
            wf = await lab.open(sym, lv, sv, notional, stamp=stamp, execution={"style": style, **STYLE_TIMES},
                                monitor_interval_s=cfg.monitor_interval_s)
            self.sampler.watched[sym].trade_id = wf
            driven.append(Driven(wf, sym, lv, sv, action, t0 + rng.uniform(*cfg.close_after_s)))
            self.note(b, t0, f"opened {wf} {sym} long {lv} short {sv} {notional} USD {style} → {action}")
        t_kill, kill_gap = rng.uniform(0.3, 3.0), rng.uniform(0.5, 2.0)
        t_srv, srv_down = rng.uniform(1.0, 5.0), rng.uniform(0.5, 2.0)
        t_clear = rng.uniform(*cfg.fault_window_s)

        async def at(s: float) -> None:
            await asyncio.sleep(max(0.0, t0 + s - time.monotonic()))

        async def infra() -> None:
            await at(t_kill)
            lab.kill_worker()
            self.note(b, t0, "worker SIGKILL")
            await asyncio.sleep(kill_gap)
            if b >= self.webhook_until_batch and lab.worker_env_extra:
                lab.worker_env_extra = {}
                self.note(b, t0, "webhook back to log-only for the restarted worker")
            await lab.start_worker()
            self.note(b, t0, "worker restarted")
            if restart_server:
                await at(t_kill + kill_gap + t_srv)
                self.note(b, t0, "dev server stop")
                await lab.restart_server(down_s=srv_down)
                self.note(b, t0, "dev server up again")
                if not lab.worker.alive:
                    self.note(b, t0, "worker exited while the server was down; restarting")
                    await lab.start_worker()
                await lab.ensure_spares()

        async def faults_off() -> None:
            for v, dt in sorted(plan.short_outages.items(), key=lambda x: x[1]):
                await at(dt)
                if v not in self.partitioned:
                    await self.post(v, {"outage": False})
                    self.note(b, t0, f"{v} outage over")
            await at(t_clear)
            await asyncio.gather(*(self.clear_venue(v) for v in lab.sims))
            self.note(b, t0, "faults cleared" + (f" (partition of {sorted(self.partitioned)} goes on)"
                                                 if self.partitioned else ""))

        async def timed(t: Timed) -> None:
            await at(t.at_s)
            if t.market:
                body = await self.apply_market(t)
            else:
                body = t.body
                await self.post(t.venue, body)
            self.note(b, t0, f"{t.venue} {t.what} {body}")
            await at(t.until_s if t.until_s is not None else t_clear)
            if t.undo is not None:
                await self.post(t.venue, t.undo, market=t.market)
                self.note(b, t0, f"{t.venue} undo {t.what}: {t.undo}")

        async def partition_task(t: Timed) -> None:
            await at(t.at_s)
            self.partitioned.add(t.venue)
            await self.post(t.venue, {"outage": True})
            self.note(b, t0, f"{t.venue} PARTITION for {t.until_s - t.at_s:.1f}s")
            await at(t.until_s)
            self.partitioned.discard(t.venue)
            await self.post(t.venue, {"outage": False})
            self.note(b, t0, f"{t.venue} partition over")

        async def closer() -> None:
            pending = list(driven)
            while pending:
                now = time.monotonic()
                for d in [d for d in pending if d.close_at <= now]:
                    try:
                        h = lab.client.get_workflow_handle(d.wf_id)
                        if d.action == "cancel":
                            await h.cancel()
                        else:
                            await lab.signal_close(d.wf_id, reason=f"chaos {d.action}",
                                                   emergency=d.action == "emergency")
                        d.signalled = True
                        pending.remove(d)
                        self.note(b, t0, f"{d.action} {d.wf_id}")
                    except Exception as exc:  # noqa: BLE001 - server restarting, or already finished
                        if "already completed" in str(exc).lower() or "not found" in str(exc).lower():
                            pending.remove(d)
                        else:
                            d.close_at = now + 0.5
                await asyncio.sleep(0.2)

        tasks = [infra(), faults_off(), closer(), *(timed(t) for t in plan.timed)]
        if plan.partition is not None:
            tasks.append(partition_task(plan.partition))
        await asyncio.gather(*tasks)
        return driven


# ---------------------------------------------------------------------------------- after
async def _wait_finished(lab: Lab, ids: list[str], timeout: float) -> None:
    from temporalio.client import WorkflowExecutionStatus

    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for wf in list(pending):
            try:
                desc = await lab.client.get_workflow_handle(wf).describe()
            except Exception:  # noqa: BLE001
                continue
            if desc.status != WorkflowExecutionStatus.RUNNING:
                pending.discard(wf)
            else:
                # still running after faults cleared: make sure it is being closed
                try:
                    st = await lab.status(wf)
                    if st.state == "holding":
                        await lab.signal_close(wf, reason="chaos: end of run")
                except Exception:  # noqa: BLE001
                    pass
        if pending:
            await asyncio.sleep(1.0)
        if not lab.worker.alive:
            log("chaos: worker exited unexpectedly; restarting it")
            await lab.start_worker()
        await lab.ensure_spares()


async def _outcome(lab: Lab, d: Driven) -> TradeOutcome:
    h = lab.client.get_workflow_handle(d.wf_id)
    base = dict(symbol=d.symbol)
    try:
        desc = await h.describe()
        wstatus = desc.status.name if desc.status else "UNKNOWN"
    except Exception as exc:  # noqa: BLE001
        return TradeOutcome(d.wf_id, "UNKNOWN", None, d.long_venue, d.short_venue, detail=str(exc), **base)
    try:
        st = await lab.status(d.wf_id)
    except Exception as exc:  # noqa: BLE001
        return TradeOutcome(d.wf_id, wstatus, None, d.long_venue, d.short_venue, detail=f"query failed: {exc}",
                            **base)
    cids: dict[str, list[str]] = defaultdict(list)
    for leg in st.legs:
        cids[leg.venue] += leg.client_order_ids
    return TradeOutcome(
        d.wf_id, wstatus, st.state, d.long_venue, d.short_venue,
        emergency=was_emergency(st, d.signalled and d.action == "emergency"),
        client_order_ids=dict(cids), detail=st.abort_reason or st.close_reason or "",
        events=[f"{e.t} {e.what}" for e in st.events], **base,
    )


async def history_lengths(lab: Lab) -> dict[str, int]:
    """``workflow id/run id`` → history length of every run on the lab's server (open runs
    described, since visibility may lag for them)."""
    out: dict[str, int] = {}
    async for wf in lab.client.list_workflows(None):
        n = wf.history_length
        if wf.status is not None and wf.status.name == "RUNNING":
            try:
                n = (await lab.client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()).history_length
            except Exception:  # noqa: BLE001
                pass
        out[f"{wf.id}/{wf.run_id}"] = n
    return out


async def emergency_alert_runs(lab: Lab, trade_ids: set[str]) -> set[str]:
    """Trade ids (of ``trade_ids``) with an AlertWorkflow child whose summary is emergency_close."""
    out: set[str] = set()
    async for wf in lab.client.list_workflows("WorkflowType = 'AlertWorkflow'"):
        tid = wf.id.rsplit("-alert-", 1)[0]
        if tid not in trade_ids or tid in out:
            continue
        try:
            desc = await lab.client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()
            if (await desc.static_summary() or "").startswith("emergency_close"):
                out.add(tid)
        except Exception:  # noqa: BLE001
            pass
    return out


def read_ledger(lab: Lab) -> LedgerView | None:
    import importlib.util

    if importlib.util.find_spec("ledger") is None:
        return None
    try:
        from ledger import Ledger

        url = lab.settings.ledger_url()
        m = re.match(r"sqlite:///(.+)", url)
        if m and not Path(m.group(1)).exists():
            return LedgerView(False, f"no ledger database at {m.group(1)}")
        led = Ledger(url, run_migrations=False)
        try:
            totals: dict[str, dict[str, Decimal]] = defaultdict(
                lambda: {"buy_qty": Decimal(0), "sell_qty": Decimal(0), "fees": Decimal(0), "funding": Decimal(0)})
            for f in led.fills():
                t = totals[f.venue]
                t["buy_qty" if str(f.side).lower() == "buy" else "sell_qty"] += Decimal(f.qty)
                t["fees"] += Decimal(f.fee)
            for p in led.funding():
                totals[p.venue]["funding"] += Decimal(p.amount)
            n = len(led.trades())
        finally:
            led.close()
        return LedgerView(True, trades=n, totals=dict(totals))
    except Exception as exc:  # noqa: BLE001
        return LedgerView(False, f"{type(exc).__name__}: {exc}")


async def run_chaos(cfg: ChaosConfig) -> tuple[list[Check], dict[str, Any]]:
    from workers.proc import free_port

    rng = random.Random(cfg.seed)
    n_batches = max(1, -(-cfg.trades // cfg.batch))
    server_batch = rng.randrange(n_batches) if cfg.server_restart else -1
    partition_batch = rng.randrange(n_batches) if cfg.partition_s else -1
    dead = {"HEDGEFLOW__ALERTS__WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook"} if cfg.dead_webhook else {}
    started = time.monotonic()
    async with Lab(venues=cfg.venues, symbols=cfg.trades + 10, venue_rps=200,
                   venue_timeout_ms=cfg.venue_timeout_ms, persistent_server=True, worker_env_extra=dead,
                   spare_workers=max(0, cfg.workers - 1),
                   sim_args=["--funding-interval", str(cfg.funding_interval_s)]) as lab:
        log(f"chaos: lab up in {lab.workdir}; {cfg.trades} trades in {n_batches} batches, seed {cfg.seed}, "
            f"{cfg.workers} worker(s)")
        sampler = PositionSampler({n: s.url for n, s in lab.sims.items()}, cfg.sample_period_s)
        await sampler.start()
        run = Run(lab, cfg, rng, sampler, webhook_until_batch=(n_batches + 1) // 2)
        if dead:
            run.events.append(f"worker alerts.webhook_url = {dead['HEDGEFLOW__ALERTS__WEBHOOK_URL']} (closed port)")
        try:
            syms = (await lab.symbol_list())[: cfg.trades]
            driven: list[Driven] = []
            for b in range(n_batches):
                chunk = syms[b * cfg.batch:(b + 1) * cfg.batch]
                driven += await run.batch(b, chunk, b == server_batch, b == partition_batch)
                log(f"chaos: batch {b + 1}/{n_batches} driven ({time.monotonic() - started:.0f}s)")
            run.partitioned.clear()
            await lab.clear_faults()
            log("chaos: faults cleared; waiting for every trade to finish")
            await _wait_finished(lab, [d.wf_id for d in driven], cfg.finish_timeout_s)
            outcomes = [await _outcome(lab, d) for d in driven]
            # the workflow records the ledger before it completes; positions must be flat now
            states = await lab.states()
            await sampler.sample_once()
        finally:
            await sampler.stop()
        ledger = await asyncio.to_thread(read_ledger, lab)
        alert_lines = lab.worker_log_lines()
        logged = alerted_trades(alert_lines)
        runs = await emergency_alert_runs(lab, {o.trade_id for o in outcomes if o.emergency} - logged)
        histories = await history_lengths(lab)
        exposure = sampler.exposure()
        checks = check_invariants(outcomes, states, ledger, alert_lines, alert_runs=runs,
                                  histories=histories, exposure=exposure)
        if not all(c.ok for c in checks):  # the logs, histories and simulator states stay for diagnosis
            lab.keep = True
            log(f"chaos: invariants violated; the lab stays in {lab.workdir} (worker logs, dev-server db, sim states)")
        rows, totals = trade_rows(outcomes, exposure, orders_per_symbol(states))
        longest = max(histories.items(), key=lambda kv: kv[1], default=("-", 0))
        info = {
            "events": run.events,
            "worker_starts": lab.worker_starts,
            "trade_lines": [f"{o.trade_id}: {o.workflow_status}/{o.state}{' (emergency)' if o.emergency else ''}"
                            f" {o.detail[:80]}" for o in outcomes],
            "trades": rows,
            "totals": totals,
            "trade_events": {o.trade_id: o.events for o in outcomes},
            "sampler": sampler.summary(),
            "history": {"runs": len(histories), "longest": longest[1], "longest_run": longest[0],
                        "limit": int(51_200 * 0.8)},
            "wall_s": round(time.monotonic() - started, 1),
            "workdir": str(lab.workdir),
        }
    return checks, info
