"""The trade lifecycle as data: states, the legal steps between them, and why a trade ends.

Modelled on nautilus_trader's order state table. The workflow changes state only through
:func:`check_transition`; metrics, the ledger and the lab import ``TERMINAL`` from here
instead of retyping it.

    opening ──► verifying ──► hedge_check ──► holding ──► closing ──────────► closed
       │            │              │             │           │                  ▲
       │            └──────────────┴─────────────┴───► emergency_closing ──────┤
       └──────────────────────────────────────────────────────────┴──► aborted

A refusal before any order (pre-trade gate, sizing) goes straight from ``opening`` to
``aborted``. A leg that failed or a hedge gap too large goes through ``emergency_closing``
(flatten whatever filled) and ends ``aborted``. Every other close ends ``closed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TradeState(StrEnum):
    OPENING = "opening"
    VERIFYING = "verifying"
    HEDGE_CHECK = "hedge_check"
    HOLDING = "holding"
    CLOSING = "closing"
    EMERGENCY_CLOSING = "emergency_closing"
    CLOSED = "closed"
    ABORTED = "aborted"


S = TradeState

TRANSITIONS: frozenset[tuple[TradeState, TradeState]] = frozenset(
    {
        (S.OPENING, S.VERIFYING),
        (S.OPENING, S.ABORTED),  # refused before any order
        (S.OPENING, S.CLOSING),  # cancelled while opening
        (S.OPENING, S.EMERGENCY_CLOSING),  # unexpected error while opening
        (S.VERIFYING, S.HEDGE_CHECK),
        (S.VERIFYING, S.CLOSING),
        (S.VERIFYING, S.EMERGENCY_CLOSING),  # a leg failed: flatten the other
        (S.HEDGE_CHECK, S.HOLDING),
        (S.HEDGE_CHECK, S.CLOSING),
        (S.HEDGE_CHECK, S.EMERGENCY_CLOSING),  # gap too large
        (S.HOLDING, S.CLOSING),
        (S.HOLDING, S.EMERGENCY_CLOSING),
        (S.CLOSING, S.EMERGENCY_CLOSING),  # an unexpected error while closing escalates
        (S.CLOSING, S.CLOSED),
        (S.EMERGENCY_CLOSING, S.CLOSED),
        (S.EMERGENCY_CLOSING, S.ABORTED),  # the opening failed and was flattened
    }
)

TERMINAL: frozenset[TradeState] = frozenset({S.CLOSED, S.ABORTED})
CLOSING_STATES: frozenset[TradeState] = frozenset({S.CLOSING, S.EMERGENCY_CLOSING})


class IllegalTransition(ValueError):
    """A state change that is not in :data:`TRANSITIONS`."""


def check_transition(current: str, new: str) -> TradeState:
    """Return ``new`` as a :class:`TradeState` if ``current → new`` is a legal step (staying in
    the same state is always legal); raise :class:`IllegalTransition` otherwise."""
    cur, nxt = TradeState(current), TradeState(new)
    if cur == nxt or (cur, nxt) in TRANSITIONS:
        return nxt
    raise IllegalTransition(f"trade state {cur.value} → {nxt.value} is not a legal step")


class ExitReason(StrEnum):
    """Why a trade leaves the open or hold phase. The value is the coded prefix written to the
    trade's ``close_reason`` / ``abort_reason`` (ledger, status, alerts)."""

    # opening
    REFUSED = "REFUSED"  # pre-trade gate; the detail carries the gate's own code
    LEG_FAILED = "LEG_FAILED"
    HEDGE_GAP = "HEDGE_GAP"
    # hold
    SIGNAL_CLOSE = "signal"
    SIGNAL_EMERGENCY = "signal!"
    MAX_HOLD = "MAX_HOLD"
    SPREAD_EXIT = "SPREAD_EXIT"
    LEG_CHANGED = "LEG_CHANGED"
    HEDGE_DRIFT = "HEDGE_DRIFT"
    LIQUIDATION_RISK = "LIQUIDATION_RISK"
    # anywhere
    CANCELLED = "cancelled"
    ERROR = "error"
    RESUMED = "resumed"


@dataclass(frozen=True)
class Exit:
    """The verdict of a phase: leave it, why, and whether the close is an emergency."""

    reason: ExitReason
    emergency: bool = False
    detail: str = ""

    @property
    def text(self) -> str:
        """The reason as the trade records it (kept identical to earlier versions, so the
        ledger and saved histories read the same)."""
        r = self.reason
        if r in (ExitReason.SIGNAL_CLOSE, ExitReason.SIGNAL_EMERGENCY):
            return f"signal: {self.detail}"
        if r is ExitReason.ERROR:
            return f"error: {self.detail}"
        if r is ExitReason.SPREAD_EXIT:
            return f"SPREAD_EXIT ({self.detail})"
        if r is ExitReason.LEG_FAILED:
            return f"LEG_FAILED {self.detail}"
        return r.value
