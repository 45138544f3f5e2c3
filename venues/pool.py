"""One :class:`~venues.gateway.Gateway` (one ccxt instance, one rate limiter) per venue per
process, created lazily from the settings."""

from __future__ import annotations

import asyncio

from config.settings import Settings, VenueConfig
from venues.gateway import Gateway


class GatewayPool:
    def __init__(self, settings: Settings | list[VenueConfig]) -> None:
        venues = settings.venues if isinstance(settings, Settings) else settings
        self._configs: dict[str, VenueConfig] = {v.name: v for v in venues}
        self._gateways: dict[str, Gateway] = {}

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

    def __contains__(self, name: object) -> bool:
        return name in self._configs

    async def close(self) -> None:
        gateways, self._gateways = list(self._gateways.values()), {}
        await asyncio.gather(*(gw.close() for gw in gateways), return_exceptions=True)

    async def __aenter__(self) -> GatewayPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
