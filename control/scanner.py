"""Client-side operations on the ``scanner`` workflow: pause/resume, halt/unhalt, status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from config import Settings
from config.names import SCANNER_ID
from messages.scanner import HaltRequest, ScannerStatus
from workflows.scanner import ScannerWorkflow, scanner_args


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
        return await client.get_workflow_handle(wf_id).query(ScannerWorkflow.status)
    except RPCError as exc:
        raise ScannerUnavailable(f"scanner {wf_id!r} did not answer ({exc.message}); is a worker running?") from None


#: the scanner's operator signals by the name the CLI uses
SIGNALS = {"pause": ScannerWorkflow.pause, "resume": ScannerWorkflow.resume, "unhalt": ScannerWorkflow.unhalt}


async def signal_scanner(client: Client, signal: Callable[..., Any] | str, arg: object = None,
                         wf_id: str = SCANNER_ID) -> None:
    """Send one of the scanner's signals (a ``ScannerWorkflow`` method, or its CLI name)."""
    fn = SIGNALS[signal] if isinstance(signal, str) else signal
    if not await scanner_running(client, wf_id):
        raise ScannerUnavailable(f"the scanner workflow {wf_id!r} is not running (start it with `hedgeflow up`)")
    handle = client.get_workflow_handle(wf_id)
    if arg is None:
        await handle.signal(fn)
    else:
        await handle.signal(fn, arg)


def signal_name(fn: Callable[..., Any]) -> str:
    """The registered name of a signal method (signal-with-start takes a name, not a method)."""
    return fn.__temporal_signal_definition.name  # type: ignore[attr-defined]


async def halt(client: Client, settings: Settings, *, close_all: bool, reason: str,
               wf_id: str = SCANNER_ID, wait_s: float = 30) -> list[str]:
    """Halt opening (starting the scanner halted if it is not running). With ``close_all``, the
    scanner closes every open trade after any cycle in flight (so a trade it was starting is
    included): ONE route. Waits up to ``wait_s`` for the scanner to report the ids it closed;
    if no worker runs the scanner in that time, the close-all stays queued in it (durable) and
    :class:`ScannerUnavailable` says so."""
    req = HaltRequest(reason=reason, close_all=close_all)
    asked = int(time.time() * 1000)
    await client.start_workflow(
        ScannerWorkflow.run, args=scanner_args(settings), id=wf_id, task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal=signal_name(ScannerWorkflow.halt), start_signal_args=[req],
    )
    if not close_all:
        return []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            st = await client.get_workflow_handle(wf_id).query(ScannerWorkflow.status)
            if st.close_all_done_ms is not None and st.close_all_done_ms >= asked - 5000:
                return list(st.closed_on_halt)
        except RPCError:
            pass
        await asyncio.sleep(0.2)
    raise ScannerUnavailable(
        f"halted, but the scanner has not confirmed the close-all within {wait_s:.0f} s (is a worker running?); "
        "it stays queued and runs as soon as a worker picks the scanner up — check `hedgeflow trade list`")
