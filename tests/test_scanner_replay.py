"""The scanner on replayed history: a slice of the shared Binance/Bybit/OKX funding file (two
days of BTC and ETH) replayed at high speed by three simulator processes. The scanner must
open trades only where the spread after costs is positive, and ``hedgeflow report`` must add
up: funding − fees − slippage = net PnL, and the hindsight bound is the best pair at every
settlement without costs (checked against an independent computation here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import replay_slice
from scanner_harness import scanner_params, start_scanner, status
from trade_harness import ROOT, SimVenue, settings_for

from messages.trade import CloseRequest, TradeStatus
from workers.worker import run_worker

FIRST, LAST = "2023-01-12T00:00:00Z", "2023-01-14T00:00:00Z"  # 7 settlements, 8 h apart
SPEED = 14400  # one 8 h interval every 2 wall seconds
NOTIONAL = Decimal("1000")
MAX_TRADES = 5  # limits.max_open_trades (default): the bound's trades per settlement




def write_slice(path: Path) -> list[dict]:
    return replay_slice.write(path, FIRST, LAST)


def independent_bound(rows: list[dict], notional: Decimal, max_trades: int) -> Decimal:
    """Best pair at every settlement, no costs: for each (time, symbol) the highest rate minus
    the lowest across venues; per time the ``max_trades`` best symbols; times the notional."""
    rates: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        rates[r["time"]][r["symbol"]].append(Decimal(r["funding_rate"]))
    total = Decimal(0)
    for per_symbol in rates.values():
        spreads = sorted((max(v) - min(v) for v in per_symbol.values() if len(v) > 1), reverse=True)
        total += sum(spreads[:max_trades], Decimal(0))
    return total * notional


async def test_replay_opens_only_positive_edges_and_report_adds_up(temporal_env, tmp_path):
    rows = write_slice(tmp_path / "slice.csv")
    assert len(rows) == 7 * 3 * 2
    names = ["binance", "bybit", "okx"]
    sims = {n: SimVenue(n, _port(), tmp_path / f"{n}.sqlite", tmp_path / f"{n}.log",
                        ["--replay", str(tmp_path / "slice.csv"), "--speed", str(SPEED)]) for n in names}
    with ThreadPoolExecutor(3) as ex:  # together: their replay clocks start within a moment
        list(ex.map(lambda s: s.start(), sims.values()))
    t_start = time.time()
    client = await temporal_env.client()
    task_queue = f"test-scan-replay-{uuid.uuid4().hex[:8]}"
    settings = settings_for(sims, exit_spread_bps=0, exit_checks=2)  # trades exit when the spread turns
    settings.temporal.task_queue = task_queue
    settings.state_dir = tmp_path / "state"
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=client, task_queue=task_queue, stop_event=stop,
                                            quiet=True, graceful_shutdown_timeout=2))
    params = scanner_params(settings, [], time_scale=Decimal(SPEED), horizon_h=Decimal("72"),
                            min_settlement_lead_s=0.2, stale_after_s=30, symbol_cooldown_s=0,
                            max_price_divergence=Decimal("0.01"), max_open_trades=MAX_TRADES)
    h = await start_scanner(client, task_queue, params)
    ids: list[str] = []
    try:
        end = t_start + 6 * 8 * 3600 / SPEED + 1.5  # last row settled
        edges = {}  # trade id -> the decomposition the scanner started it on
        while time.time() < end:
            st = await status(h)
            for r in st.candidates:
                if r.trade_id and r.detail == "started" and r.edge is not None:
                    edges.setdefault(r.trade_id, r.edge)
            await asyncio.sleep(0.25)
        st = await status(h)
        await h.terminate()
        started = {t.trade_id: t for t in st.trades_started if t.outcome == "started"}
        assert started, f"no trade on a slice with 4–5 bps/8h spreads: {st.counts_by_reason}"
        assert len(started) == st.trades_started_total
        for t in started.values():
            assert t.net_bps is not None and t.net_bps > 0, t
        for tid, e in edges.items():
            assert tid in started
            assert e.books_checked and e.spread_bps_8h > 0 and e.gross_bps > e.costs_bps, e
            assert e.net_bps == e.gross_bps - e.fees_bps - e.slippage_bps - e.buffer_bps > 0, e
        # the decomposition of accepted candidates: net = gross − fees − slippage − buffer > 0
        assert st.counts_by_reason.get("COSTS_EXCEED_EDGE", 0) + st.counts_by_reason.get("SPREAD_BELOW_MIN", 0) > 0
        for r in st.candidates:
            e = r.edge
            if e is None:
                continue
            assert e.net_bps == e.gross_bps - e.fees_bps - e.slippage_bps - e.buffer_bps
            if r.reason is None and r.trade_id:
                assert e.net_bps > 0 and e.spread_bps_8h > 0, r

        # close what is still open, then report
        ids = [w.id async for w in client.list_workflows(
            f"WorkflowType = 'TradeWorkflow' AND TaskQueue = '{task_queue}'")]
        assert set(started) == set(ids)
        await _close_all(client, ids)
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "hedgeflow", "report", "--json", "--data", str(tmp_path / "slice.csv")],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")},
                 "HEDGEFLOW__TEMPORAL__ADDRESS": temporal_env.address,
                 "HEDGEFLOW__TEMPORAL__TASK_QUEUE": task_queue,
                 "HEDGEFLOW__SCANNER__NOTIONAL_USD": str(NOTIONAL),
                 "HEDGEFLOW__LIMITS__MAX_OPEN_TRADES": str(MAX_TRADES)},
        )
        assert out.returncode == 0, out.stderr
        rep = {k: Decimal(v) if isinstance(v, str) else v for k, v in json.loads(out.stdout).items()}
        assert rep["trades"] == len(ids)
        cent = Decimal("0.01")
        assert abs(rep["funding_usd"] - rep["fees_usd"] - rep["slippage_usd"] - rep["net_usd"]) <= cent, rep
        # the same from each trade's own result
        finals = [await client.get_workflow_handle(i, result_type=TradeStatus).result() for i in ids]
        assert abs(sum((f.realized_pnl_usd or 0 for f in finals), Decimal(0)) - rep["net_usd"]) <= cent
        assert abs(sum((f.fees_usd for f in finals), Decimal(0)) - rep["fees_usd"]) <= cent
        assert rep["fees_usd"] > 0
        bound = independent_bound(rows, NOTIONAL, MAX_TRADES)
        assert rep["hindsight_bound_usd"] >= 0
        assert abs(rep["hindsight_bound_usd"] - bound) <= cent, (rep["hindsight_bound_usd"], bound)
        # funding actually collected can never beat hindsight by more than the price drift of the notional
        assert rep["funding_usd"] <= bound * Decimal("1.1"), (rep, bound)
    finally:
        with contextlib.suppress(Exception):
            await h.terminate()
        with contextlib.suppress(Exception):
            await _close_all(client, ids)
        stop.set()
        await asyncio.wait_for(asyncio.gather(worker, return_exceptions=True), 30)
        for s in sims.values():
            s.stop()


async def _close_all(client, ids):
    for wf_id in ids:
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(wf_id).signal("close", CloseRequest(reason="replay over"))
    async def one(wf_id):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.get_workflow_handle(wf_id, result_type=TradeStatus).result(), 60)

    await asyncio.gather(*(one(i) for i in ids))


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
