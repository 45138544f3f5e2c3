"""``hedgeflow chaos --trades N --seed S``: trades under random venue faults, worker SIGKILLs and
a dev-server restart, then the invariants.

The run is self-contained (its own dev server with a db file, simulators and worker subprocess;
see :class:`lab.harness.Lab`). Trades run in batches; for each batch the seed chooses:

* venue faults per venue — errors (``error_rate``), timeouts (``latency_ms`` above the
  client's request timeout, so the order executes after the client gave up), dropped
  responses (``drop_responses``: executed, answered 5xx), partial fills, rejections, outages
  (cleared after a few seconds);
* a moment at which the worker is killed with SIGKILL and, after a pause, restarted;
* for one batch of the run, a moment at which the dev server is stopped and started again;
* for each trade, when and how it is ended: ``close``, ``emergency_close`` or a cancel.

Then all faults are cleared, everything still open is closed, and :func:`check_invariants`
(a pure function over what was collected) decides:

1. every trade ended ``closed`` or ``aborted`` (a cancelled trade ends Canceled after closing);
2. every venue position is flat;
3. no client order id executed twice on a venue;
4. the ledger equals the venues: per venue, bought and sold quantity, fees and funding income;
5. every emergency close was alerted (``ALERT emergency_close`` lines of the worker's log).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain.lifecycle import TERMINAL
from lab.harness import Lab, log

FAULT_KINDS = ("errors", "timeouts", "drops", "partial", "reject", "outage")
OK_STATUSES = ("COMPLETED", "CANCELED", "FAILED")  # FAILED: flattened after an unexpected error
EMERGENCY_REASONS = ("LEG_FAILED", "HEDGE_GAP", "LEG_CHANGED", "HEDGE_DRIFT", "LIQUIDATION_RISK", "error:")
TOL = Decimal("0.000001")


# ---------------------------------------------------------------------------------- data
@dataclass
class TradeOutcome:
    trade_id: str
    workflow_status: str  # COMPLETED / CANCELED / FAILED / RUNNING / TERMINATED / TIMED_OUT / UNKNOWN
    state: str | None
    long_venue: str
    short_venue: str
    emergency: bool = False
    client_order_ids: dict[str, list[str]] = field(default_factory=dict)  # venue → ids
    detail: str = ""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class LedgerView:
    """Per-venue totals read from the ledger (None when the ledger is not there)."""

    available: bool
    reason: str = ""
    trades: int = 0
    totals: dict[str, dict[str, Decimal]] = field(default_factory=dict)


def was_emergency(status: Any, emergency_signalled: bool = False) -> bool:
    """Did this trade go through an emergency close? (the status's ``emergency`` flag, the
    close reason, or an ``emergency_close`` signal that reached a trade with a position)."""
    if status is None:
        return emergency_signalled
    if status.emergency:
        return True
    reason = status.close_reason or ""
    if reason.startswith(EMERGENCY_REASONS):
        return True
    return bool(reason.startswith("signal:") and emergency_signalled and "emergency" in reason)


def venue_totals(state: dict[str, Any]) -> dict[str, Decimal]:
    """Bought/sold quantity from the venue's orders, fees and funding from its income."""
    t = {"buy_qty": Decimal(0), "sell_qty": Decimal(0), "fees": Decimal(0), "funding": Decimal(0)}
    for o in state.get("orders", []):
        q = Decimal(str(o.get("executedQty") or 0))
        if q:
            t["buy_qty" if str(o.get("side")).upper() == "BUY" else "sell_qty"] += q
    for i in state.get("income", []):
        kind = i.get("incomeType")
        amount = Decimal(str(i.get("income") or 0))
        if kind == "COMMISSION":
            t["fees"] += -amount
        elif kind == "FUNDING_FEE":
            t["funding"] += amount
    return t


def _flat_detail(states: dict[str, dict[str, Any]]) -> list[str]:
    bad = []
    for venue, st in states.items():
        for p in st.get("positions", []):
            amt = Decimal(str(p.get("positionAmt", p.get("qty", "0"))))
            if amt != 0:
                bad.append(f"{venue} {p.get('symbol')} {amt}")
    return bad


def double_executions(states: dict[str, dict[str, Any]]) -> list[str]:
    bad = []
    for venue, st in states.items():
        counts = Counter(o["clientOrderId"] for o in st.get("orders", [])
                         if Decimal(str(o.get("executedQty") or 0)) > 0)
        bad += [f"{venue} {cid} ×{n}" for cid, n in sorted(counts.items()) if n > 1]
    return bad


def alerted_trades(lines: Iterable[str], kind: str = "emergency_close") -> set[str]:
    """Trade ids named on alert log lines of ``kind`` (``ALERT <kind> ... trade-...``)."""
    out: set[str] = set()
    pat = re.compile(r"\btrade[-=:( ]+(trade-[A-Za-z0-9-]+)|\b(trade-[A-Za-z0-9-]+)")
    marker = f"ALERT {kind}"
    for line in lines:
        if marker not in line:
            continue
        for m in pat.finditer(line):
            out.add(m.group(1) or m.group(2))
    return out


