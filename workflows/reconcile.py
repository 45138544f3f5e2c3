"""ReconcileWorkflow (id ``reconcile``): one reconciliation pass every ``interval_s``.

The pass itself is the ``reconcile`` activity (activities/reconcile.py); this workflow only
keeps time and the alert bookkeeping between passes, and continues-as-new every
``iterations_per_run`` passes so its history stays small. Query ``status`` → the last report.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from messages.trade import ReconcileParams, ReconcileReport, ReconcileRequest

WORKFLOW_ID = "reconcile"


@workflow.defn(name="ReconcileWorkflow")
class ReconcileWorkflow:
    def __init__(self) -> None:
        self._last: ReconcileReport | None = None
        self._error: str | None = None
        self._cycles = 0
        self._now = False

    @workflow.query(name="status")
    def status(self) -> dict:
        return {
            "cycles": self._cycles,
            "last_error": self._error,
            "last": self._last.model_dump(mode="json") if self._last else None,
        }

    @workflow.signal(name="run_now")
    def run_now(self) -> None:
        self._now = True

    @workflow.run
    async def run(self, p: ReconcileParams) -> None:
        state = p.state
        self._cycles = p.cycles
        for _ in range(p.iterations_per_run):
            try:
                self._last = await workflow.execute_activity_method(
                    ReconcileActivities.reconcile,
                    ReconcileRequest(state=state),
                    start_to_close_timeout=timedelta(seconds=max(60.0, p.interval_s)),
                    retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=10)),
                    summary="reconcile venues and ledger",
                )
                state = self._last.state
                self._error = None
            except ActivityError as exc:
                self._error = f"{type(exc.cause).__name__}: {exc.cause}"
            self._cycles += 1
            if workflow.info().is_continue_as_new_suggested():
                break
            self._now = False
            try:
                await workflow.wait_condition(lambda: self._now, timeout=p.interval_s,
                                              timeout_summary="reconcile interval")
            except TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(p.model_copy(update={"state": state, "cycles": self._cycles}),  # onto the current version
                                 initial_versioning_behavior=workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE)


def reconcile_params(settings) -> ReconcileParams:
    return ReconcileParams(interval_s=settings.reconcile.interval_s)
