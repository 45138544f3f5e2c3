"""The early "already has an open trade" refusal (control/trades.py ``open_trades_touching``): the
visibility list lags, so a trade it still lists as running is asked itself. Seen in the bench: the
next open of a symbol right after its trade closed was refused, naming the closed trade. A fake
client (one branch of pure control logic); the real refusal is tested end to end in
tests/test_trade_workflow.py."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from control.trades import open_trades_touching


@dataclass
class Listed:
    id: str


class FakeClient:
    def __init__(self, statuses: dict[str, WorkflowExecutionStatus | None]) -> None:
        self.statuses = statuses  # None: describe fails

    async def list_workflows(self, query: str):
        for wf in self.statuses:
            yield Listed(wf)

    def get_workflow_handle(self, wf_id: str):
        status = self.statuses[wf_id]

        class Handle:
            async def describe(self):
                if status is None:
                    raise RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")
                return type("Desc", (), {"status": status})()

        return Handle()


async def test_a_listed_trade_that_has_ended_does_not_refuse_the_next_open():
    client = FakeClient({"trade-closed": WorkflowExecutionStatus.COMPLETED,
                         "trade-running": WorkflowExecutionStatus.RUNNING,
                         "trade-unknown": None})
    busy = await open_trades_touching(client, "S001/USDT:USDT", ["sim-a", "sim-b"])  # type: ignore[arg-type]
    assert busy == ["trade-running", "trade-unknown"]  # one that cannot be asked still counts