def check_invariants(
    trades: Sequence[TradeOutcome],
    states: dict[str, dict[str, Any]],
    ledger: LedgerView | None,
    alert_lines: Iterable[str],
) -> list[Check]:
    """The chaos verdict: a list of checks, each ok or not, with what was wrong."""
    checks: list[Check] = []

    unfinished = [
        f"{t.trade_id} {t.workflow_status}/{t.state}" for t in trades
        if t.workflow_status not in OK_STATUSES or t.state not in TERMINAL
    ]
    counts = Counter(t.state for t in trades)
    checks.append(Check(
        "every trade closed or aborted", not unfinished,
        "; ".join(unfinished[:5]) + (f" (+{len(unfinished) - 5})" if len(unfinished) > 5 else "")
        if unfinished else f"{len(trades)} trades: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=str)),
    ))

    bad = _flat_detail(states)
    checks.append(Check("all venue positions flat", not bad,
                        "; ".join(bad[:6]) if bad else f"{len(states)} venues flat"))

    dups = double_executions(states)
    n_orders = sum(len(st.get("orders", [])) for st in states.values())
    checks.append(Check("no client order id executed twice", not dups,
                        "; ".join(dups[:6]) if dups else f"{n_orders} orders, every executed id once"))

    if ledger is None:
        checks.append(Check("ledger equals venue fills and income", True, "skipped (no ledger package)"))
    elif not ledger.available:
        checks.append(Check("ledger equals venue fills and income", False, f"ledger not available: {ledger.reason}"))
    else:
        diffs = []
        for venue, st in sorted(states.items()):
            v = venue_totals(st)
            lt = ledger.totals.get(venue, {})
            for k, vv in v.items():
                lv = lt.get(k, Decimal(0))
                if abs(lv - vv) > TOL:
                    diffs.append(f"{venue} {k}: ledger {lv} vs venue {vv}")
        recorded = ledger.trades
        if recorded < len(trades):
            diffs.append(f"ledger holds {recorded} trades, {len(trades)} were run")
        checks.append(Check(
            "ledger equals venue fills and income", not diffs,
            "; ".join(diffs[:6]) if diffs else
            f"{recorded} trades; per venue qty, fees and funding equal "
            + ", ".join(f"{v}: fees {ledger.totals.get(v, {}).get('fees', 0):.4f} funding "
                        f"{ledger.totals.get(v, {}).get('funding', 0):.4f}" for v in sorted(states)),
        ))

    alerted = alerted_trades(alert_lines)
    emergencies = [t.trade_id for t in trades if t.emergency]
    missing = [t for t in emergencies if t not in alerted]
    checks.append(Check("every emergency close alerted", not missing,
                        f"no alert for {', '.join(missing[:5])}" if missing else
                        f"{len(emergencies)} emergency closes, all alerted"))
    return checks


