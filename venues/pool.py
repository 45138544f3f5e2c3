"""One :class:`~venues.gateway.Gateway` (one ccxt instance, one rate limiter) per venue per
process, created lazily from the settings, and beside it the venue's
:class:`~venues.shared_reads.SharedReads` (the reads every trade on that venue shares)."""

from __future__ import annotations

import asyncio
import logging

from config.settings import Settings, VenueConfig
from config.tuning import WorkerTuning
from venues.gateway import Gateway
from venues.shared_reads import ReadBounds, SharedReads

log = logging.getLogger("hedgeflow.venues")


class GatewayPool:
    def __init__(self, settings: Settings | list[VenueConfig]) -> None:
        venues = settings.venues if isinstance(settings, Settings) else settings
        self._configs: dict[str, VenueConfig] = {v.name: v for v in venues}
        self._gateways: dict[str, Gateway] = {}
        self._shared: dict[str, SharedReads] = {}
        full = settings if isinstance(settings, Settings) else None
        tuning = full.tuning if full is not None else WorkerTuning()
        #: whether trades share venue reads (``tuning.shared_reads``), and how fresh they must be
        self.shared_reads = tuning.shared_reads
        self.bounds = ReadBounds.from_interval(
            full.trade.monitor_interval_s if full is not None else 10.0, max_age_s=tuning.read_max_age_s,
            gap_s=tuning.positions_read_gap_s, max_hold_s=full.trade.max_hold_s if full is not None else 7 * 86400,
            time_scale=float(full.scanner.time_scale) if full is not None else 1.0)  # a replay's venue clock

    @property
    def names(self) -> list[str]:
        return list(self._configs)

    def get(self, name: str) -> Gateway:
        gw = self._gateways.get(name)
        if gw is None:
            try:
                cfg = self._configs[name]
            except KeyError:
                raise KeyError(
                    f"unknown venue {name!r}; configured: {', '.join(self._configs) or '(none)'}"
                ) from None
            gw = self._gateways[name] = Gateway(cfg)
        return gw

    def shared(self, name: str) -> SharedReads:
        """The reads of venue ``name`` shared by every trade in this process (venues/shared_reads.py)."""
        sr = self._shared.get(name)
        if sr is None:
            sr = self._shared[name] = SharedReads(self.get(name), self.bounds)
        return sr

    def __contains__(self, name: object) -> bool:
        return name in self._configs

    async def warm(self, timeout_s: float = 10.0) -> None:
        """Load every venue's markets once, so that the first trade does not pay for ccxt's
        ``load_markets``. A venue that is down now is only logged: it is retried on first use."""

        async def one(name: str) -> None:
            try:
                await asyncio.wait_for(self.get(name).markets(), timeout_s)
            except Exception as exc:  # noqa: BLE001 - warming is best effort
                log.warning("venue %s: markets not loaded at start-up (%s); will retry on first use",
                            name, type(exc).__name__)

        await asyncio.gather(*(one(n) for n in self.names))

    async def close(self) -> None:
        gateways, self._gateways, self._shared = list(self._gateways.values()), {}, {}
        await asyncio.gather(*(gw.close() for gw in gateways), return_exceptions=True)

    async def __aenter__(self) -> GatewayPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
