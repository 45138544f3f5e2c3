"""Venue reads shared by every trade on one venue account, in one worker process (issue 12).

A holding trade looks at both of its venues every ``monitor_interval_s``: positions, marks and
funding rates, and after each settlement its funding income. Read one call per trade, 1,000
trades cost 1,000 position reads (Binance weight 5 each) per interval on every venue; here every
trade on a venue account shares the reads of that account, and each read serves every caller
its rule allows (:class:`Coalesced`):

* **positions** (:meth:`SharedReads.positions`): one ``fetch_positions`` of *all* symbols per
  batch. A caller is served only by a read that *began after it asked* (read-your-writes: a
  trade reading its legs right after its own order never sees the position from before the
  fill, whichever worker placed the order); callers that arrive while a read is on the wire
  wait for the next one, which begins when that one is answered and at least ``gap_s`` after
  it began. So a venue sees at most one position read per ``gap_s`` however many trades hold.
* **marks and funding rates** (:meth:`SharedReads.funding_rates`): one bulk read; an answer at
  most ``max_age_s`` old is served to every caller, an older one triggers a new read.
* **funding income** (:meth:`SharedReads.funding_income`): the income rows of *all* symbols,
  kept per venue and read on incrementally (from the last read, with an overlap for rows the
  venue posts late). An answer is served when its read began after the symbol's latest
  settlement (from the shared funding rates) and is at most ``income_max_age_s`` old: one
  read per venue per settlement window, fanned out to every trade.

A failed read fails every caller waiting on it; nothing is ever served beyond its bound (the
activity also checks what it was handed: :func:`check_fresh`, ``StaleRead``). The answers are
exactly what each trade's own read gave: its symbols' positions, the venue's funding map, its
symbol's payments since its ``since_ms``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from domain.venue_time import MONITOR_FLOOR_S, wall_seconds
from venues import parse
from venues.errors import VenueError
from venues.gateway import Gateway
from venues.models import FundingInfo, FundingPayment, Position
from venues.parse import D

T = TypeVar("T")

#: an incremental income read starts this long before the previous one began (rows posted late)
INCOME_OVERLAP_MS = 10 * 60 * 1000
#: marks and funding rates served to every trade at most this old by default (seconds)
MARKS_MAX_AGE_S = 1.0
#: a settlement's income rows are trusted in a read begun this long after it (or begun after the
#: caller asked, if that is sooner)
SETTLE_LAG_MS = 1000


class StaleRead(VenueError):
    """A shared answer older than the caller's bound: a failed read (retryable), never data."""

    retryable = True


@dataclass(frozen=True)
class Read(Generic[T]):
    """One answer of the venue: when its request began and when the answer arrived (the
    :class:`Coalesced` clock's seconds)."""

    value: T
    began: float
    done: float


def check_fresh(read: Read[T], max_age_s: float, now: float, what: str, venue: str) -> T:
    """``read``'s value, or :class:`StaleRead` when its answer is more than ``max_age_s`` old."""
    age = now - read.done
    if age > max_age_s:
        raise StaleRead(f"{venue}: shared {what} answer is {age:.2f} s old (bound {max_age_s:g} s)", venue=venue)
    return read.value


class _Flight(Generic[T]):
    """One read: its task, and when its request began (None: not yet, still joinable by anyone)."""

    __slots__ = ("began", "task")

    def __init__(self) -> None:
        self.began: float | None = None
        self.task: asyncio.Task[Read[T]]


