"""What every activity module shares: heartbeating while waiting, and the translation of the
gateway's typed ``VenueError`` into a Temporal ``ApplicationError`` whose ``type`` is the error
class name (non-retryable ones raised ``non_retryable``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from venues.errors import VenueError

T = TypeVar("T")


def app_error(exc: VenueError) -> ApplicationError:
    return ApplicationError(
        f"{exc.type_name} on {exc.venue or '?'}: {exc}",
        type=exc.type_name,
        non_retryable=not exc.retryable,
    )


#: how often a waiting activity beats: well inside the 2 s heartbeat timeout of orders and reads
HEARTBEAT_EVERY_S = 0.25


@contextlib.asynccontextmanager
async def heartbeating(every_s: float = HEARTBEAT_EVERY_S) -> AsyncIterator[None]:
    """Heartbeat while the body waits, so a dead worker is noticed within the heartbeat
    timeout (2 s for orders and reads, ``workflows/options.py``) rather than the start-to-close
    timeout. The worker sends at most one beat per 0.5 s to the server. A no-op outside an activity."""

    async def beat() -> None:
        while True:
            if activity.in_activity() and not activity.info().is_local:  # a local activity has no heartbeat
                activity.heartbeat()
            await asyncio.sleep(every_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def venue_call(aw: Awaitable[T]) -> T:
    """Await one venue operation while heartbeating; VenueError → ApplicationError."""
    try:
        async with heartbeating():
            return await aw
    except VenueError as exc:
        raise app_error(exc) from None
