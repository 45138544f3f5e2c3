"""The chaos verdict: :func:`check_invariants`, a pure function over what a run collected (trade
outcomes, final venue states, the ledger, alert evidence, history lengths and the sampler's
exposure per trade), and the per-trade table. Tested on doctored worlds in tests/test_chaos.py.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from domain.lifecycle import TERMINAL
from lab.sampler import Exposure, percentile

OK_STATUSES = ("COMPLETED", "CANCELED", "FAILED")  # FAILED: flattened after an unexpected error
EMERGENCY_REASONS = ("LEG_FAILED", "HEDGE_GAP", "LEG_CHANGED", "HEDGE_DRIFT", "LIQUIDATION_RISK", "error:")
TOL = Decimal("0.000001")
HISTORY_LIMIT = 51_200  # Temporal's hard limit of events per run
HISTORY_SHARE = 0.8
NAKED_LIMIT_S = 2.0

C_ENDED = "every trade closed or aborted"
C_FLAT = "all venue positions flat"
C_DUPS = "no client order id executed twice"
C_LEDGER = "ledger equals venue fills and income"
C_ALERTS = "every emergency close alerted"
C_HISTORY = "no workflow near the history limit"
C_NAKED = "no trade naked over 2 s unless both venues down"
CHECK_NAMES = (C_ENDED, C_FLAT, C_DUPS, C_LEDGER, C_ALERTS, C_HISTORY, C_NAKED)


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
    symbol: str = ""
    events: list[str] = field(default_factory=list)  # the status's recent events


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


def _executed(o: dict[str, Any]) -> bool:
    return Decimal(str(o.get("executedQty") or 0)) > 0


def double_executions(states: dict[str, dict[str, Any]]) -> list[str]:
    bad = []
    for venue, st in states.items():
        counts = Counter(o["clientOrderId"] for o in st.get("orders", []) if _executed(o))
        bad += [f"{venue} {cid} ×{n}" for cid, n in sorted(counts.items()) if n > 1]
    return bad


def orders_per_symbol(states: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """unified symbol → (orders on any venue, client ids executed more than once)."""
    n: Counter[str] = Counter()
    dups: Counter[str] = Counter()
    for st in states.values():
        ex: Counter[tuple[str, str]] = Counter()
        for o in st.get("orders", []):
            sym = o.get("unified_symbol") or o.get("symbol") or ""
            n[sym] += 1
            if _executed(o):
                ex[(sym, o["clientOrderId"])] += 1
        for (sym, _cid), k in ex.items():
            if k > 1:
                dups[sym] += 1
    return {s: (n[s], dups[s]) for s in n}


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


def _few(items: Sequence[str], n: int = 5) -> str:
    return "; ".join(items[:n]) + (f" (+{len(items) - n})" if len(items) > n else "")


def check_invariants(
    trades: Sequence[TradeOutcome],
    states: dict[str, dict[str, Any]],
    ledger: LedgerView | None,
    alert_lines: Iterable[str],
    *,
    alert_runs: Iterable[str] = (),
    histories: Mapping[str, int] | None = None,
    exposure: Mapping[str, Exposure] | None = None,
) -> list[Check]:
    """The chaos verdict: a list of checks, each ok or not, with what was wrong.

    ``alert_runs``: trade ids with an ``emergency_close`` AlertWorkflow child; ``histories``:
    ``workflow id/run id`` → history length of every run (None: not collected, the check
    fails); ``exposure``: trade id → what the sampler integrated (None: not sampled, fails)."""
    checks: list[Check] = []

    unfinished = [
        f"{t.trade_id} {t.workflow_status}/{t.state}" for t in trades
        if t.workflow_status not in OK_STATUSES or t.state not in TERMINAL
    ]
    counts = Counter(t.state for t in trades)
    checks.append(Check(
        C_ENDED, not unfinished,
        _few(unfinished) if unfinished else
        f"{len(trades)} trades: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=str)),
    ))

    bad = _flat_detail(states)
    checks.append(Check(C_FLAT, not bad, _few(bad, 6) if bad else f"{len(states)} venues flat"))

    dups = double_executions(states)
    n_orders = sum(len(st.get("orders", [])) for st in states.values())
    checks.append(Check(C_DUPS, not dups, _few(dups, 6) if dups else f"{n_orders} orders, every executed id once"))

    if ledger is None:
        checks.append(Check(C_LEDGER, True, "skipped (no ledger package)"))
    elif not ledger.available:
        checks.append(Check(C_LEDGER, False, f"ledger not available: {ledger.reason}"))
    else:
        diffs = []
        for venue, st in sorted(states.items()):
            v = venue_totals(st)
            lt = ledger.totals.get(venue, {})
            for k, vv in v.items():
                lv = lt.get(k, Decimal(0))
                if abs(lv - vv) > TOL:
                    diffs.append(f"{venue} {k}: ledger {lv} vs venue {vv}")
        if ledger.trades < len(trades):
            diffs.append(f"ledger holds {ledger.trades} trades, {len(trades)} were run")
        checks.append(Check(
            C_LEDGER, not diffs, _few(diffs, 6) if diffs else
            f"{ledger.trades} trades; per venue qty, fees and funding equal "
            + ", ".join(f"{v}: fees {ledger.totals.get(v, {}).get('fees', 0):.4f} funding "
                        f"{ledger.totals.get(v, {}).get('funding', 0):.4f}" for v in sorted(states)),
        ))

    by_log = alerted_trades(alert_lines)
    alerted = by_log | set(alert_runs)
    emergencies = [t.trade_id for t in trades if t.emergency]
    missing = [t for t in emergencies if t not in alerted]
    checks.append(Check(C_ALERTS, not missing,
                        f"no alert for {', '.join(missing[:5])}" if missing else
                        f"{len(emergencies)} emergency closes, all alerted "
                        f"({len([t for t in emergencies if t in by_log])} in the worker log)"))

    limit = int(HISTORY_LIMIT * HISTORY_SHARE)
    if histories is None:
        checks.append(Check(C_HISTORY, False, "history lengths not collected"))
    else:
        big = sorted(((n, k) for k, n in histories.items() if n >= limit), reverse=True)
        top = max(histories.items(), key=lambda kv: kv[1], default=("-", 0))
        checks.append(Check(C_HISTORY, not big,
                            _few([f"{k} {n} events" for n, k in big]) + f" (limit {limit})" if big else
                            f"{len(histories)} runs, longest {top[1]} events ({top[0]}) < {limit}"))

    if exposure is None:
        checks.append(Check(C_NAKED, False, "positions not sampled"))
    else:
        naked = []
        excused = 0
        for t in trades:
            ex = exposure.get(t.trade_id)
            if ex is None:
                naked.append(f"{t.trade_id} never sampled")
                continue
            worst = max(ex.intervals, key=lambda iv: iv.uncovered_s, default=None)
            if worst is not None and worst.uncovered_s > NAKED_LIMIT_S:
                naked.append(f"{t.trade_id} naked {worst.uncovered_s:.1f}s at +{worst.start_s:.1f}s "
                             f"(max unhedged {worst.max_qty} ≈ {worst.max_notional:.0f} USD)")
            elif any(iv.duration_s > NAKED_LIMIT_S for iv in ex.intervals):
                excused += 1
        worst_all = max((ex.max_naked_s for ex in exposure.values()), default=0.0)
        checks.append(Check(C_NAKED, not naked, _few(naked) if naked else
                            f"longest naked {worst_all:.2f}s"
                            + (f"; {excused} longer while both venues were down" if excused else "")))
    return checks


def format_checks(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{'PASS' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in checks)


# ---------------------------------------------------------------------------------- table
def trade_rows(trades: Sequence[TradeOutcome], exposure: Mapping[str, Exposure],
               orders: Mapping[str, tuple[int, int]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per trade (the JSON keys of ``trades``) and the totals."""
    rows = []
    for t in trades:
        ex = exposure.get(t.trade_id) or Exposure()
        n, d = orders.get(t.symbol, (0, 0))
        rows.append({
            "trade_id": t.trade_id, "symbol": t.symbol, "long_venue": t.long_venue, "short_venue": t.short_venue,
            "workflow_status": t.workflow_status, "state": t.state, "emergency": t.emergency,
            "max_naked_s": round(ex.max_naked_s, 3), "p99_naked_s": round(ex.p99_naked_s, 3),
            "naked_s": round(ex.naked_s, 3), "naked_intervals": len(ex.intervals),
            "notional_s": round(ex.notional_s, 2), "orders": n, "duplicates": d,
            "intervals": [iv.as_dict() for iv in ex.intervals],
        })
    totals = {
        "trades": len(rows),
        "max_naked_s": max((r["max_naked_s"] for r in rows), default=0.0),
        "p99_naked_s": round(percentile([iv["duration_s"] for r in rows for iv in r["intervals"]], 0.99), 3),
        "naked_s": round(sum(r["naked_s"] for r in rows), 3),
        "naked_intervals": sum(r["naked_intervals"] for r in rows),
        "notional_s": round(sum(r["notional_s"] for r in rows), 2),
        "orders": sum(r["orders"] for r in rows),
        "duplicates": sum(r["duplicates"] for r in rows),
    }
    return rows, totals


