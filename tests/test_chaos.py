"""The chaos suite: a small seeded run end to end (real dev server, simulators, a worker
subprocess killed with SIGKILL, a dev-server restart), and the invariant checker on doctored
venue states so that each check is shown to fail when it should."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from types import SimpleNamespace

from lab.chaos import (
    LedgerView,
    TradeOutcome,
    alerted_trades,
    check_invariants,
    double_executions,
    venue_totals,
    was_emergency,
)
from lab.harness import ROOT

T1 = "trade-S001USDT-sim-a-sim-b-x1"
T2 = "trade-S002USDT-sim-b-sim-c-x2"


def _order(cid: str, side: str, qty: str, status: str = "FILLED") -> dict:
    return {"clientOrderId": cid, "side": side, "executedQty": qty, "status": status, "arrived_ns": 1}


def _good_world():
    trades = [
        TradeOutcome(T1, "COMPLETED", "closed", "sim-a", "sim-b", emergency=True),
        TradeOutcome(T2, "CANCELED", "closed", "sim-b", "sim-c"),
    ]
    states = {
        "sim-a": {"positions": [], "orders": [_order("hfLox1", "BUY", "2"), _order("hfLc1x1", "SELL", "2")],
                  "income": [{"incomeType": "COMMISSION", "income": "-0.2"},
                             {"incomeType": "FUNDING_FEE", "income": "0.05"}]},
        "sim-b": {"positions": [], "orders": [_order("hfSox1", "SELL", "2"), _order("hfSc1x1", "BUY", "2"),
                                              _order("hfLox2", "BUY", "1"), _order("hfLc1x2", "SELL", "1"),
                                              _order("hfLrej", "BUY", "0", "REJECTED")],
                  "income": [{"incomeType": "COMMISSION", "income": "-0.3"}]},
        "sim-c": {"positions": [], "orders": [_order("hfSox2", "SELL", "1"), _order("hfSc1x2", "BUY", "1")],
                  "income": [{"incomeType": "COMMISSION", "income": "-0.1"}]},
    }
    ledger = LedgerView(True, trades=2, totals={
        "sim-a": {"buy_qty": Decimal(2), "sell_qty": Decimal(2), "fees": Decimal("0.2"), "funding": Decimal("0.05")},
        "sim-b": {"buy_qty": Decimal(3), "sell_qty": Decimal(3), "fees": Decimal("0.3"), "funding": Decimal(0)},
        "sim-c": {"buy_qty": Decimal(1), "sell_qty": Decimal(1), "fees": Decimal("0.1"), "funding": Decimal(0)},
    })
    alerts = [f"ALERT emergency_close 🚨 [hedgeflow] EMERGENCY CLOSE: S001/USDT:USDT ... (trade {T1})"]
    return trades, states, ledger, alerts


def _failed(checks) -> dict[str, str]:
    return {c.name: c.detail for c in checks if not c.ok}


def test_checker_passes_a_consistent_world():
    checks = check_invariants(*_good_world())
    assert len(checks) == 5
    assert _failed(checks) == {}


def test_checker_detects_each_violation():
    trades, states, ledger, alerts = _good_world()
    # a trade still holding, a position left open, an id executed twice, a ledger gap, a silent emergency
    trades[1] = TradeOutcome(T2, "RUNNING", "holding", "sim-b", "sim-c", emergency=False)
    states["sim-c"]["positions"] = [{"symbol": "S002/USDT:USDT", "positionAmt": "-1"}]
    states["sim-a"]["orders"].append(_order("hfLox1", "BUY", "2"))
    failed = _failed(check_invariants(trades, states, ledger, []))
    assert set(failed) == {
        "every trade closed or aborted",
        "all venue positions flat",
        "no client order id executed twice",
        "ledger equals venue fills and income",
        "every emergency close alerted",
    }
    assert T2 in failed["every trade closed or aborted"]
    assert "sim-c" in failed["all venue positions flat"]
    assert "hfLox1 ×2" in failed["no client order id executed twice"]
    assert "sim-a buy_qty" in failed["ledger equals venue fills and income"]
    assert T1 in failed["every emergency close alerted"]


def test_checker_terminated_trade_and_missing_ledger_fail():
    trades, states, _ledger, alerts = _good_world()
    trades[0] = TradeOutcome(T1, "TERMINATED", "holding", "sim-a", "sim-b")
    failed = _failed(check_invariants(trades, states, LedgerView(False, "no ledger database"), alerts))
    assert "every trade closed or aborted" in failed
    assert "not available" in failed["ledger equals venue fills and income"]
    # no ledger package at all: the ledger check is skipped, not failed
    ok = check_invariants(_good_world()[0], states, None, alerts)
    assert all(c.ok for c in ok if c.name.startswith("ledger"))


def test_helpers():
    _, states, _, alerts = _good_world()
    assert venue_totals(states["sim-a"]) == {"buy_qty": Decimal(2), "sell_qty": Decimal(2), "fees": Decimal("0.2"),
                                             "funding": Decimal("0.05")}
    assert double_executions(states) == []
    assert alerted_trades(alerts) == {T1}
    assert alerted_trades(["ALERT trade_closed ... (trade trade-x)"]) == set()
    st = SimpleNamespace(state="closed", emergency=True, close_reason="signal: chaos emergency")
    assert was_emergency(st)
    st = SimpleNamespace(state="aborted", emergency=False, close_reason="LEG_FAILED short: InvalidOrder")
    assert was_emergency(st)
    st = SimpleNamespace(state="closed", emergency=False, close_reason="signal: chaos close")
    assert not was_emergency(st)


def test_chaos_small_run_keeps_every_invariant(tmp_path):
    """`hedgeflow chaos --trades 4 --seed 1`: faults, a worker SIGKILL, a dev-server restart."""
    out = subprocess.run(
        [sys.executable, "-m", "hedgeflow", "chaos", "--trades", "4", "--seed", "1", "--timeout", "120",
         "--json", str(tmp_path / "chaos.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-6000:]
    for name in ("every trade closed or aborted", "all venue positions flat", "no client order id executed twice",
                 "ledger equals venue fills and income", "every emergency close alerted"):
        assert f"PASS  {name}" in out.stdout, text[-6000:]
    assert "chaos: OK (5/5 checks passed)" in out.stdout
    assert "worker started 2 times" in out.stdout or "worker started 3 times" in out.stdout
