"""Which adapter a venue gets: kind ``sim`` by its ``dialect``, kind ``ccxt`` by ``exchange_id``."""

from __future__ import annotations

from config.settings import VenueConfig, VenueKind
from venues.adapters.base import Adapter
from venues.adapters.binance import BinanceAdapter
from venues.adapters.bybit import BybitAdapter
from venues.adapters.generic import GateAdapter, GenericAdapter
from venues.adapters.hyperliquid import HyperliquidAdapter
from venues.adapters.okx import OkxAdapter

#: the venue families with an adapter of their own, in the capability table's order
FAMILIES: tuple[type[Adapter], ...] = (BinanceAdapter, BybitAdapter, OkxAdapter, HyperliquidAdapter, GateAdapter)
BY_EXCHANGE_ID: dict[str, type[Adapter]] = {i: cls for cls in FAMILIES for i in cls.exchange_ids}
#: simulator dialect → adapter (``VenueConfig.dialect``)
BY_DIALECT: dict[str, type[Adapter]] = {cls.family: cls for cls in FAMILIES if cls.sim_class}


def adapter_for_exchange(exchange_id: str) -> Adapter:
    return BY_EXCHANGE_ID.get(exchange_id, GenericAdapter)(exchange_id)


def adapter_for(venue: VenueConfig) -> Adapter:
    """The adapter of ``venue``; a simulator of dialect X is spoken to as ccxt class X."""
    if venue.kind is VenueKind.SIM:
        cls = BY_DIALECT.get(venue.dialect)
        if cls is None or cls.sim_class is None:
            raise ValueError(f"venue {venue.name!r}: no simulator dialect {venue.dialect!r}")
        return cls(cls.sim_class)
    return adapter_for_exchange(venue.exchange_id)
