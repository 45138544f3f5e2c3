"""Per-venue adapters: what differs between venue families (see :mod:`venues.adapters.base`),
chosen by :func:`adapter_for`; :func:`capability_table` renders them for the README."""

from __future__ import annotations

from dataclasses import fields

from venues.adapters.base import Adapter, Capabilities
from venues.adapters.generic import GenericAdapter
from venues.adapters.registry import FAMILIES, adapter_for, adapter_for_exchange

COLUMNS: dict[str, str] = {
    "family": "Family",
    "ccxt_ids": "ccxt ids",
    "client_id": "Client id",
    "lookup": "Look-up by client id",
    "market_orders": "Market orders",
    "position_mode": "Position mode",
    "margin_mode": "Margin mode",
    "page_size": "History page",
    "quantities": "Quantities",
    "funding_interval": "Funding interval",
    "credentials": "Credentials",
    "validity_window": "Validity window (look-up before resend)",
    "environments": "Environments",
}


def all_adapters() -> list[Adapter]:
    """One adapter per family (its first ccxt id), then the generic one."""
    return [cls(cls.exchange_ids[0]) for cls in FAMILIES] + [GenericAdapter("generic")]


def capability_table(adapters: list[Adapter] | None = None) -> str:
    """The capability table (markdown), one row per adapter, produced from the adapters."""
    rows = [a.capabilities() for a in (adapters if adapters is not None else all_adapters())]
    names = [f.name for f in fields(Capabilities)]
    lines = ["| " + " | ".join(COLUMNS[n] for n in names) + " |", "|" + "---|" * len(names)]
    for row in rows:
        cells = [str(getattr(row, n)).replace("|", "\\|") for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["Adapter", "Capabilities", "adapter_for", "adapter_for_exchange", "all_adapters", "capability_table"]
