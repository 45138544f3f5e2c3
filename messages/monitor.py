"""Payloads of a holding trade's monitor tick (``monitor-v1``): one activity reads both venues'
position and market snapshot (``activities/monitor.py``) and answers each venue separately, so
one venue's failure never hides the other's answer (the monitor judges each leg from what its
own venue said, ``workflows/monitor.py``)."""

from __future__ import annotations

from pydantic import BaseModel

from messages.trade import MarketSnapshot
from venues.models import Position


class MonitorReadRequest(BaseModel):
    symbol: str
    venues: list[str]  # the long venue, then the short one
    #: monitor-v2: when the tick's interval wait began (epoch ms, workflow time). Every order of the
    #: trade was answered before it, so a shared positions read begun after it (and at most
    #: ``activities.monitor.POSITIONS_MAX_AGE_S`` before the tick asked) shows them: the tick is
    #: served without waiting for the next read. None: a read begun after the tick asked.
    positions_since_ms: int | None = None


class VenueRead(BaseModel):
    """One venue's answer: its position in the symbol (None: flat) and its snapshot, or the
    error that kept either from being read (then neither counts: the leg is unjudged)."""

    venue: str
    position: Position | None = None
    snapshot: MarketSnapshot | None = None
    error_type: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None and self.snapshot is not None


class MonitorReadAnswer(BaseModel):
    reads: list[VenueRead]  # in the request's venue order
