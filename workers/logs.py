"""Logging set up at the start of a hedgeflow process that talks to Temporal (the worker, ``up``,
the command line): ``config.logs.configure_logging`` with every secret of the settings masked,
plus what only a Temporal process needs:

* records logged by plain loggers inside an activity (``hedgeflow.activities``,
  ``hedgeflow.alerts`` …) get the activity's ids — ``activity_id``, ``activity_type``,
  ``workflow_id``, ``run_id``, ``attempt``, and the ``trade_id`` behind the workflow — from the
  SDK's activity context, as ``activity.logger`` would add them;
* the SDK core's own (Rust) log lines arrive through ``temporalio.core``
  (``workers.client.telemetry_config``), in the same format.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from config.logs import configure_logging, settings_secrets

if TYPE_CHECKING:
    from config import Settings


class ActivityContext(logging.Filter):
    """Adds the running activity's ids to a record that has none (plain loggers inside activities)."""

    def filter(self, record: logging.LogRecord) -> bool:
        activity = sys.modules.get("temporalio.activity")
        if activity is None or getattr(record, "temporal_activity", None) is not None:
            return True
        try:
            if not activity.in_activity():
                return True
            info = activity.info()
        except RuntimeError:  # pragma: no cover - no context after all
            return True
        record.temporal_activity = {
            "activity_id": info.activity_id, "activity_type": info.activity_type, "attempt": info.attempt,
            "workflow_id": info.workflow_id, "workflow_run_id": info.workflow_run_id,
            "workflow_type": info.workflow_type, "task_queue": info.task_queue,
        }
        return True


def setup_process_logging(settings: Settings, *, extra_secrets: list[str] = (), stream: Any = None) -> logging.Handler:
    """Configure this process's logging from ``settings.logging``; call once at process start."""
    handler = configure_logging(settings.logging, secrets=[*settings_secrets(settings), *extra_secrets],
                                stream=stream)
    handler.addFilter(ActivityContext())
    return handler
