"""The gateway's market metadata: loaded once, trusted for :data:`MARKETS_TTL_S`, reloaded
sooner when the venue says it changed (a filter or market-status refusal, a position or symbol
we do not know). Inactive markets are kept (``MarketInfo.active`` False): positions in them
still exist.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from venues import parse
from venues.errors import VenueError
from venues.models import MarketInfo

log = logging.getLogger(__name__)

#: How long loaded markets (filters, steps, status) are trusted before they are reloaded.
MARKETS_TTL_S = 600.0
#: After a failed periodic reload, the old markets are kept and the reload tried again after this.
MARKETS_RETRY_S = 30.0
#: A reload asked for an unknown symbol is skipped when the markets are younger than this.
UNKNOWN_SYMBOL_MIN_AGE_S = 30.0


class MarketCache:
    def __init__(self, call: Callable[..., Awaitable[Any]], precision_mode: Callable[[], int], name: str) -> None:
        self._call = call
        self._precision_mode = precision_mode
        self._name = name
        self._markets: dict[str, MarketInfo] | None = None
        self._loaded_at = float("-inf")  # monotonic time of the last successful load
        self._due_at = float("-inf")  # monotonic time the next periodic reload is due
        self._lock = asyncio.Lock()
        self.generation = 0  # bumped on every successful load

    @property
    def age_s(self) -> float:
        return time.monotonic() - self._loaded_at

    async def get(self) -> dict[str, MarketInfo]:
        markets = self._markets
        if markets is not None and time.monotonic() < self._due_at:
            return markets
        async with self._lock:
            if self._markets is None:
                await self._load(reload=False)
            elif time.monotonic() >= self._due_at:
                try:
                    await self._load(reload=True)
                except VenueError as exc:
                    log.warning("venue %s: reloading markets failed (%s); keeping the loaded ones",
                                self._name, exc.type_name)
                    self._due_at = time.monotonic() + MARKETS_RETRY_S
        assert self._markets is not None
        return self._markets

    async def refresh(self, min_age_s: float = 0.0, *, generation: int | None = None) -> dict[str, MarketInfo]:
        """Reload now; errors propagate. Skipped when the markets are younger than
        ``min_age_s``, or were reloaded since ``generation`` (the :attr:`generation` the caller
        saw when it made the request that showed them stale), or by a concurrent caller."""
        seen = self.generation if generation is None else generation
        async with self._lock:
            if self._markets is None or (self.generation == seen and self.age_s >= min_age_s):
                await self._load(reload=self._markets is not None)
        assert self._markets is not None
        return self._markets

    async def _load(self, *, reload: bool) -> None:
        raw = await self._call("load_markets", reload)
        self._markets = parse.markets(raw, self._precision_mode())
        self._loaded_at = time.monotonic()
        self._due_at = self._loaded_at + MARKETS_TTL_S
        self.generation += 1
