"""Unhedged exposure of chaos trades, sampled from the venues every 100 ms.

:class:`PositionSampler` reads ``GET /_sim/state?orders_limit=0&income_limit=0`` (positions and
faults; no orders or income) of every venue a watched trade uses, concurrently, every ``period_s``,
for the whole run. Each chaos
trade has its own symbol, so per trade (symbol → trade id, long and short venue, qty step):
unhedged qty = |long venue qty + short venue qty| (signed positions; hedged legs cancel),
notional = that × mark (the positions' ``markPrice``). :class:`Exposure` integrates it (pure,
fed with samples): notional·s (left Riemann: a sample holds until the next one), naked time
(samples with unhedged qty > step/2), and the naked intervals — each with its duration, the
time of it during which both venues had ``outage`` set (``both_down_s``) and the rest
(``uncovered_s``).

Clock: ``/_sim/state`` does not report the venue's clock; the sims run on this host on its
wall clock, so sample times are ``time.monotonic()`` at the middle of each round of reads
(``clock = "monotonic"`` in the summary).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp

from lab import figures


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in 0..1 (lab/figures.py's, which takes 0..100); 0 for no data."""
    return figures.percentile(xs, 100 * q) if xs else 0.0


@dataclass
class NakedInterval:
    start_s: float  # since the sampler started
    duration_s: float = 0.0
    both_down_s: float = 0.0
    uncovered_s: float = 0.0  # naked while at most one venue was down
    both_down: bool = False  # both venues had an outage at some sample of the interval
    max_qty: str = "0"
    max_notional: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Exposure:
    """What one trade left unhedged, integrated over samples (``add`` in time order)."""

    notional_s: float = 0.0
    naked_s: float = 0.0
    samples: int = 0
    intervals: list[NakedInterval] = field(default_factory=list)
    _last: tuple[float, bool, float, bool] | None = None  # t, naked, notional, both down
    _open: NakedInterval | None = None

    def add(self, t: float, unhedged: Decimal, mark: Decimal | float, threshold: Decimal,
            both_down: bool = False) -> None:
        naked = unhedged > threshold
        notional = float(unhedged * Decimal(str(mark))) if unhedged else 0.0
        if self._last is not None:
            t0, was_naked, was_notional, was_down = self._last
            dt = max(0.0, t - t0)
            self.notional_s += was_notional * dt
            if was_naked and self._open is not None:
                self.naked_s += dt
                self._open.duration_s += dt
                if was_down:
                    self._open.both_down_s += dt
                else:
                    self._open.uncovered_s += dt
        if naked:
            if self._open is None:
                self._open = NakedInterval(start_s=t)
                self.intervals.append(self._open)
            self._open.both_down |= both_down
            if unhedged > Decimal(self._open.max_qty):
                self._open.max_qty = str(unhedged)
                self._open.max_notional = notional
        else:
            self._open = None
        self._last = (t, naked, notional, both_down)
        self.samples += 1

    @property
    def max_naked_s(self) -> float:
        return max((iv.duration_s for iv in self.intervals), default=0.0)

    @property
    def p99_naked_s(self) -> float:
        return percentile([iv.duration_s for iv in self.intervals], 0.99)


@dataclass
class Watched:
    trade_id: str
    long_venue: str
    short_venue: str
    threshold: Decimal  # half the larger qty step of the two venues
    exposure: Exposure = field(default_factory=Exposure)


class PositionSampler:
    """Background task: ``start()``, ``watch(symbol, ...)`` before each trade opens, ``stop()``."""

    def __init__(self, urls: dict[str, str], period_s: float = 0.1) -> None:
        self.urls = dict(urls)
        self.period_s = period_s
        self.watched: dict[str, Watched] = {}  # unified symbol → trade
        self._venues: set[str] = set()  # the venues of the watched trades: the only ones read
        self.rounds = 0
        self.errors = 0
        self.t0 = time.monotonic()
        self._pos: dict[str, dict[str, tuple[Decimal, Decimal]]] = {v: {} for v in urls}  # venue → sym → qty, mark
        self._down: dict[str, bool] = {v: False for v in urls}
        self._task: asyncio.Task | None = None
        self._http: aiohttp.ClientSession | None = None
        self._t_last = 0.0

    def watch(self, symbol: str, trade_id: str, long_venue: str, short_venue: str, step: Decimal) -> None:
        self.watched[symbol] = Watched(trade_id, long_venue, short_venue, Decimal(step) / 2)
        self._venues |= {long_venue, short_venue}

    def exposure(self) -> dict[str, Exposure]:
        return {w.trade_id: w.exposure for w in self.watched.values()}

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        self.t0 = time.monotonic()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._http is not None:
            await self._http.close()

    @property
    def period_ms(self) -> float:
        return round(1000 * self._t_last / self.rounds, 1) if self.rounds else 0.0

    async def sample_once(self) -> None:
        venues = [v for v in self.urls if v in self._venues]
        a = time.monotonic()
        got = await asyncio.gather(*(self._read(v) for v in venues), return_exceptions=True)
        b = time.monotonic()
        t = (a + b) / 2 - self.t0
        for v, st in zip(venues, got, strict=True):
            if isinstance(st, BaseException) or not isinstance(st, dict):
                self.errors += 1  # keep the venue's last known positions
                continue
            self._down[v] = bool((st.get("faults") or {}).get("outage"))
            pos = {}
            for p in st.get("positions", []):
                q = Decimal(str(p.get("positionAmt") or 0))
                if q:
                    pos[p["symbol"]] = (q, Decimal(str(p.get("markPrice") or 0)))
            self._pos[v] = pos
        self._t_last = t
        self.rounds += 1
        for sym, w in self.watched.items():
            lq, lm = self._pos.get(w.long_venue, {}).get(sym, (Decimal(0), Decimal(0)))
            sq, sm = self._pos.get(w.short_venue, {}).get(sym, (Decimal(0), Decimal(0)))
            mark = lm or sm
            both_down = self._down.get(w.long_venue, False) and self._down.get(w.short_venue, False)
            w.exposure.add(t, abs(lq + sq), mark, w.threshold, both_down)

    async def _read(self, venue: str) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.get(self.urls[venue] + "/_sim/state",
                                  params={"orders_limit": "0", "income_limit": "0"}) as r:
            return await r.json(content_type=None)

    async def _loop(self) -> None:
        nxt = time.monotonic()
        while True:
            with contextlib.suppress(Exception):
                await self.sample_once()
            nxt += self.period_s
            delay = nxt - time.monotonic()
            if delay < 0:  # fell behind: no burst of catch-up rounds
                nxt = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    def summary(self) -> dict[str, Any]:
        return {"clock": "monotonic", "rounds": self.rounds, "read_errors": self.errors,
                "target_period_ms": round(self.period_s * 1000), "achieved_period_ms": self.period_ms,
                "venues": list(self.urls)}
