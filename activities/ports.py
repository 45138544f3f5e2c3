"""What activities may ask of *running trades* (start one, read the risk book, close all, the
positions the running trades account for).

Answering needs the workflow definitions (typed start, query and signal), which sit above the
activities. So activities depend on this small port, and the worker injects its one
implementation, ``control.trades`` (the same code the command line uses): the code lives once,
and no import runs upward.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

from config import Settings
from messages.scanner import RiskBookRequest, RiskBookView, StartTradeRequest, StartTradeResult
from messages.trade import TradeStatus


class TradeDirectory(Protocol):
    async def start_for_scanner(self, client: Any, settings: Settings, req: StartTradeRequest) -> StartTradeResult:
        """Start the trade of this opportunity under its deterministic id (or report it exists)."""

    async def read_risk_book(self, client: Any, req: RiskBookRequest, cache: dict[str, TradeStatus],
                             task_queue: str) -> RiskBookView:
        """Open trades and today's outcomes, for the scanner's portfolio gate."""

    async def close_all_trades(self, client: Any, reason: str, task_queue: str, also: Sequence[str] = ()) -> list[str]:
        """Signal a graceful close to every running trade; the ids signalled."""

    async def expected_positions(self, client: Any, task_queue: str, *, started_after_ms: int | None = None) -> tuple[
            dict[tuple[str, str], Decimal], set[tuple[str, str]], set[str]]:
        """(venue, symbol) → signed qty the running holding trades account for; pairs to skip;
        the ids of the running trades."""

    async def trade_running(self, client: Any, trade_id: str) -> bool:
        """Whether the trade's workflow is still running (an unknown answer counts as running)."""
