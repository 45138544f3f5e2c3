"""The ``tuning`` settings section: how one worker process spends its slots, pollers and
sticky cache, and how it shares venue reads between trades (issue 12).

Read by ``workers/worker.py`` (the ``Worker(...)`` keywords) and ``venues/pool.py`` (the shared
reads of ``venues/shared_reads.py``). Every field has a default that suits one worker holding
up to about 1,000 trades; ``HEDGEFLOW__TUNING__KEY`` overrides one.
"""

from __future__ import annotations

from pydantic import Field

from config.venue import _Section


class WorkerTuning(_Section):
    """Worker slots, pollers and sticky cache, and the freshness of shared venue reads."""

    max_concurrent_activities: int = Field(
        128, ge=1, le=10_000,
        description="activity slots of one worker (orders, reads, ledger writes, alerts; a shared position read "
        "holds its slot until the next venue read, up to positions_read_gap_s)")
    max_concurrent_workflow_tasks: int = Field(
        8, ge=2, le=10_000,
        description="workflow task slots of one worker: the tasks share one core (the GIL), so more slots only "
        "queue inside the worker, where a task may outlive its 2 s task timeout (a taken-over worker replaying "
        "its trades with 32 slots kept timing them out)")
    max_concurrent_local_activities: int = Field(
        128, ge=1, le=10_000,
        description="local activity slots: a holding trade's monitor read in flight is one (monitor-v2)")
    workflow_task_pollers: int = Field(
        5, ge=2, le=100, description="concurrent workflow task polls (the SDK's default; at least 2: sticky and normal)")
    activity_task_pollers: int = Field(5, ge=1, le=100, description="concurrent activity task polls")
    max_cached_workflows: int = Field(
        1500, ge=0, le=100_000,
        description="sticky cache: workflows kept in memory between tasks; a trade evicted from it is replayed "
        "from its history on its next task (CPU), so keep it above the trades one worker holds")
    sticky_schedule_to_start_timeout_s: float = Field(
        1.0, gt=0, le=60,
        description="a task waiting on a dead worker's sticky queue goes to any worker after this long")
    shared_reads: bool = Field(
        True, description="trades on one venue account share its position, mark/funding and income reads "
        "(venues/shared_reads.py); false: every trade reads its venues itself")
    read_max_age_s: float | None = Field(
        None, gt=0, le=60,
        description="marks and funding rates served to every trade while at most this old; "
        "default trade.monitor_interval_s / 5, at most 1 s")
    positions_read_gap_s: float | None = Field(
        None, ge=0, le=10,
        description="at most one position read per venue this often (a trade is served by the first read begun "
        "after it asked); default trade.monitor_interval_s / 40 (0.25 s at 10 s)")
