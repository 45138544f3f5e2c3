"""``monitor_read`` (``monitor-v1``): a holding trade's tick in one activity. Both venues'
position and snapshot are read in parallel (through the shared reads when on:
``venues/shared_reads.py``), and each venue's answer or error is reported on its own.

Before, a tick was four activities (positions and snapshot on each venue): at 1,000 trades and
a 10 s interval, 400 activity tasks a second through the server and the SDK, on a worker whose
venue I/O was already shared and cheap. A retryable venue error is tried again here, briefly
(``RETRIES``, as the four activities' retry policy did), before it is reported."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from messages.monitor import MonitorReadAnswer, MonitorReadRequest, VenueRead
from messages.trade import MarketSnapshot
from venues.errors import VenueError
from venues.models import FundingInfo, Position

if TYPE_CHECKING:
    from venues.pool import GatewayPool
    from venues.shared_reads import SharedReads

T = TypeVar("T")
#: pauses before the second and third try of a read that failed with a retryable venue error
RETRIES = (0.2, 0.4)
#: the per-trade snapshot's age bound when reads are not shared (as ``market_snapshot``'s)
SNAPSHOT_MAX_AGE_S = 1.0
#: monitor-v2: a shared positions read serves a tick when it began after the tick's wait began
#: and at most this long before the tick asked (seconds). The tick then rarely waits for the next
#: read, and a local activity that waits holds one of the worker's workflow task slots: at 1,000
#: trades, waiting up to the 0.25 s read gap on every tick needed more slots than the worker has.
POSITIONS_MAX_AGE_S = 1.0


async def _retried(read: Callable[[], Awaitable[T]]) -> T:
    for pause in RETRIES:
        try:
            return await read()
        except VenueError as exc:
            if not exc.retryable:
                raise
        await asyncio.sleep(pause)
    return await read()


def positions_began_after(shared: SharedReads, since_ms: int | None) -> float | None:
    """The shared read's clock time after which a positions read serves a tick whose wait began at
    ``since_ms`` (epoch ms): the later of that and :data:`POSITIONS_MAX_AGE_S` ago; None (a read
    begun from now on) without ``since_ms``."""
    if since_ms is None:
        return None
    now = shared.position_reads.now()
    return max(now - (time.time() * 1000 - since_ms) / 1000, now - POSITIONS_MAX_AGE_S)


async def read_venue(pool: GatewayPool, venue: str, symbol: str, since_ms: int | None = None) -> VenueRead:
    """One venue's position and snapshot (both in parallel), or the first error of either."""
    shared = pool.shared(venue) if pool.shared_reads else None
    gw = None if shared else pool.get(venue)

    async def positions() -> list[Position]:
        if shared:
            return await shared.positions([symbol], began_after=positions_began_after(shared, since_ms))
        return await gw.positions([symbol])  # type: ignore[union-attr]

    async def rates() -> Mapping[str, FundingInfo]:
        return await (shared.funding_rates(symbol) if shared else gw.funding_rates(max_age_s=SNAPSHOT_MAX_AGE_S))  # type: ignore[union-attr]

    got = await asyncio.gather(_retried(positions), _retried(rates), return_exceptions=True)
    for r in got:
        if isinstance(r, VenueError):
            return VenueRead(venue=venue, error_type=r.type_name, error=f"{r.type_name} on {venue}: {r}")
        if isinstance(r, BaseException):
            raise r
    pos, fund = got
    fi = fund.get(symbol)
    if fi is None:
        return VenueRead(venue=venue, error_type="BadSymbol", error=f"no funding rate for {symbol} on {venue}")
    held = next((x for x in pos if x.symbol == symbol and x.qty != 0), None)
    return VenueRead(venue=venue, position=held, snapshot=MarketSnapshot(venue=venue, symbol=symbol, funding=fi))


async def monitor_read(pool: GatewayPool, req: MonitorReadRequest) -> MonitorReadAnswer:
    """Both venues at once; an error that is not the venue's (a bug, an unknown venue) fails the
    activity, which the workflow then counts as both venues unread."""
    return MonitorReadAnswer(reads=list(await asyncio.gather(
        *(read_venue(pool, v, req.symbol, req.positions_since_ms) for v in req.venues))))
