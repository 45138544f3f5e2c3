"""AlertWorkflow: one notification, delivered on its own path with its own retry budget.

A trade never awaits a webhook: it starts one of these as an abandoned child (a server round
trip of milliseconds) and goes on trading. The child sends the alert through the
``send_alert`` activity (always logged; POSTed when ``alerts.webhook_url`` is set), retried
up to ``ALERT_OPTS``; a delivery that never succeeds fails this workflow, visible in the Web
UI, and the log line is already written.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.trade import TradeActivities
    from messages.trade import Alert
    from workflows.options import ALERT_OPTS


@workflow.defn(name="AlertWorkflow")
class AlertWorkflow:
    @workflow.run
    async def run(self, alert: Alert) -> None:
        await workflow.execute_activity_method(
            TradeActivities.send_alert, alert, summary=f"alert {alert.kind}", **ALERT_OPTS)
