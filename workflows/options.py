"""Activity options of the trade workflow, in one place: how long each kind of call may take and
how it is retried. Orders are bounded (a stale open order is worse than none); reads retry a
few times and let the workflow decide what a failed read means; alerts and ledger writes have
their own budgets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

from venues.errors import NON_RETRYABLE_TYPE_NAMES

# A trade's workflow task timeout (the default is 10 s): a task started on a worker that is then
# killed is handed to another worker after this long, and a lone leg may be waiting on it. A run
# replays in well under it: continue-as-new keeps a run near ``history_limit`` (1,000 events,
# about 0.4 s to replay here).
TRADE_TASK_TIMEOUT = timedelta(seconds=2)

# Order placement. The gateway may spend up to ~17 s resolving an unknown outcome
# (timeout + look-ups), hence the start-to-close bound.
# The heartbeat timeout bounds how long an order in flight on a worker that died stays unseen
# before another worker retries it (looking the id up first): 2 s. The activity beats every
# 0.25 s and the worker sends one beat per 0.25 s (``HEARTBEAT_SEND_S`` in workers/worker.py),
# leaving 1.75 s for a slow server. (1 s, with the SDK's default send interval of 0.8 × the
# timeout, left 0.2 s: on a loaded machine live reads timed out as "dead" five times in a row.)
# A lone leg waits on exactly this when the worker holding the other leg's order is killed.
HEARTBEAT_TIMEOUT = timedelta(seconds=2)
# An order that no worker has picked up after this long (every worker busy or gone) fails instead
# of executing late into a market that has moved: an opening counts as failed (its other leg is
# flattened), a close goes round its loop again (issue 12). Reads and orders share the workers'
# slots, but never the venue budget's line: orders go before reads there (venues/budget.py).
ORDER_START_BOUND = timedelta(seconds=10)
ORDER_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=30),
    schedule_to_start_timeout=ORDER_START_BOUND,
    schedule_to_close_timeout=timedelta(seconds=120),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    retry_policy=RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=5),
        non_retryable_error_types=NON_RETRYABLE_TYPE_NAMES,
    ),
)
# Opening orders: a shorter bound, so that a venue that stays down leaves the other leg
# unhedged for at most this long before it is flattened.
OPEN_ORDER_OPTS: dict[str, Any] = ORDER_OPTS | dict(schedule_to_close_timeout=timedelta(seconds=45))
# Both opening legs from one activity (lifecycle-v6): from the first fill on, the trade is naked
# until the other leg fills or the lone one is flattened, and a worker killed in between is
# noticed only through this heartbeat; so here it is 0.9 s (0.65 s above the 0.25 s send
# interval; 1.25 s left a kill between a fill and its flatten 2.1-2.5 s naked in the 100-trade
# chaos run) and the retry follows at once. A false "dead" on a stalled worker costs a retry
# that looks both ids up first, never a second order.
NAKED_STEP_HEARTBEAT = timedelta(milliseconds=900)


def _retry_at_once(maximum_interval_s: float, maximum_attempts: int = 0) -> RetryPolicy:
    return RetryPolicy(initial_interval=timedelta(milliseconds=50), backoff_coefficient=2.0,
                       maximum_interval=timedelta(seconds=maximum_interval_s), maximum_attempts=maximum_attempts,
                       non_retryable_error_types=NON_RETRYABLE_TYPE_NAMES)


OPEN_PAIR_OPTS: dict[str, Any] = OPEN_ORDER_OPTS | dict(
    heartbeat_timeout=NAKED_STEP_HEARTBEAT, retry_policy=_retry_at_once(5))
# lifecycle-v7: a hedged pair's close round, leader and follower in one activity (activities/
# close_step.py): between the two fills the pair is unequal, so a dead worker is noticed as fast
# as in the opening pair's; a retry looks both ids up once and sends neither twice
STEP_CLOSE_OPTS: dict[str, Any] = ORDER_OPTS | dict(
    heartbeat_timeout=NAKED_STEP_HEARTBEAT, schedule_to_close_timeout=timedelta(seconds=30),
    retry_policy=_retry_at_once(2, maximum_attempts=3))
# Top-ups of a partly filled opening: short, so a venue that stays down leaves the gap open
# only briefly before the longer leg is trimmed instead.
TOPUP_ORDER_OPTS: dict[str, Any] = ORDER_OPTS | dict(schedule_to_close_timeout=timedelta(seconds=5))
#: a whole-position reduce-only close (v4): one attempt; the close loop reads and resends under a fresh id
FRESH_CLOSE_OPTS: dict[str, Any] = ORDER_OPTS | dict(retry_policy=RetryPolicy(maximum_attempts=1))
# Reads: a few quick retries; the workflow decides what a failed read means. A close reads
# between its orders, so a read on a dead worker is noticed as fast as an order.
READ_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=15),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    retry_policy=RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=3),
        maximum_attempts=5,
        non_retryable_error_types=NON_RETRYABLE_TYPE_NAMES,
    ),
)
# monitor-v2: a holding trade's tick read as a local activity (run by the worker inside the
# workflow task: no activity task through the server, no second workflow task for its result).
# No heartbeat (a local activity has none): a worker killed mid-read fails the workflow task after
# its 2 s timeout and the next worker reads again. The same retries as READ_OPTS, in the worker.
LOCAL_READ_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=READ_OPTS["start_to_close_timeout"], retry_policy=READ_OPTS["retry_policy"])
# A probe: one attempt of at most 2 s (a close deciding its sequence must not wait on a slow venue).
QUICK_READ_OPTS: dict[str, Any] = dict(start_to_close_timeout=timedelta(seconds=2),
                                       retry_policy=RetryPolicy(maximum_attempts=1))
ALERT_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=20),
)
# Ledger writes. The "opened" record gets a few attempts, then an event (it must not hold the
# hold phase back, and the final record rewrites everything). The final record (closed,
# aborted) is retried until it lands: the venues are already flat, and nothing may be lost.
LEDGER_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10),
                             maximum_attempts=3),
)
LEDGER_FINAL_OPTS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60)),
)


def maker_unit_opts(window_s: float) -> dict:
    """A maker unit is naked between a maker fill and its hedge, as the opening pair is between its
    two fills: a dead worker is noticed through the same short heartbeat, and the retry (which
    looks every id up first and sends none twice) follows at once."""
    return dict(start_to_close_timeout=timedelta(seconds=window_s + 30),
                schedule_to_close_timeout=timedelta(seconds=window_s + 120),
                heartbeat_timeout=NAKED_STEP_HEARTBEAT,
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), backoff_coefficient=2.0,
                                         maximum_interval=timedelta(seconds=2),
                                         non_retryable_error_types=NON_RETRYABLE_TYPE_NAMES))