def format_checks(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{'PASS' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in checks)


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


def fault_for(kind: str, rng: random.Random, timeout_ms: int) -> dict[str, Any]:
    if kind == "errors":
        return {"error_rate": rng.choice([0.2, 0.3, 0.5])}
    if kind == "timeouts":
        return {"latency_ms": timeout_ms + rng.choice([300, 800])}
    if kind == "drops":
        return {"drop_responses": rng.randint(1, 3)}
    if kind == "partial":
        return {"partial_fill_ratio": rng.choice([0.5, 0.7, 0.9])}
    if kind == "reject":
        return {"reject_orders": 1}
    if kind == "outage":
        return {"outage": True}
    raise ValueError(kind)


@dataclass
class Driven:
    wf_id: str
    long_venue: str
    short_venue: str
    action: str
    close_at: float
    signalled: bool = False


async def _run_batch(lab: Lab, cfg: ChaosConfig, rng: random.Random, b: int, symbols: list[str],
                     restart_server: bool, events: list[str]) -> list[Driven]:
    t0 = time.monotonic()
    # venue faults
    outages: list[tuple[str, float]] = []
    for v in cfg.venues:
        if rng.random() < 0.65:
            kind = rng.choice(FAULT_KINDS)
            f = fault_for(kind, rng, cfg.venue_timeout_ms)
            await lab.faults(v, **f)
            events.append(f"batch {b}: {v} {f}")
            if kind == "outage":
                outages.append((v, rng.uniform(1.0, 3.0)))
    # trades
    driven: list[Driven] = []
    for i, sym in enumerate(symbols):
        lv, sv = rng.sample(list(cfg.venues), 2)
        notional = Decimal(rng.choice([150, 300, 600, 1000]))
        action = rng.choices(["close", "emergency", "cancel"], weights=[55, 30, 15])[0]
        wf = await lab.open(sym, lv, sv, notional, stamp=f"chaos{b}x{i}x{time.time_ns()}",
                            monitor_interval_s=cfg.monitor_interval_s)
        driven.append(Driven(wf, lv, sv, action, t0 + rng.uniform(*cfg.close_after_s)))
    t_kill = rng.uniform(0.3, 3.0)
    kill_gap = rng.uniform(0.5, 2.0)
    t_srv = rng.uniform(1.0, 5.0)
    t_clear = rng.uniform(*cfg.fault_window_s)

    async def infra() -> None:
        await asyncio.sleep(max(0.0, t0 + t_kill - time.monotonic()))
        lab.kill_worker()
        events.append(f"batch {b}: worker SIGKILL at +{time.monotonic() - t0:.1f}s")
        await asyncio.sleep(kill_gap)
        await lab.start_worker()
        events.append(f"batch {b}: worker restarted at +{time.monotonic() - t0:.1f}s")
        if restart_server:
            await asyncio.sleep(max(0.0, t0 + t_kill + kill_gap + t_srv - time.monotonic()))
            events.append(f"batch {b}: dev server stop at +{time.monotonic() - t0:.1f}s")
            await lab.restart_server(down_s=rng.uniform(0.5, 2.0))
            events.append(f"batch {b}: dev server up again at +{time.monotonic() - t0:.1f}s")
            if not lab.worker.alive:
                events.append(f"batch {b}: worker exited while the server was down; restarting")
                await lab.start_worker()

    async def faults_off() -> None:
        for v, dt in sorted(outages, key=lambda x: x[1]):
            await asyncio.sleep(max(0.0, t0 + dt - time.monotonic()))
            await lab.faults(v, outage=False)
        await asyncio.sleep(max(0.0, t0 + t_clear - time.monotonic()))
        await lab.clear_faults()
        events.append(f"batch {b}: faults cleared at +{time.monotonic() - t0:.1f}s")

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
                        await lab.signal_close(d.wf_id, reason=f"chaos {d.action}", emergency=d.action == "emergency")
                    d.signalled = True
                    pending.remove(d)
                except Exception as exc:  # noqa: BLE001 - server restarting, or already finished
                    if "already completed" in str(exc).lower() or "not found" in str(exc).lower():
                        pending.remove(d)
                    else:
                        d.close_at = now + 0.5
            await asyncio.sleep(0.2)

    await asyncio.gather(infra(), faults_off(), closer())
    return driven


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


async def _outcome(lab: Lab, d: Driven) -> TradeOutcome:
    h = lab.client.get_workflow_handle(d.wf_id)
    try:
        desc = await h.describe()
        wstatus = desc.status.name if desc.status else "UNKNOWN"
    except Exception as exc:  # noqa: BLE001
        return TradeOutcome(d.wf_id, "UNKNOWN", None, d.long_venue, d.short_venue, detail=str(exc))
    st = None
    try:
        st = await lab.status(d.wf_id)
    except Exception as exc:  # noqa: BLE001
        return TradeOutcome(d.wf_id, wstatus, None, d.long_venue, d.short_venue, detail=f"query failed: {exc}")
    cids: dict[str, list[str]] = defaultdict(list)
    for leg in st.legs:
        cids[leg.venue] += leg.client_order_ids
    return TradeOutcome(
        d.wf_id, wstatus, st.state, d.long_venue, d.short_venue,
        emergency=was_emergency(st, d.signalled and d.action == "emergency"),
        client_order_ids=dict(cids), detail=st.abort_reason or st.close_reason or "",
    )


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
    rng = random.Random(cfg.seed)
    n_batches = max(1, -(-cfg.trades // cfg.batch))
    server_batch = rng.randrange(n_batches) if cfg.server_restart else -1
    events: list[str] = []
    started = time.monotonic()
    async with Lab(venues=cfg.venues, symbols=cfg.trades + 10, venue_rps=200,
                   venue_timeout_ms=cfg.venue_timeout_ms, persistent_server=True,
                   sim_args=["--funding-interval", str(cfg.funding_interval_s)]) as lab:
        log(f"chaos: lab up in {lab.workdir}; {cfg.trades} trades in {n_batches} batches, seed {cfg.seed}")
        syms = (await lab.symbol_list())[: cfg.trades]
        driven: list[Driven] = []
        for b in range(n_batches):
            chunk = syms[b * cfg.batch:(b + 1) * cfg.batch]
            driven += await _run_batch(lab, cfg, rng, b, chunk, b == server_batch, events)
            log(f"chaos: batch {b + 1}/{n_batches} driven ({time.monotonic() - started:.0f}s)")
        await lab.clear_faults()
        log("chaos: faults cleared; waiting for every trade to finish")
        await _wait_finished(lab, [d.wf_id for d in driven], cfg.finish_timeout_s)
        outcomes = [await _outcome(lab, d) for d in driven]
        # the workflow records the ledger before it completes; positions must be flat now
        states = await lab.states()
        ledger = await asyncio.to_thread(read_ledger, lab)
        alert_lines = lab.worker_log.read_text(errors="replace").splitlines()
        checks = check_invariants(outcomes, states, ledger, alert_lines)
        info = {
            "events": events,
            "worker_starts": lab.worker_starts,
            "trades": [f"{o.trade_id}: {o.workflow_status}/{o.state}{' (emergency)' if o.emergency else ''}"
                       f" {o.detail[:80]}" for o in outcomes],
            "wall_s": round(time.monotonic() - started, 1),
            "workdir": str(lab.workdir),
        }
    return checks, info
