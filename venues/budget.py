"""A venue's request budget (issue 12): one token bucket per venue account in each worker, with
two lanes, and a share of the venue's limit that holds across workers.

* **Orders never wait behind reads.** ccxt computes each request's cost (Binance: its weight) and
  awaits ``exchange.throttle(cost)`` before sending; the gateway points that hook here. A request
  made for an order (placing, cancelling, looking an order up) goes in the *order* lane, every
  other one in the *read* lane, and a waiting order is always served before any waiting read. (The
  ccxt throttle it replaces is one FIFO queue: 200 trades' position reads queued ahead of a close.)
* **The budget holds across workers.** Every worker polling the trade task queue takes
  ``requests_per_second / n`` of each venue, where ``n`` is the number of workers Temporal reports
  polling that queue (``workers.worker`` refreshes it every ``SHARE_REFRESH_S``). With compose's
  two replicas each takes half, instead of each sending the whole limit. Between a worker joining
  and the next refresh the venue may see up to one refresh period of the old share; a worker that
  died is dropped once Temporal stops listing it (about a minute).

The bucket holds at most one second of budget (a burst never exceeds the venue's per-second rate).
A request dearer than that (a weight-30 income read on a worker with a 20/s share) waits for a
full bucket and is charged in full: the bucket runs into debt, which the next requests wait out.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

Lane = Literal["order", "read"]
#: which lane the request being made belongs to (set by the gateway around each call)
LANE: contextvars.ContextVar[Lane] = contextvars.ContextVar("hedgeflow_venue_lane", default="read")
#: ccxt methods that serve an order: placing, cancelling, and looking one up (its outcome decides
#: whether an order is sent again, so it is as urgent as the order itself)
ORDER_METHODS = frozenset({"create_order", "cancel_order", "fetch_order", "fetch_open_orders", "edit_order"})


@contextmanager
def lane(name: Lane) -> Iterator[None]:
    token = LANE.set(name)
    try:
        yield
    finally:
        LANE.reset(token)


class VenueBudget:
    """A token bucket refilled at ``rate × share`` per second, two lanes (orders first)."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate, self.share, self._clock = rate, 1.0, clock
        self._tokens, self._at = self.capacity, clock()
        self._waiting: dict[Lane, deque[tuple[float, asyncio.Future[None]]]] = {"order": deque(), "read": deque()}
        self._pump: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # a waiter arrived or gave up: the pump looks again at once
        self.served: dict[Lane, float] = {"order": 0.0, "read": 0.0}  # cost granted per lane (figures, tests)

    @property
    def effective_rate(self) -> float:
        return self.rate * self.share

    @property
    def capacity(self) -> float:
        return max(self.effective_rate, 1.0)

    def set_workers(self, n: int) -> None:
        """Share the venue's rate with ``n`` workers (``n`` < 1 counts as 1)."""
        self._refill()
        self.share = 1.0 / max(n, 1)
        self._tokens = min(self._tokens, self.capacity)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.effective_rate)
        self._at = now

    def _needed(self, cost: float) -> float:
        """The budget a request waits for: its cost, or a full burst when it costs more (it is then
        charged in full, leaving the budget in debt that later requests wait out)."""
        return min(cost, self.capacity)

    def _grantable(self) -> tuple[float, asyncio.Future[None]] | None:
        for name in ("order", "read"):
            q = self._waiting[name]  # type: ignore[index]
            while q and q[0][1].done():  # a waiter that gave up (cancelled)
                q.popleft()
            if q:
                return q[0]
        return None

    async def acquire(self, cost: float | None = None, which: Lane | None = None) -> None:
        """Wait until ``cost`` (ccxt's, at least 1) may be spent in lane ``which`` (default: ``LANE``)."""
        cost = max(float(cost or 1), 1.0)
        which = which or LANE.get()
        self._refill()
        if self._grantable() is None and self._tokens >= self._needed(cost):
            self._tokens -= cost
            self.served[which] += cost
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[which].append((cost, fut))
        fut.add_done_callback(lambda f: self._wake.set() if f.cancelled() else None)
        self._wake.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._serve(), name="venue-budget")
        await fut
        self.served[which] += cost

    async def _serve(self) -> None:
        while (head := self._grantable()) is not None:
            cost, fut = head
            self._refill()
            if self._tokens < self._needed(cost):
                self._wake.clear()
                try:  # until there is enough, or a waiter arrives or gives up (an order goes first)
                    await asyncio.wait_for(self._wake.wait(), (self._needed(cost) - self._tokens) / self.effective_rate)
                except TimeoutError:
                    pass
                continue
            self._tokens -= cost
            for q in self._waiting.values():
                if q and q[0][1] is fut:
                    q.popleft()
            fut.set_result(None)
