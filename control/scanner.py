"""Client-side operations on the ``scanner`` workflow: pause/resume, halt/unhalt, status."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from config import Settings
from workflows.scanner_models import HaltRequest, ScannerStatus

SCANNER_ID = "scanner"


class ScannerUnavailable(Exception):
    pass


async def scanner_running(client: Client, wf_id: str = SCANNER_ID) -> bool:
    try:
        desc = await client.get_workflow_handle(wf_id).describe()
    except RPCError:
        return False
    return desc.status == WorkflowExecutionStatus.RUNNING


async def scanner_status(client: Client, wf_id: str = SCANNER_ID) -> ScannerStatus:
    if not await scanner_running(client, wf_id):
        raise ScannerUnavailable(f"the scanner workflow {wf_id!r} is not running (start it with `hedgeflow up`)")
    try:
        return await client.get_workflow_handle(wf_id).query("status", result_type=ScannerStatus)
    except RPCError as exc:
        raise ScannerUnavailable(f"scanner {wf_id!r} did not answer ({exc.message}); is a worker running?") from None


async def signal_scanner(client: Client, name: str, arg: object = None, wf_id: str = SCANNER_ID) -> None:
    if not await scanner_running(client, wf_id):
        raise ScannerUnavailable(f"the scanner workflow {wf_id!r} is not running (start it with `hedgeflow up`)")
    handle = client.get_workflow_handle(wf_id)
    if arg is None:
        await handle.signal(name)
    else:
        await handle.signal(name, arg)


async def halt(client: Client, settings: Settings, *, close_all: bool, reason: str,
               wf_id: str = SCANNER_ID, wait_s: float = 30) -> list[str]:
    """Halt opening (starting the scanner halted if it is not running) and, with ``close_all``,
    close every open trade: the scanner does it after any cycle in flight (so a trade it was
    starting is included), and this function then signals the rest directly. Returns the ids
    the close was sent to."""
    from activities.scanner import close_all_trades
    from workflows.scanner import ScannerWorkflow, scanner_args

    req = HaltRequest(reason=reason, close_all=close_all)
    asked = int(time.time() * 1000)
    await client.start_workflow(
        ScannerWorkflow.run, args=scanner_args(settings), id=wf_id, task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal="halt", start_signal_args=[req],
    )
    closed: list[str] = []
    if close_all:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                st = await client.get_workflow_handle(wf_id).query("status", result_type=ScannerStatus)
                if st.close_all_done_ms is not None and st.close_all_done_ms >= asked - 5000:
                    closed = list(st.closed_on_halt)
                    break
            except RPCError:
                pass
            await asyncio.sleep(0.2)
        for wf in await close_all_trades(client, reason, settings.temporal.task_queue):
            if wf not in closed:
                closed.append(wf)
    return closed
