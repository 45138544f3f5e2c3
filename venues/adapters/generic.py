"""Every other ccxt id: ccxt's unified calls with ``clientOrderId``; Gate, whose ids are shorter.

The generic adapter verifies one-way mode and reads the margin mode where the ccxt class has
the read (``has['fetchPositionMode']`` / ``has['fetchMarginMode']``) and skips it where it has
none (Gate, Bitget, Paradex, WOO in ccxt 4.5.90), so the pre-trade check does not fail there.
History is read in pages of 100 rows unless the venue is known to allow more or fewer: a page
size at or below the venue's maximum is what makes "a full page: read on" safe.
"""

from __future__ import annotations

from typing import Any, ClassVar

from venues.adapters.base import Adapter

#: rows per history query by ccxt id, where it is not the generic 100
PAGE_SIZES: dict[str, int] = {"bitget": 100, "woo": 100, "paradex": 100, "kucoinfutures": 100, "mexc": 100}


class GenericAdapter(Adapter):
    family = "generic"
    position_mode_read = "fetchPositionMode"

    def __init__(self, exchange_id: str) -> None:
        super().__init__(exchange_id)
        self.page_size = PAGE_SIZES.get(exchange_id, Adapter.page_size)  # type: ignore[misc]

    def position_mode_text(self) -> str:
        return "fetchPositionMode where ccxt has it, else skipped"

    def credentials_text(self) -> str:
        return "apiKey, secret (+ password where the venue has one)"


class GateAdapter(Adapter):
    """Gate USDT perpetuals (``gate``, ``gateio``): ``text`` must be ``t-`` + at most 28
    characters (ccxt adds the ``t-``); hedgeflow's id is cut to its first 28 (deterministic)."""

    family = "gate"
    exchange_ids = ("gate", "gateio")
    cid_max_len = 28
    renames_client_id = True
    cid_format = "first 28 of the id, ccxt adds `t-`"
    cid_field = "text"
    page_size = 100
    contract_sized = True  # quanto_multiplier
    position_mode_read = ""
    funding_interval_source = "contract funding_interval (ccxt interval)"
    environments: ClassVar[dict[str, str]] = {"live": "", "testnet": "sandbox"}

    def venue_client_id(self, cid: str) -> str:
        return cid[: self.cid_max_len]

    def ccxt_options(self) -> dict[str, Any]:
        return {"defaultType": "swap", "defaultSettle": "usdt"}

    def margin_text(self) -> str:
        return "not read (ccxt has no fetchMarginMode): unknown"