class Coalesced(Generic[T]):
    """Single-flight reads of one thing (``fetch``), shared by concurrent callers.

    :meth:`get` returns a :class:`Read` that satisfies the caller's rule, from the last answer,
    a read in flight, or a new read: ``began_after`` (the read must have begun at or after that
    time: read-your-writes) and ``max_age_s`` (the last answer is served while at most that old).
    At most one read is on the wire and at most one waits behind it; the next begins when the one
    on the wire is answered and not before ``gap_s`` after it began. A read that fails fails
    every caller waiting on it; the last answer is kept but only ever served within its rule."""

    def __init__(self, fetch: Callable[[], Awaitable[T]], *, gap_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.gap_s = gap_s
        self._clock = clock
        self._last: Read[T] | None = None
        self._flights: list[_Flight[T]] = []
        self._last_began = float("-inf")
        #: requests sent to the venue (for tests and metrics)
        self.reads = 0

    def now(self) -> float:
        return self._clock()

    def forget(self) -> None:
        """Serve no caller from the last answer (a read in flight still serves its rule)."""
        self._last = None

    async def get(self, *, began_after: float | None = None, max_age_s: float | None = None) -> Read[T]:
        last = self._last
        if last is not None and (began_after is None or last.began >= began_after) and (
                max_age_s is None or self._clock() - last.done <= max_age_s):
            return last
        self._flights = live = [f for f in self._flights if not f.task.done()]
        for f in live:  # a read not begun yet, or begun late enough
            if f.began is None or began_after is None or f.began >= began_after:
                return await asyncio.shield(f.task)
        f: _Flight[T] = _Flight()
        f.task = asyncio.ensure_future(self._run(f, live[-1].task if live else None))
        f.task.add_done_callback(_retrieve)
        live.append(f)
        return await asyncio.shield(f.task)

    async def _run(self, f: _Flight[T], after: asyncio.Future[Read[T]] | None) -> Read[T]:
        if after is not None:
            await asyncio.wait({after})  # its outcome is its own callers'
        wait = self._last_began + self.gap_s - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        f.began = self._last_began = self._clock()
        self.reads += 1
        value = await self._fetch()
        read = Read(value, f.began, self._clock())
        if self._last is None or read.began >= self._last.began:
            self._last = read
        return read


def _retrieve(task: asyncio.Task) -> None:
    """A read whose callers all went away: its error is theirs, not the event loop's log."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class ReadBounds:
    """How fresh a shared read must be (seconds); see the module doc for each rule."""

    #: marks and funding rates: an answer at most this old is served
    max_age_s: float
    #: positions: reads of one venue begin at most this often
    gap_s: float
    #: funding income: an answer (begun after the settlement) at most this old is served
    income_max_age_s: float
    #: income rows older than this are dropped (a request reaching further is read on its own)
    income_retention_s: float
    #: venue seconds per wall second (``scanner.time_scale``: a replay at speed X runs the venue's
    #: settlements X times faster than the funding interval it reports)
    time_scale: float = 1.0

    @classmethod
    def from_interval(cls, monitor_interval_s: float, *, max_age_s: float | None = None,
                      gap_s: float | None = None, max_hold_s: float = 7 * 24 * 3600,
                      time_scale: float = 1.0) -> ReadBounds:
        """The defaults, on the wall clock: ``monitor_interval_s`` (venue seconds, as configured) is
        the trade's wall interval at replay speed ``time_scale`` (``max(venue s / X, 0.5 s)``, as
        ``domain.venue_time`` converts it for the workflow); marks ≤ interval / 5 old and never over
        1 s (the snapshot age of the unshared read; in a replay a wall second is hours of venue time,
        and 2 s-old rates moved a spread exit past a settlement: ``tests/test_replay_venue_time.py``),
        one position read per interval / 40 per venue, income ≤ one interval old, income rows kept
        for the longest hold (wall) plus a day."""
        interval = wall_seconds(monitor_interval_s, time_scale, MONITOR_FLOOR_S)
        age = max_age_s if max_age_s is not None else min(interval / 5, MARKS_MAX_AGE_S)
        return cls(max_age_s=age, gap_s=gap_s if gap_s is not None else interval / 40,
                   income_max_age_s=max(interval, age),
                   income_retention_s=wall_seconds(max_hold_s, time_scale) + 86_400, time_scale=float(time_scale))


class _RawPositions:
    """One Binance-dialect position read, parsed per caller: ccxt's ``fetch_positions`` parses every
    open position of the account on every read (about 0.1 ms each: 100 ms and more for 1,000
    holding trades, several times a second); here a caller's rows are parsed when it asks, with
    the same code (ccxt's ``parse_position_risk`` of the rows ccxt keeps, then
    :func:`venues.parse.positions`), once per symbol per read."""

    def __init__(self, exchange: Any, raw: Any) -> None:
        self.exchange = exchange
        self.by_id: dict[str, list[dict]] = {}
        for r in raw if isinstance(raw, list) else []:
            self.by_id.setdefault(str(r.get("symbol")), []).append(r)
        self._parsed: dict[str, list[Position]] = {}

    def _rows(self, market_id: str) -> list[dict]:
        # as ccxt's fetchPositionsRisk: rows with an entry price only
        return [self.exchange.parse_position_risk(r) for r in self.by_id.get(market_id, [])
                if D(r.get("entryPrice")) is not None and D(r.get("entryPrice")) > 0]

    def of(self, symbols: list[str] | None, markets: dict[str, Any]) -> list[Position]:
        if symbols is None:  # every open position, as the gateway's read of all symbols
            rows = [p for mid in self.by_id for p in self._rows(mid)]
            return parse.positions(rows, markets, None, binance_dialect=True)
        out: list[Position] = []
        for s in symbols:
            got = self._parsed.get(s)
            if got is None:
                mid = self.exchange.market(s)["id"]
                got = self._parsed[s] = parse.positions(self._rows(mid), markets, [s], binance_dialect=True)
            out += got
        return out


def last_settlement_ms(info: FundingInfo, now_ms: int, time_scale: float = 1.0) -> int:
    """The latest settlement of ``info``'s symbol at or before ``now_ms`` (venue ms). The venue
    reports its interval in venue hours; at replay speed ``time_scale`` X its settlements come X
    times as often on the clock its times are on."""
    interval = int(info.interval_hours * 3_600_000 / Decimal(str(time_scale))) or 3_600_000
    nxt = info.next_funding_ms
    if now_ms >= nxt:
        return nxt + (now_ms - nxt) // interval * interval
    return nxt - interval


class SharedReads:
    """The shared reads of one venue account (one :class:`~venues.gateway.Gateway`)."""

    def __init__(self, gw: Gateway, bounds: ReadBounds, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.gw = gw
        self.bounds = bounds
        self._clock = clock
        #: Binance dialect: the raw rows, each caller's parsed on demand (:class:`_RawPositions`)
        self.lazy_positions = bool(getattr(getattr(gw, "adapter", None), "binance_fields", False))
        self.position_reads: Coalesced[list[Position] | _RawPositions] = Coalesced(
            self._read_positions, gap_s=bounds.gap_s, clock=clock)
        self.rate_reads: Coalesced[Mapping[str, FundingInfo]] = Coalesced(gw.funding_rates, clock=clock)
        # income: on the venue's clock (settlements are venue times), in seconds
        self.income_reads: Coalesced[None] = Coalesced(self._read_income, clock=self._venue_s)
        self._income: dict[str, FundingPayment] = {}
        self._income_from: int | None = None  # rows are complete from here (venue ms) ...
        self._income_want: int | None = None  # ... and the next read must reach back to here
        self._income_to: int | None = None  # venue ms at which the last read began
        #: symbol → (the settlement before, the latest ``next_funding_ms`` the rates have shown): when
        #: the venue announces a later one, the one it announced before has settled
        self._settles: dict[str, tuple[int | None, int]] = {}

    def _venue_s(self) -> float:
        return self.gw.clock.history_now_ms() / 1000

    async def positions(self, symbols: list[str] | None, *, began_after: float | None = None) -> list[Position]:
        """Open positions in ``symbols`` (all when None), from a read begun after this call, or
        after ``began_after`` (this clock's seconds) where the caller says an earlier read is enough
        (a monitor tick: its trade placed no order since then)."""
        asked = self._clock() if began_after is None else began_after
        read = await self.position_reads.get(began_after=asked)
        if read.began < asked:  # never: the rule of the read; checked as each trade's bound
            raise StaleRead(f"{self.gw.name}: shared positions read began before it was asked for", venue=self.gw.name)
        if symbols is not None:
            for s in symbols:  # an unknown symbol is refused as the gateway's own read refuses it
                await self.gw.market(s)
        if isinstance(read.value, _RawPositions):
            return read.value.of(symbols, await self.gw.markets())
        wanted = set(symbols) if symbols is not None else None
        return [p for p in read.value if wanted is None or p.symbol in wanted]

    async def own_positions(self, symbols: list[str]) -> list[Position]:
        """A read of this caller's own (not shared, not waiting for the gap: the pre-trade check),
        on the Binance dialect parsed for ``symbols`` only: the gateway's read parses every open
        position of the account (ccxt), 0.1 ms each, so each opening cost 100 ms of a core per
        venue with 1,000 trades holding (11 % of the worker's samples at 140 holding)."""
        if not self.lazy_positions:
            return await self.gw.positions(symbols)
        for s in symbols:  # an unknown symbol is refused as the gateway's own read refuses it
            await self.gw.market(s)
        raw = await self._read_positions()
        assert isinstance(raw, _RawPositions)
        return raw.of(symbols, await self.gw.markets())

    async def _read_positions(self) -> list[Position] | _RawPositions:
        if not self.lazy_positions:
            return await self.gw.positions(None)
        await self.gw.markets()  # ccxt's markets loaded: rows are named by market id
        # the request ccxt's binanceusdm fetch_positions makes (fetchPositionsRisk, v3), mapped as the
        # gateway maps every call (its typed errors, scrubbed)
        raw = await self.gw._call("fapiPrivateV3GetPositionRisk", {})
        return _RawPositions(self.gw.exchange, raw)

    async def funding_rates(self, symbol: str | None = None) -> Mapping[str, FundingInfo]:
        """Funding and marks of every market, at most ``max_age_s`` old. The settlements the rates
        announce are noted for ``symbol`` (the one the caller looks at; None: every market, which
        builds every entry of the read: ``venues/funding_map.py``)."""
        read = await self.rate_reads.get(max_age_s=self.bounds.max_age_s)
        rates = check_fresh(read, self.bounds.max_age_s, self._clock(), "funding rates", self.gw.name)
        for sym in rates if symbol is None else [symbol]:
            if (fi := rates.get(sym)) is None:
                continue
            _, nxt = self._settles.get(sym, (None, 0))
            if fi.next_funding_ms > nxt:
                self._settles[sym] = (nxt or None, fi.next_funding_ms)
        return rates

    def settled_ms(self, symbol: str, info: FundingInfo | None, now_ms: int) -> int | None:
        """The latest settlement of ``symbol`` at or before ``now_ms`` as far as the rates tell:
        from the interval, and at least the latest announced settlement that is now past (so a
        settlement is known even where the reported interval is not the venue clock's)."""
        known = [t for t in self._settles.get(symbol, ()) if t is not None and t <= now_ms]
        if info is not None:
            known.append(last_settlement_ms(info, now_ms, self.bounds.time_scale))
        return max(known) if known else None

    async def funding_income(self, since_ms: int, symbol: str) -> list[FundingPayment]:
        """``symbol``'s payments since ``since_ms``, oldest first, from a read begun after its
        latest settlement and at most ``income_max_age_s`` old."""
        await self.gw.market(symbol)
        now_ms = self.gw.clock.history_now_ms()
        if since_ms < now_ms - self.bounds.income_retention_s * 1000:  # beyond what is kept
            return await self.gw.funding_income(since_ms, symbol)
        began_after: float | None
        try:
            info = (await self.funding_rates(symbol)).get(symbol)
            last = self.settled_ms(symbol, info, now_ms)
            settled = last + SETTLE_LAG_MS if last is not None else now_ms
            began_after = min(settled, now_ms) / 1000
        except VenueError:  # settlement unknown: only a read begun from now on will do
            began_after = now_ms / 1000
        for _ in range(3):
            if self._income_from is not None and since_ms >= self._income_from:
                break  # the rows kept reach back to since_ms
            self._income_want = since_ms if self._income_want is None else min(self._income_want, since_ms)
            self.income_reads.forget()  # a read reaching back to since_ms, begun from now on
            await self.income_reads.get(began_after=self._venue_s())
        read = await self.income_reads.get(began_after=began_after, max_age_s=self.bounds.income_max_age_s)
        check_fresh(read, self.bounds.income_max_age_s, self._venue_s(), "funding income", self.gw.name)
        rows = [p for p in self._income.values() if p.symbol == symbol and p.timestamp_ms >= since_ms]
        return sorted(rows, key=lambda p: p.timestamp_ms)

    async def _read_income(self) -> None:
        began = self.gw.clock.history_now_ms()
        want = self._income_want
        reach = want if want is not None and (self._income_from is None or want < self._income_from) else None
        if reach is None and self._income_from is not None and self._income_to is not None:
            since = max(self._income_from, self._income_to - INCOME_OVERLAP_MS)
        else:
            since = reach if reach is not None else began
        pays = await self.gw.funding_income(since, None)
        for p in pays:
            self._income[p.income_id] = p
        if reach is not None:
            self._income_from = reach if self._income_from is None else min(self._income_from, reach)
            if self._income_want == want:
                self._income_want = None
        self._income_to = began
        floor = began - int(self.bounds.income_retention_s * 1000)
        if self._income_from is not None and self._income_from < floor:
            self._income_from = floor
            self._income = {k: p for k, p in self._income.items() if p.timestamp_ms >= floor}
