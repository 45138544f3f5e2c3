"""Injected faults of the simulated venue (set through ``POST /_sim/faults``).

``outage``, ``latency_ms`` and ``error_rate`` act on every non-admin request (see
:mod:`venues.sim.server`); ``reject_orders``, ``partial_fill_ratio`` and ``drop_responses``
act on new orders of every type (see :mod:`venues.sim.api_orders`); ``partial_fill_ratio``
only on fills that take liquidity (a resting order's maker fills follow the book). During an
``outage`` resting orders keep matching (the API is down, the matching engine is not); a
``symbol_status`` other than TRADING stops their matching.

``execute_late_ms`` answers new orders as accepted (NEW, nothing executed) and matches them that
much later; combined with ``drop_responses`` the order stays invisible until then and is
discarded if its ``timestamp + recvWindow`` has passed by then. ``lookup_errors`` answers the
next n order look-ups (order, openOrder, openOrders, allOrders) with HTTP 500 / -1001.
``clock_skew_ms`` moves the venue's whole clock (:meth:`venues.sim.venue.Sim.now_ms` = wall +
skew): serverTime, the signed-request timestamp check (a client that does not re-sync gets
-1021), the times of orders, trades, income, positions, marks and the funding schedule; a jump
ahead settles every funding boundary it passes (see ``Sim._funding_tick``), a jump back settles
nothing until the clock passes the last settlement again. Only a request's ``arrived_ns`` stays
wall time. ``symbol_status`` maps unified symbols to a Binance contract status (exchangeInfo
shows it; new orders are refused unless TRADING, see
:func:`venues.sim.api_orders.check_symbol_status`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

FAULT_TYPES = {
    "outage": bool,
    "latency_ms": int,
    "error_rate": float,
    "reject_orders": int,
    "partial_fill_ratio": float,
    "drop_responses": int,
    "execute_late_ms": int,
    "lookup_errors": int,
    "symbol_status": dict,
    "clock_skew_ms": int,
}

# contract statuses of Binance USD-M exchangeInfo (BREAK as on spot)
SYMBOL_STATUSES = ("TRADING", "PENDING_TRADING", "PRE_DELIVERING", "DELIVERING", "DELIVERED", "PRE_SETTLE",
                   "SETTLING", "CLOSE", "BREAK")


@dataclass
class Faults:
    outage: bool = False
    latency_ms: int = 0
    error_rate: float = 0.0
    reject_orders: int = 0
    partial_fill_ratio: float | None = None
    drop_responses: int = 0
    execute_late_ms: int = 0
    lookup_errors: int = 0
    symbol_status: dict = field(default_factory=dict)  # unified symbol -> status
    clock_skew_ms: int = 0  # the venue's clock runs this far ahead of ours (negative: behind)

    def as_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v := getattr(self, k), dict) else v) for k in FAULT_TYPES}

    def status(self, unified: str) -> str:
        return self.symbol_status.get(unified, "TRADING")

    def update(self, body: object, resolve: Callable[[str], str | None] | None = None) -> None:
        """Apply a partial update (all fields validated first); an empty object resets all.
        ``resolve`` maps a symbol key of ``symbol_status`` to its unified name (None: unknown);
        a ``symbol_status`` object replaces the previous mapping."""
        if not isinstance(body, dict):
            raise ValueError("body: expected a JSON object")
        new = {}
        for k, v in body.items():
            if k not in FAULT_TYPES:
                raise ValueError(f"{k}: unknown fault")
            t = FAULT_TYPES[k]
            if t is dict:
                v = _statuses(k, v, resolve)
            elif t is bool:
                if not isinstance(v, bool):
                    raise ValueError(f"{k}: expected true/false")
            elif k == "clock_skew_ms":
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ValueError(f"{k}: expected an integer (ms, negative: the venue is behind)")
            elif t is int:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"{k}: expected a non-negative integer")
            else:
                if k == "partial_fill_ratio" and v is None:
                    pass
                elif isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                    raise ValueError(f"{k}: expected a number between 0 and 1")
                else:
                    v = float(v)
            new[k] = v
        if not body:
            self.__dict__.update(Faults().__dict__)
        else:
            self.__dict__.update(new)


def _statuses(k: str, v: object, resolve: Callable[[str], str | None] | None) -> dict:
    if not isinstance(v, dict):
        raise ValueError(f"{k}: expected an object of symbol -> status")
    out = {}
    for sym, st in v.items():
        unified = resolve(sym) if resolve else sym
        if unified is None:
            raise ValueError(f"{k}: unknown symbol {sym!r}")
        if not isinstance(st, str) or st.upper() not in SYMBOL_STATUSES:
            raise ValueError(f"{k}: status of {sym} must be one of {', '.join(SYMBOL_STATUSES)}")
        out[unified] = st.upper()
    return out
