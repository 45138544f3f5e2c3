"""One simulated venue's live state: market, engine, SQLite store, faults, request-weight
limiter, funding settlement (on interval boundaries, per-symbol intervals, or the replay
file's rows), and on every tick of the price path (at least every ``tick_ms``, and when
``POST /_sim/market`` moves a mark) the matching of resting orders and the liquidation checks.
Resting orders of a symbol whose status (the ``symbol_status`` fault) is not TRADING do not
match; an ``outage`` (the API unreachable) does not stop the matching engine.

The venue's clock is :meth:`Sim.now_ms`: the wall clock plus the ``clock_skew_ms`` fault. Every
timestamp the venue makes (orders, trades, income, positions, marks, the funding schedule and
its settlements, serverTime, the signed-request check) comes from it, so a skew moves the
venue's whole clock. When the clock passes several funding boundaries at once (a jump ahead),
each is settled in order at its own time, rate and mark, at most :data:`MAX_CATCH_UP` of them
(the latest) per interval schedule."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import json
import logging
import os
from decimal import Decimal

from .dead_man import DeadMan
from .engine import Engine
from .errors import SimError, err_invalid_symbol
from .faults import Faults
from .liquidation import liquidate_due
from .market import BOOK_FIELDS, BookConfig, Market, default_specs, load_replay, spec_for_unified
from .options import SimOptions
from .ratelimit import WeightLimiter
from .records import Mutation, SymbolSpec
from .resting import match_resting
from .store import Store
from .wire import wall_ms

log = logging.getLogger("hedgeflow.sim")

D = Decimal

#: Funding boundaries settled at most when the clock jumps past many (the latest ones; logged).
MAX_CATCH_UP = 1000


class Sim:
    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        self.faults = Faults()  # first: the clock reads clock_skew_ms
        self.dead_man = DeadMan()  # the resting orders' dead-man's switch (venues/sim/dead_man.py)
        self.started_ms = self.now_ms()
        replay = None
        if opts.replay:
            replay = load_replay(opts.replay, opts.name)
            if not replay:
                raise ValueError(f"replay file {opts.replay} has no rows for venue {opts.name!r}")
            specs = [spec_for_unified(u, i) for i, u in enumerate(sorted(replay))]
        else:
            specs = default_specs(opts.symbols)
        specs = [dataclasses.replace(s) for s in specs]  # this venue's own (POST /_sim/market changes them)
        self.store = Store(opts.state_path)
        wall0 = None
        if replay is not None:
            key = f"{os.path.abspath(opts.replay)}|{opts.speed}"
            saved_wall0 = self.store.get_meta("replay_wall0")
            if self.store.get_meta("replay_key") == key and saved_wall0:
                wall0 = int(saved_wall0)
            else:  # a shared start (``up``): every simulator's data clock reads the same
                wall0 = opts.replay_wall0_ms if opts.replay_wall0_ms is not None else self.started_ms
                self.store.set_meta(replay_key=key, replay_wall0=wall0)
        book = BookConfig(opts.book_levels, D(opts.book_half_spread_bps), D(opts.book_level_step_bps),
                          D(opts.book_level_notional))
        from .dialects import get as dialect

        d = dialect(opts.dialect)
        interval = opts.funding_interval or d.funding_interval_s
        self.market = Market(specs, seed=opts.seed, funding_interval_s=interval, book=book,
                             replay=replay, speed=opts.speed, replay_wall0_ms=wall0)
        fees = [D(str(v if v is not None else dv)) for v, dv in ((opts.taker_fee, d.taker_fee),
                                                                 (opts.maker_fee, d.maker_fee))]
        self.engine = Engine({s.id: s for s in specs}, wallet=opts.start_balance, taker_fee=fees[0],
                             maker_fee=fees[1], default_leverage=opts.default_leverage)
        if not self.store.load_engine(self.engine):
            self.engine.wallet_update_time = self.started_ms
            self.store.save(self.engine, Mutation(wallet=True))
        self.market.pinned_price, self.market.pinned_rate = self.store.load_pinned()
        self.engine.isolated = {s for s, v in self.store.meta_items("margin_type:").items()
                                if v == "ISOLATED" and s in self.market.specs}
        self.last_funding_sym: dict[str, int] = {}
        for sym, raw in self.store.meta_items("spec:").items():
            if sym in self.market.specs:
                self.apply_spec_override(sym, json.loads(raw))
        self.late: set[asyncio.Task] = set()  # orders waiting for execute_late_ms
        self.limiter = WeightLimiter(opts.weight_limit)
        self.secret = opts.api_secret.encode()
        self._tasks: set[asyncio.Task] = set()
        # settlement bookkeeping
        self.last_funding_ms = int(self.store.get_meta("last_funding_ms") or 0)
        self.replay_settled: dict[str, int] = {}
        if self.market.replay is not None:
            wall = self.now_ms()
            for sym, times in self.market.replay_times.items():
                saved = self.store.get_meta(f"replay_settled:{sym}")
                if saved is not None:
                    self.replay_settled[sym] = int(saved)
                else:
                    self.replay_settled[sym] = bisect.bisect_right(times, self.market.data_time(wall)) - 1

    # ---- helpers --------------------------------------------------------------------------
    def now_ms(self) -> int:
        """The venue's clock (ms): our wall clock plus the ``clock_skew_ms`` fault."""
        return wall_ms() + self.faults.clock_skew_ms

    def spec(self, symbol: str | None) -> SymbolSpec:
        if not symbol:
            raise SimError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        s = self.market.specs.get(symbol)
        if s is None:
            raise err_invalid_symbol()
        return s

    def marks(self, extra: str | None = None) -> dict[str, Decimal]:
        t = self.now_ms()
        syms = {p.symbol for p in self.engine.positions.values() if p.qty and p.symbol in self.market.specs}
        if extra:
            syms.add(extra)
        return {s: self.market.mark(s, t) for s in syms}

    def persist(self, mut: Mutation) -> None:
        self.store.save(self.engine, mut)

    def apply_spec_override(self, sym: str, o: dict) -> None:
        """qty_step / min_qty / funding_interval_hours / book overrides (:data:`BOOK_FIELDS`;
        None restores the venue default) set through ``POST /_sim/market``."""
        spec = self.market.specs[sym]
        for k in BOOK_FIELDS:
            if k in o:
                self.market.set_book_override(sym, k, o[k])
        if o.get("qty_step") is not None:
            spec.step = D(o["qty_step"])
        if o.get("min_qty") is not None:
            spec.min_qty = D(o["min_qty"])
        if o.get("funding_interval_hours") is not None:
            self.market.interval_override[sym] = iv = round(float(o["funding_interval_hours"]) * 3_600_000)
            self.last_funding_sym[sym] = int(o.get("last_funding_ms") or (self.now_ms() // iv) * iv)
        elif "funding_interval_hours" in o:
            self.market.interval_override.pop(sym, None)
            self.last_funding_sym.pop(sym, None)

    def check_liquidations(self) -> Mutation:
        """Liquidate positions whose mark crossed their liquidation price (persisted)."""
        if not any(p.qty for p in self.engine.positions.values()):
            return Mutation()
        mut = liquidate_due(self.engine, self.marks(), self.now_ms())
        if mut.orders:
            self.persist(mut)
            log.warning("liquidated %s", ", ".join(o.symbol for o in mut.orders if o.client_order_id.startswith("autoclose-")))
        return mut

    def match_resting(self) -> Mutation:
        """Fill the resting orders the book now crosses (persisted): one tick of the matching engine."""
        e = self.engine
        if not e.resting:
            return Mutation()
        t = self.now_ms()
        mut = Mutation()
        for sym in list(e.resting):
            spec = self.market.specs.get(sym)
            if spec is None or self.faults.status(spec.symbol) != "TRADING":
                continue
            bids, asks = self.market.depth(sym, t)
            mut.merge(match_resting(e, sym, bids, asks, t))
        if mut.orders:
            self.persist(mut)
        return mut

    def tick(self) -> None:
        """One tick of the price path: resting orders first, then liquidations."""
        self.match_resting()
        self.check_liquidations()

    # ---- funding --------------------------------------------------------------------------
    def settle(self, symbols: list[str] | None = None, *, at_ms: int | None = None,
               rates: dict[str, Decimal] | None = None, prices: dict[str, Decimal] | None = None,
               exclude: frozenset[str] | set[str] = frozenset(),
               meta: dict[str, object] | None = None) -> Mutation:
        """Settle funding at ``at_ms`` (default now), with the market's mark and rate at that
        time unless pinned or given; ``meta`` is persisted with it (one transaction)."""
        t = self.now_ms() if at_ms is None else at_ms
        m, prices, rates = self.market, prices or {}, rates or {}
        mut = Mutation()
        for sym in symbols if symbols is not None else [s for s in m.specs if s not in exclude]:
            # pinned values win over given (replay) ones, which win over the market's own
            mark = m.pinned_price.get(sym) or prices.get(sym) or m.mark(sym, t)
            rate = m.pinned_rate.get(sym, rates.get(sym))
            if rate is None:
                rate = m.rate(sym, t)
            mut.merge(self.engine.settle_funding(sym, mark, rate, t))
            if symbols is not None or self.engine.positions.get(sym) is not None or len(m.specs) <= 50:
                self.store.save_funding_rate(sym, t, rate, mark)
        mut.meta.update(meta or {})
        self.persist(mut)
        return mut

    async def funding_loop(self) -> None:
        while True:
            try:
                tick_s = self.opts.tick_ms / 1000
                if self.market.replay is not None:
                    self._replay_tick()
                    delay = min(0.05, tick_s)
                else:
                    delay = min(tick_s, max(0.005, (self._funding_tick() - self.now_ms()) / 1000))
                self.tick()
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - keep the venue alive
                log.exception("funding loop")
                await asyncio.sleep(1)

    def _funding_tick(self) -> int:
        """Settle every interval boundary passed since the last settlement (the venue's
        interval for most symbols, per-symbol intervals on their own schedule) in time order,
        each at its own time; return the next boundary. Each settlement is persisted with its
        schedule's progress, so a restart neither repeats nor skips one."""
        interval = self.market.interval_ms
        over = self.market.interval_override
        t = self.now_ms()
        boundary = (t // interval) * interval
        if self.last_funding_ms == 0:
            self.last_funding_ms = boundary
            self.store.set_meta(last_funding_ms=boundary)
        due: list[tuple[int, str | None]] = [
            (b, None) for b in missed_boundaries(self.last_funding_ms, boundary, interval, "venue interval")]
        nxt = boundary + interval
        for sym, iv in list(over.items()):
            b = (t // iv) * iv
            due += [(at, sym) for at in missed_boundaries(self.last_funding_sym.get(sym, b), b, iv, sym)]
            nxt = min(nxt, b + iv)
        for at, sym in sorted(due, key=lambda d: d[0]):  # stable: the venue's schedule first on a tie
            if sym is None:
                self.last_funding_ms = at
                self.settle(at_ms=at, exclude=set(over), meta={"last_funding_ms": at})
            else:
                self.last_funding_sym[sym] = at
                self.settle([sym], at_ms=at, meta=self._spec_meta(sym))
        return nxt

    def _spec_meta(self, sym: str) -> dict[str, object]:
        spec = self.market.specs[sym]
        iv = self.market.interval_override.get(sym)
        o = {"qty_step": str(spec.step), "min_qty": str(spec.min_qty),
             "funding_interval_hours": iv / 3_600_000 if iv else None,
             "last_funding_ms": self.last_funding_sym.get(sym), **self.market.book_overrides(sym)}
        return {f"spec:{sym}": json.dumps(o)}

    def save_spec_override(self, sym: str) -> None:
        """Persist what :meth:`apply_spec_override` set for ``sym`` (reloaded on restart)."""
        self.persist(Mutation(meta=self._spec_meta(sym)))

    def _replay_tick(self) -> None:
        wall = self.now_ms()
        dt = self.market.data_time(wall)
        meta = {}
        for sym, rows in (self.market.replay or {}).items():
            i = self.replay_settled.get(sym, -1)
            while i + 1 < len(rows) and rows[i + 1].t_ms <= dt:
                i += 1
                row = rows[i]
                self.settle([sym], at_ms=self.market.wall_time(row.t_ms), rates={sym: row.rate},
                            prices={sym: row.price} if row.price is not None else None)
            if i != self.replay_settled.get(sym, -1):
                self.replay_settled[sym] = i
                meta[f"replay_settled:{sym}"] = i
        if meta:
            self.persist(Mutation(meta=meta))


def missed_boundaries(last_ms: int, boundary_ms: int, interval_ms: int, what: str) -> list[int]:
    """The interval boundaries after ``last_ms`` up to ``boundary_ms``, oldest first: at most
    :data:`MAX_CATCH_UP` (the latest; the skipped ones are logged)."""
    first = (last_ms // interval_ms + 1) * interval_ms
    if boundary_ms < first:
        return []
    n = (boundary_ms - first) // interval_ms + 1
    if n > MAX_CATCH_UP:
        log.warning("funding (%s): the clock passed %d settlement boundaries at once; settling the last %d only",
                    what, n, MAX_CATCH_UP)
        first += (n - MAX_CATCH_UP) * interval_ms
        n = MAX_CATCH_UP
    return [first + k * interval_ms for k in range(n)]
