"""``hedgeflow report``: outcome of the trades on a task queue (finished ones from their
results, running ones from their ``status`` query) beside the hindsight upper bound of the
replayed data."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus

from domain.lifecycle import TERMINAL
from domain.replay_data import read_rows
from domain.report import RateRow, TradeOutcome, open_outcome, totals
from messages.trade import TradeStatus
from workflows.trade import TradeWorkflow

ZERO = Decimal(0)


def load_rates(path: str | Path) -> list[RateRow]:
    return [RateRow(r.t_ms, r.venue, r.symbol, r.rate) for r in read_rows(path)]


def outcome(st: TradeStatus) -> TradeOutcome:
    """A finished trade from its settled PnL; one still open (not terminal) from what it paid and
    collected so far, its positions marked by the venues (``domain.report.open_outcome``)."""
    if st.state not in TERMINAL:
        return open_outcome(st.trade_id, st.symbol, st.long_venue, st.short_venue, st.state,
                            st.funding_collected_usd, [leg.fees for leg in st.legs],
                            [leg.position.unrealized_pnl if leg.position else None for leg in st.legs])
    price = sum((leg.price_pnl or ZERO for leg in st.legs), ZERO)
    net = st.realized_pnl_usd if st.realized_pnl_usd is not None else st.funding_collected_usd - st.fees_usd + price
    return TradeOutcome(st.trade_id, st.symbol, st.long_venue, st.short_venue, st.state,
                        st.funding_collected_usd, st.fees_usd, price, net)


async def collect(client: Client, task_queue: str) -> list[TradeOutcome]:
    q = f"WorkflowType = 'TradeWorkflow' AND TaskQueue = '{task_queue}'"
    # a trade that continued as new is listed once per run: its earlier runs are skipped (their
    # result would follow the chain and wait for the live run to end), the live or last run counts
    wfs = [w async for w in client.list_workflows(q) if w.status != WorkflowExecutionStatus.CONTINUED_AS_NEW]

    async def one(w: Any) -> TradeOutcome | None:
        h = client.get_workflow_handle(w.id, run_id=w.run_id, result_type=TradeStatus)
        try:
            if w.status == WorkflowExecutionStatus.RUNNING:
                st = await h.query(TradeWorkflow.status)
            else:
                st = await h.result(follow_runs=False)
        except Exception:  # noqa: BLE001 - a failed/terminated trade has no result
            return None
        return outcome(st)

    rows = await asyncio.gather(*(one(w) for w in wfs))
    return sorted((r for r in rows if r is not None), key=lambda r: r.trade_id)


def render(rows: list[TradeOutcome], bound: Decimal | None, notional: Decimal) -> str:
    t = totals(rows)
    q = Decimal("0.01")
    lines = [f"{'TRADE':<56} {'STATE':<10} {'FUNDING':>10} {'FEES':>9} {'SLIPPAGE':>9} {'NET':>10}"]
    for r in rows:
        lines.append(f"{r.trade_id:<56} {r.state:<10} {r.funding_usd.quantize(q):>10} {r.fees_usd.quantize(q):>9} "
                     f"{(-r.price_pnl_usd).quantize(q):>9} {r.net_usd.quantize(q):>10}" + ("  open, marked" if r.open else ""))
    lines += [
        f"trades            {t.trades}" + (f"  ({t.open_trades} open: so far, marked to the venues' marks)"
                                           if t.open_trades else ""),
        f"funding collected {t.funding_usd.quantize(q)} USD",
        f"fees              {t.fees_usd.quantize(q)} USD",
        f"slippage & basis  {t.slippage_usd.quantize(q)} USD",
        f"net PnL           {t.net_usd.quantize(q)} USD  (= funding − fees − slippage)",
    ]
    if bound is not None:
        lines.append(f"hindsight bound   {bound.quantize(q)} USD  (best pair each settlement, no costs, "
                     f"{notional} USD per trade)")
    return "\n".join(lines)


def data_span_ms(path: str | Path) -> tuple[int, int]:
    """First and last settlement time of a replay file (data ms)."""
    times = [r.t_ms for r in load_rates(path)]
    return min(times), max(times)


async def report_text(client: Client, task_queue: str, data: str | Path | None, notional: Decimal,
                      max_trades: int) -> str:
    """The text ``hedgeflow report`` prints (the supervisor prints it once a replay is over)."""
    from domain.report import hindsight_upper_bound

    rows = await collect(client, task_queue)
    bound = hindsight_upper_bound(load_rates(data), notional, max_trades) if data else None
    return render(rows, bound, notional)
