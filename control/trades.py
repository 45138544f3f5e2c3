"""Client-side trade operations, once: start, list, status, close one, close all, and what the
scanner and reconciliation ask of running trades (the risk book, the positions they account
for). Used by the command line and the lab directly, and by the scanner's and reconcile's
activities through the ``activities.ports.TradeDirectory`` port the worker fills with this
module. Workflows are started, queried and signalled through their definitions.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from config import Settings
from config.names import SA_LONG, SA_SHORT, SA_STATE, SA_SYMBOL, SCANNER_ID
from domain import risk
from domain.ids import trade_workflow_id
from domain.risk import OpenTrade
from domain.venue_time import HOLD_DURATIONS, to_wall
from messages.scanner import RiskBookRequest, RiskBookView, StartTradeRequest, StartTradeResult
from messages.trade import CloseRequest, TradeParams, TradeStatus
from workflows.options import TRADE_TASK_TIMEOUT
from workflows.trade import TradeWorkflow
from workflows.visibility import search_attributes_for, summary_line

log = logging.getLogger("hedgeflow.control")
ZERO = Decimal(0)


class TradeRefused(Exception):
    """Opening a trade was refused before anything was started; the message says why."""


def params_from_settings(
    settings: Settings, symbol: str, long_venue: str, short_venue: str, notional: Decimal, trade_id: str
) -> TradeParams:
    """The trade's input: the request, the limits, and the ``trade`` settings embedded (its
    execution part and its hold part), not copied field by field.

    The hold's durations (``monitor_interval_s``, ``max_hold_s``, ``reduce_cooldown_s``) are venue
    seconds in the settings and wall seconds here: divided by the replay speed
    (``scanner.time_scale``) with the wall floors of :mod:`domain.venue_time`. The execution's I/O
    timeouts (``verify_timeout_s``, ``close_retry_max_s``, ``verify_poll_s``) stay wall seconds."""
    lim = settings.limits
    hold = settings.trade.hold()
    hold = hold.model_validate(to_wall(hold.model_dump(), settings.scanner.time_scale, HOLD_DURATIONS))
    return TradeParams(
        trade_id=trade_id, symbol=symbol, long_venue=long_venue, short_venue=short_venue, notional_usd=notional,
        leverage=lim.leverage, margin_buffer=lim.margin_buffer, max_order_notional_usd=lim.max_order_notional_usd,
        hold=hold, **settings.trade.execution(),
        usd_rates={v.name: v.settle_usd_rate for v in settings.venues
                   if v.name in (long_venue, short_venue) and v.settle_usd_rate != 1},
        taker_fees={v.name: v.taker_fee for v in settings.venues if v.name in (long_venue, short_venue)},
    )


def running_query(task_queue: str) -> str:
    """The visibility query of the running trades of ``task_queue``."""
    return f"WorkflowType = 'TradeWorkflow' AND ExecutionStatus = 'Running' AND TaskQueue = '{task_queue}'"


async def open_trades_touching(client: Client, symbol: str, venues: list[str]) -> list[str]:
    """Ids of running trades on ``symbol`` that use any of ``venues`` (one-way position mode
    nets positions, so only one trade per symbol and venue may be open). Visibility lags: a trade
    it still lists as running is asked itself (``describe``), so one that has just ended does not
    refuse the next open. (The lease, taken in the workflow before any order, is what guarantees
    one trade per symbol and venue; this is the early, friendly refusal.)"""
    names = ", ".join(f"'{v}'" for v in venues)
    query = (
        f"WorkflowType = 'TradeWorkflow' AND ExecutionStatus = 'Running' AND Symbol = '{symbol}' "
        f"AND (LongVenue IN ({names}) OR ShortVenue IN ({names}))"
    )
    listed = [w.id async for w in client.list_workflows(query)]
    return [wf for wf in listed if await _still_running(client, wf)]


async def _still_running(client: Client, wf_id: str) -> bool:
    try:
        return (await client.get_workflow_handle(wf_id).describe()).status == WorkflowExecutionStatus.RUNNING
    except RPCError:
        return True  # cannot tell: count it (a refusal the operator can retry beats a doubled trade)


async def scanner_halted(client: Client) -> str | None:
    """The halt reason when trading is halted (the ``scanner`` workflow's memo), else None."""
    try:
        desc = await client.get_workflow_handle(SCANNER_ID).describe()
    except RPCError:
        return None  # no scanner has ever run: nothing is halted
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return None
    try:
        halted = await desc.memo_value("halted", False)
    except (KeyError, TypeError, ValueError):
        return None
    if not halted:
        return None
    return str(await desc.memo_value("halt_reason", "halted"))


def validate_open(settings: Settings, symbol: str, long_venue: str, short_venue: str, notional: Decimal) -> None:
    """The request part of the pre-trade gate (``domain.risk.check_request``)."""
    refusal = risk.check_request(
        symbol, long_venue, short_venue, notional, venues=[v.name for v in settings.venues],
        max_order_notional_usd=settings.limits.max_order_notional_usd)
    if refusal is not None:
        raise TradeRefused(refusal.detail)


async def open_trade(
    client: Client,
    settings: Settings,
    symbol: str,
    long_venue: str,
    short_venue: str,
    notional: Decimal,
    *,
    stamp: str | None = None,
    opened_by: str = "manual",
    check_halt: bool = True,
    **overrides: Any,
) -> str:
    validate_open(settings, symbol, long_venue, short_venue, notional)
    if check_halt:
        halted = await scanner_halted(client)
        if halted:
            raise TradeRefused(f"trading is halted ({halted}); `hedgeflow resume` first")
    busy = await open_trades_touching(client, symbol, [long_venue, short_venue])
    if busy:
        raise TradeRefused(
            f"{symbol} already has an open trade on {long_venue} or {short_venue}: {', '.join(busy)} "
            "(one-way position mode nets positions; close it first)"
        )
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
    wf_id = trade_workflow_id(symbol, long_venue, short_venue, stamp)
    params = params_from_settings(settings, symbol, long_venue, short_venue, notional, wf_id)
    hold_overrides = overrides.pop("hold_overrides", None) or {}
    if hold_overrides:
        overrides["hold"] = params.hold.model_validate(params.hold.model_dump() | hold_overrides)
    params = params.model_copy(update={"opened_by": opened_by, **overrides})
    handle = await client.start_workflow(
        TradeWorkflow.run,
        args=[params, None],
        id=wf_id,
        task_queue=settings.temporal.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        task_timeout=TRADE_TASK_TIMEOUT,  # a task on a worker that died moves on after 2 s, not 10
        # the scanner starts trades from inside a worker (its client): the first workflow task runs
        # there at once, without a round trip through matching; from the CLI the server starts it as usual
        request_eager_start=True,
        search_attributes=search_attributes_for(params),
        memo={"notional_usd": str(notional)},  # the risk book's notional when the trade cannot be queried
        static_summary=summary_line(params),
        static_details=f"opened by {opened_by}",
    )
    log.info("trade %s started%s", wf_id, " eagerly (its first task on this process's worker)"
             if getattr(handle, "__temporal_eagerly_started", False) else "")
    return wf_id


async def list_trades(client: Client, query: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    q = "WorkflowType = 'TradeWorkflow'" + (f" AND ({query})" if query else "")
    out = []
    async for w in client.list_workflows(q, limit=limit):
        sa = w.typed_search_attributes
        out.append(
            {
                "id": w.id,
                "status": w.status.name if w.status else "?",
                "state": sa.get(SA_STATE),
                "symbol": sa.get(SA_SYMBOL),
                "long": sa.get(SA_LONG),
                "short": sa.get(SA_SHORT),
                "started": w.start_time.isoformat(timespec="seconds") if w.start_time else "",
            }
        )
    return out


async def trade_status(client: Client, workflow_id: str) -> TradeStatus:
    handle = client.get_workflow_handle(workflow_id)
    try:
        return await handle.query(TradeWorkflow.status)
    except RPCError as exc:
        raise TradeRefused(f"trade {workflow_id}: {exc.message}") from None


async def close_trade(client: Client, workflow_id: str, *, emergency: bool, reason: str) -> None:
    handle = client.get_workflow_handle(workflow_id)
    desc = await handle.describe()
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise TradeRefused(f"trade {workflow_id} is not running ({desc.status.name})")
    signal = TradeWorkflow.emergency_close if emergency else TradeWorkflow.close
    await handle.signal(signal, CloseRequest(reason=reason))


async def start_for_scanner(client: Client, settings: Settings, req: StartTradeRequest) -> StartTradeResult:
    """Start a TradeWorkflow with the deterministic id of this opportunity. A retry, a replayed
    or re-run cycle finds the workflow already there and reports ``existing``; the id reuse
    policy REJECT_DUPLICATE keeps a closed one from being started again."""
    wf_id = trade_workflow_id(req.symbol, req.long_venue, req.short_venue, req.stamp)
    try:
        await client.get_workflow_handle(wf_id).describe()
        return StartTradeResult(workflow_id=wf_id, outcome="existing", detail="already started")
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    try:
        started = await open_trade(
            client, settings, req.symbol, req.long_venue, req.short_venue, req.notional_usd,
            stamp=req.stamp, opened_by="scanner", check_halt=False,
        )
    except WorkflowAlreadyStartedError:
        return StartTradeResult(workflow_id=wf_id, outcome="existing", detail="already started")
    except TradeRefused as exc:
        return StartTradeResult(workflow_id=wf_id, outcome="refused", detail=str(exc))
    return StartTradeResult(workflow_id=started, outcome="started", detail=req.summary)


def _ms(dt: datetime | None) -> int:
    return int(dt.timestamp() * 1000) if dt else 0


async def read_risk_book(
    client: Client, req: RiskBookRequest, cache: dict[str, TradeStatus], task_queue: str
) -> RiskBookView:
    """Open trades (visibility; the notional from each trade's memo) and today's
    outcomes (results of trades closed since the day / cooldown window started)."""
    open_trades: list[OpenTrade] = []
    known: list[str] = []
    base = f"WorkflowType = 'TradeWorkflow' AND TaskQueue = '{task_queue}'"
    running = [w async for w in client.list_workflows(running_query(task_queue))]

    fallback = req.fallback_notional_usd if req.fallback_notional_usd is not None else ZERO

    async def notional(w: Any) -> Decimal:
        """The memo's notional (written at start; a trade's notional never changes); else the
        status query's (a trade started before memos); else the scanner's."""
        try:
            memo = await w.memo_value("notional_usd", None)
            if memo is not None:
                return Decimal(str(memo))
        except Exception:  # noqa: BLE001 - unreadable memo: ask the trade
            pass
        try:
            st = await client.get_workflow_handle(w.id).query(TradeWorkflow.status, rpc_timeout=timedelta(seconds=5))
            return st.notional_usd
        except Exception as exc:  # noqa: BLE001 - unknown: never count it as $0
            log.warning("risk book: cannot query %s (%s); counting the scanner's notional", w.id, type(exc).__name__)
        return fallback

    notionals = await asyncio.gather(*(notional(w) for w in running))
    for w, n in zip(running, notionals, strict=True):
        sa = w.typed_search_attributes
        known.append(w.id)
        open_trades.append(
            OpenTrade(
                trade_id=w.id,
                symbol=sa.get(SA_SYMBOL) or "",
                long_venue=sa.get(SA_LONG) or "",
                short_venue=sa.get(SA_SHORT) or "",
                notional_usd=n,
            )
        )
    since = min(req.day_start_ms, req.cooldown_since_ms, req.emergency_since_ms or req.day_start_ms)
    since_iso = datetime.fromtimestamp(since / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    q_closed = f"{base} AND ExecutionStatus != 'Running' AND CloseTime >= '{since_iso}'"
    closed = [w async for w in client.list_workflows(q_closed)]
    day_iso = datetime.fromtimestamp(req.day_start_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    trades_today = 0
    async for _ in client.list_workflows(f"{base} AND StartTime >= '{day_iso}'"):
        trades_today += 1

    async def result(wf_id: str, run_id: str | None) -> TradeStatus | None:
        key = f"{wf_id}/{run_id}"
        if key in cache:
            return cache[key]
        try:
            st = await client.get_workflow_handle(wf_id, run_id=run_id, result_type=TradeStatus).result()
        except Exception:  # noqa: BLE001 - failed/terminated trades have no status result
            st = None
        if st is not None:
            cache[key] = st
        return st

    outcomes = await asyncio.gather(*(result(w.id, w.run_id) for w in closed))
    realized = Decimal(0)
    last_close: dict[str, int] = {}
    by_time = sorted(zip(closed, outcomes, strict=True), key=lambda x: _ms(x[0].close_time))
    consecutive = 0
    for w, st in by_time:
        known.append(w.id)
        close_ms = _ms(w.close_time)
        sym = w.typed_search_attributes.get(SA_SYMBOL) or ""
        if close_ms >= req.cooldown_since_ms and sym:
            last_close[sym] = max(last_close.get(sym, 0), close_ms)
        if st is not None and close_ms >= req.day_start_ms and st.realized_pnl_usd is not None:
            realized += st.realized_pnl_usd
        if close_ms >= req.emergency_since_ms:
            emergency = st is None or st.emergency  # a trade that failed outright counts too
            consecutive = consecutive + 1 if emergency else 0
    if len(cache) > 5000:
        cache.clear()
    return RiskBookView(
        open_trades=open_trades,
        trades_today=trades_today,
        realized_today_usd=realized,
        consecutive_emergency=consecutive,
        last_close_ms=last_close,
        known_ids=known,
    )


async def close_all_trades(client: Client, reason: str, task_queue: str, also: list[str] = ()) -> list[str]:
    """Signal ``close`` to every running TradeWorkflow of ``task_queue`` (and to ``also``);
    return the ids signalled."""
    ids = [w.id async for w in client.list_workflows(running_query(task_queue))]
    for extra in also:
        if extra not in ids:
            ids.append(extra)
    closed = []
    for wf_id in ids:
        handle = client.get_workflow_handle(wf_id)
        try:
            desc = await handle.describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                continue
            await handle.signal(TradeWorkflow.close, CloseRequest(reason=reason))
            closed.append(wf_id)
        except Exception as exc:  # noqa: BLE001 - keep closing the others
            log.warning("close %s: %s", wf_id, exc)
    return closed


async def expected_positions(
    client: Any, task_queue: str, *, started_after_ms: int | None = None
) -> tuple[dict[tuple[str, str], Decimal], set[tuple[str, str]], set[str]]:
    """(venue, symbol) → signed qty the running holding trades account for; pairs to skip
    (a trade in a transient state — opening, verifying, hedge_check, closing, emergency_closing —
    not answering, or started at/after ``started_after_ms``, i.e. after the positions it is
    compared with were read); the ids of the running trades. The trades are queried
    concurrently."""
    expected: dict[tuple[str, str], Decimal] = {}
    busy: set[tuple[str, str]] = set()
    running = [w async for w in client.list_workflows(running_query(task_queue))]

    async def status(w: Any) -> TradeStatus | None:
        if started_after_ms is not None and _ms(w.start_time) >= started_after_ms:
            return None  # newer than the positions read: they may not show it yet
        try:
            return await client.get_workflow_handle(w.id).query(TradeWorkflow.status, rpc_timeout=timedelta(seconds=5))
        except Exception as exc:  # noqa: BLE001 - any failure: do not judge this trade's venues
            log.warning("reconcile: cannot query %s (%s); skipping its venues", w.id, type(exc).__name__)
            return None

    for w, st in zip(running, await asyncio.gather(*(status(w) for w in running)), strict=True):
        if st is None:
            sa = w.typed_search_attributes
            sym = sa.get(SA_SYMBOL)
            busy |= {(sa.get(SA_LONG), sym), (sa.get(SA_SHORT), sym)}
        elif st.state != "holding":
            busy |= {(st.long_venue, st.symbol), (st.short_venue, st.symbol)}
        else:
            long_leg, short_leg = st.legs
            expected[(long_leg.venue, st.symbol)] = expected.get((long_leg.venue, st.symbol), ZERO) + long_leg.filled_qty
            expected[(short_leg.venue, st.symbol)] = (expected.get((short_leg.venue, st.symbol), ZERO)
                                                      - short_leg.filled_qty)
    return expected, busy, {w.id for w in running}


async def trade_running(client: Client, trade_id: str) -> bool:
    """Whether the trade's workflow is still running; any doubt counts as running (a lease is
    only released for a trade known to have ended)."""
    try:
        desc = await client.get_workflow_handle(trade_id).describe()
    except RPCError as exc:
        return exc.status != RPCStatusCode.NOT_FOUND
    except Exception:  # noqa: BLE001 - unknown: keep the lease
        return True
    return desc.status == WorkflowExecutionStatus.RUNNING
