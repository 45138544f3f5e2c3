"""Client-side trade operations shared by the CLI (and later the scanner's tooling)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from config import Settings
from config.names import SA_LONG, SA_SHORT, SA_STATE, SA_SYMBOL
from domain.ids import trade_workflow_id
from workflows.models import CloseRequest, HoldParams, TradeParams, TradeStatus
from workflows.visibility import search_attributes_for, summary_line


class TradeRefused(Exception):
    """Opening a trade was refused before anything was started; the message says why."""


def params_from_settings(
    settings: Settings, symbol: str, long_venue: str, short_venue: str, notional: Decimal, trade_id: str
) -> TradeParams:
    t = settings.trade
    return TradeParams(
        trade_id=trade_id,
        symbol=symbol,
        long_venue=long_venue,
        short_venue=short_venue,
        notional_usd=notional,
        leverage=settings.limits.leverage,
        margin_buffer=settings.limits.margin_buffer,
        max_order_notional_usd=settings.limits.max_order_notional_usd,
        verify_timeout_s=t.verify_timeout_s,
        topup_attempts=t.topup_attempts,
        close_retry_max_s=t.close_retry_max_s,
        hold=HoldParams(
            monitor_interval_s=t.monitor_interval_s,
            max_gap=t.max_gap,
            exit_spread_bps=t.exit_spread_bps,
            exit_checks=t.exit_checks,
            max_hold_s=t.max_hold_s,
            reduce_liq_distance=t.reduce_liq_distance,
            close_liq_distance=t.close_liq_distance,
        ),
    )


async def open_trades_touching(client: Client, symbol: str, venues: list[str]) -> list[str]:
    """Ids of running trades on ``symbol`` that use any of ``venues`` (one-way position mode
    nets positions, so only one trade per symbol and venue may be open)."""
    names = ", ".join(f"'{v}'" for v in venues)
    query = (
        f"WorkflowType = 'TradeWorkflow' AND ExecutionStatus = 'Running' AND Symbol = '{symbol}' "
        f"AND (LongVenue IN ({names}) OR ShortVenue IN ({names}))"
    )
    return [w.id async for w in client.list_workflows(query)]


async def scanner_halted(client: Client) -> str | None:
    """The halt reason when trading is halted (the ``scanner`` workflow's memo), else None."""
    try:
        desc = await client.get_workflow_handle("scanner").describe()
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
    names = [v.name for v in settings.venues]
    for flag, v in (("--long", long_venue), ("--short", short_venue)):
        if v not in names:
            raise TradeRefused(f"{flag}: unknown venue {v!r}; configured venues: {', '.join(names)}")
    if long_venue == short_venue:
        raise TradeRefused("--long and --short must be different venues")
    if notional <= 0:
        raise TradeRefused(f"--notional must be > 0 (got {notional})")
    if notional > settings.limits.max_order_notional_usd:
        raise TradeRefused(
            f"--notional {notional} exceeds limits.max_order_notional_usd "
            f"({settings.limits.max_order_notional_usd}); lower it or raise the limit"
        )
    if "/" not in symbol or ":" not in symbol:
        raise TradeRefused(f"--symbol must be a ccxt unified perpetual symbol like BTC/USDT:USDT (got {symbol!r})")


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
    await client.start_workflow(
        "TradeWorkflow",
        args=[params, None],
        id=wf_id,
        task_queue=settings.temporal.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        search_attributes=search_attributes_for(params),
        static_summary=summary_line(params),
        static_details=f"opened by {opened_by}",
    )
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
        return await handle.query("status", result_type=TradeStatus)
    except RPCError as exc:
        raise TradeRefused(f"trade {workflow_id}: {exc.message}") from None


async def close_trade(client: Client, workflow_id: str, *, emergency: bool, reason: str) -> None:
    handle = client.get_workflow_handle(workflow_id)
    desc = await handle.describe()
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise TradeRefused(f"trade {workflow_id} is not running ({desc.status.name})")
    await handle.signal("emergency_close" if emergency else "close", CloseRequest(reason=reason))
