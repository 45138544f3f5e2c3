"""Each worker's share of every venue's request budget (issue 12; ``venues/budget.py``).

A worker takes ``1 / n`` of each venue's ``requests_per_second``, where ``n`` is the number of
workers Temporal lists as polling the trade task queue's activities (distinct identities seen in
the last ``POLLER_SEEN_S``). Refreshed every ``SHARE_REFRESH_S``; a failed look is logged and the
last share kept (a worker never takes more than its last share because Temporal could not answer).
"""

from __future__ import annotations

import asyncio
import logging
import time

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from venues.pool import GatewayPool

log = logging.getLogger("hedgeflow.worker")
SHARE_REFRESH_S = 10.0
#: a poller not seen for this long is a worker that stopped (a live one renews its long poll about
#: every 60 s; counting a dead one a while longer only lowers the others' share)
POLLER_SEEN_S = 75.0


async def workers_polling(client: Client, task_queue: str) -> int:
    """Distinct worker identities polling ``task_queue``'s activity tasks recently (at least 1: this one)."""
    resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
    now = time.time()
    seen = {p.identity for p in resp.pollers
            if not p.HasField("last_access_time") or now - p.last_access_time.ToSeconds() <= POLLER_SEEN_S}
    return max(len(seen), 1)


def apply_share(pool: GatewayPool, n: int) -> None:
    for name in pool.names:
        pool.get(name).budget.set_workers(n)


async def keep_share(client: Client, task_queue: str, pool: GatewayPool, every_s: float | None = None) -> None:
    """Refresh this worker's share until cancelled."""
    last = 0
    while True:
        try:
            n = await workers_polling(client, task_queue)
            if n != last:
                log.info("venue budgets: %d worker(s) poll %s; this one takes 1/%d of each venue's rate",
                         n, task_queue, n)
                apply_share(pool, n)
                last = n
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the last share stays
            log.warning("venue budgets: could not count the workers (%s); keeping 1/%d", type(exc).__name__, last or 1)
        await asyncio.sleep(every_s or SHARE_REFRESH_S)