COLUMNS = (("trade", "trade_id"), ("state", "state"), ("max naked s", "max_naked_s"),
           ("p99 naked s", "p99_naked_s"), ("naked s", "naked_s"), ("notional·s", "notional_s"),
           ("orders", "orders"), ("dups", "duplicates"))


def format_table(rows: Sequence[dict[str, Any]], totals: dict[str, Any]) -> str:
    """Plain-text table (``rich`` is not installed in this environment; used when it is)."""
    body = [[_cell(r, k) for _, k in COLUMNS] for r in rows]
    body.append(["TOTAL", f"{totals['trades']} trades", *(_cell(totals, k) for _, k in COLUMNS[2:])])
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        heads = [h for h, _ in COLUMNS]
        w = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(heads)]
        fmt = lambda cells: "  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(cells))  # noqa: E731
        return "\n".join([fmt(heads), fmt(["-" * x for x in w]), *(fmt(b) for b in body[:-1]),
                          fmt(["-" * x for x in w]), fmt(body[-1])])
    table = Table(*(h for h, _ in COLUMNS))
    for b in body:
        table.add_row(*b)
    console = Console(width=160, record=True)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


def _cell(r: dict[str, Any], k: str) -> str:
    v = r.get(k)
    if k == "trade_id":
        if not r.get("symbol"):
            return str(v)[:40]
        return f"{str(r['symbol']).split('/')[0]} {r['long_venue']}→{r['short_venue']}"
    if k == "state":
        return f"{v}{'*' if r.get('emergency') else ''}"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)
