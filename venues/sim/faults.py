"""Injected faults of the simulated venue (set through ``POST /_sim/faults``).

``outage``, ``latency_ms`` and ``error_rate`` act on every non-admin request (see
:mod:`venues.sim.server`); ``reject_orders``, ``partial_fill_ratio`` and ``drop_responses``
act on new orders (see :mod:`venues.sim.api_orders`).
"""

from __future__ import annotations

from dataclasses import dataclass

FAULT_TYPES = {
    "outage": bool,
    "latency_ms": int,
    "error_rate": float,
    "reject_orders": int,
    "partial_fill_ratio": float,
    "drop_responses": int,
}


@dataclass
class Faults:
    outage: bool = False
    latency_ms: int = 0
    error_rate: float = 0.0
    reject_orders: int = 0
    partial_fill_ratio: float | None = None
    drop_responses: int = 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in FAULT_TYPES}

    def update(self, body: object) -> None:
        """Apply a partial update (all fields validated first); an empty object resets all."""
        if not isinstance(body, dict):
            raise ValueError("body: expected a JSON object")
        new = {}
        for k, v in body.items():
            if k not in FAULT_TYPES:
                raise ValueError(f"{k}: unknown fault")
            t = FAULT_TYPES[k]
            if t is bool:
                if not isinstance(v, bool):
                    raise ValueError(f"{k}: expected true/false")
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
