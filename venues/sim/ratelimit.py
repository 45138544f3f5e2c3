"""Request-weight limiter of the simulated venue: a fixed one-minute window, like Binance's
``X-MBX-USED-WEIGHT-1M``. What each request costs comes from :mod:`venues.sim.endpoints`."""

from __future__ import annotations


class WeightLimiter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.minute = 0
        self.used = 0

    def charge(self, cost: int, now_ms: int) -> bool:
        """Add ``cost`` to the weight of the minute of ``now_ms`` (the venue's clock); False
        once the minute's limit is exceeded."""
        minute = now_ms // 60000
        if minute != self.minute:
            self.minute, self.used = minute, 0
        self.used += cost
        return self.used <= self.limit
