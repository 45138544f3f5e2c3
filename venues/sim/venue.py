"""One simulated venue's live state: market, engine, SQLite store, faults, request-weight
limiter, funding settlement (on interval boundaries, per-symbol intervals, or the replay
file's rows), liquidation checks on every tick of the price path."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import json
import logging
import os
from decimal import Decimal

from .engine import Engine
from .errors import SimError, err_invalid_symbol
from .faults import Faults
from .liquidation import liquidate_due
from .market import BOOK_FIELDS, BookConfig, Market, default_specs, load_replay, spec_for_unified
from .options import SimOptions
from .ratelimit import WeightLimiter
from .records import Mutation, SymbolSpec
from .store import Store
from .wire import now_ms

log = logging.getLogger("hedgeflow.sim")

D = Decimal


class Sim:
    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        self.started_ms = now_ms()
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
            else:
                wall0 = self.started_ms
                self.store.set_meta(replay_key=key, replay_wall0=wall0)
        book = BookConfig(opts.book_levels, D(opts.book_half_spread_bps), D(opts.book_level_step_bps),
                          D(opts.book_level_notional))
        self.market = Market(specs, seed=opts.seed, funding_interval_s=opts.funding_interval, book=book,
                             replay=replay, speed=opts.speed, replay_wall0_ms=wall0)
        self.engine = Engine({s.id: s for s in specs}, wallet=opts.start_balance, taker_fee=D(opts.taker_fee),
                             default_leverage=opts.default_leverage)
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
        self.faults = Faults()
        self.limiter = WeightLimiter(opts.weight_limit)
        self.secret = opts.api_secret.encode()
        self._tasks: set[asyncio.Task] = set()
        # settlement bookkeeping
        self.last_funding_ms = int(self.store.get_meta("last_funding_ms") or 0)
        self.replay_settled: dict[str, int] = {}
        if self.market.replay is not None:
            wall = now_ms()
            for sym, times in self.market.replay_times.items():
                saved = self.store.get_meta(f"replay_settled:{sym}")
                if saved is not None:
                    self.replay_settled[sym] = int(saved)
                else:
                    self.replay_settled[sym] = bisect.bisect_right(times, self.market.data_time(wall)) - 1

    # ---- helpers --------------------------------------------------------------------------
    def spec(self, symbol: str | None) -> SymbolSpec:
        if not symbol:
            raise SimError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        s = self.market.specs.get(symbol)
        if s is None:
            raise err_invalid_symbol()
        return s

    def marks(self, extra: str | None = None) -> dict[str, Decimal]:
        t = now_ms()
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
            self.last_funding_sym[sym] = int(o.get("last_funding_ms") or (now_ms() // iv) * iv)
        elif "funding_interval_hours" in o:
            self.market.interval_override.pop(sym, None)
            self.last_funding_sym.pop(sym, None)

    def check_liquidations(self) -> Mutation:
        """Liquidate positions whose mark crossed their liquidation price (persisted)."""
        if not any(p.qty for p in self.engine.positions.values()):
            return Mutation()
        mut = liquidate_due(self.engine, self.marks(), now_ms())
        if mut.orders:
            self.persist(mut)
            log.warning("liquidated %s", ", ".join(o.symbol for o in mut.orders if o.client_order_id.startswith("autoclose-")))
        return mut

    # ---- funding --------------------------------------------------------------------------
    def settle(self, symbols: list[str] | None = None, *, at_ms: int | None = None,
               rates: dict[str, Decimal] | None = None, prices: dict[str, Decimal] | None = None,
               exclude: frozenset[str] | set[str] = frozenset()) -> Mutation:
        t = now_ms()
        ts = at_ms or t
        m, prices, rates = self.market, prices or {}, rates or {}
        mut = Mutation()
        for sym in symbols if symbols is not None else [s for s in m.specs if s not in exclude]:
            # pinned values win over given (replay) ones, which win over the market's own
            mark = m.pinned_price.get(sym) or prices.get(sym) or m.mark(sym, t)
            rate = m.pinned_rate.get(sym, rates.get(sym))
            if rate is None:
                rate = m.rate(sym, t)
            mut.merge(self.engine.settle_funding(sym, mark, rate, ts))
            if symbols is not None or self.engine.positions.get(sym) is not None or len(m.specs) <= 50:
                self.store.save_funding_rate(sym, ts, rate, mark)
        self.persist(mut)
        return mut

    async def funding_loop(self) -> None:
        while True:
            try:
                if self.market.replay is not None:
                    self._replay_tick()
                    delay = 0.05
                else:
                    delay = min(1.0, max(0.005, (self._funding_tick() - now_ms()) / 1000))
                self.check_liquidations()
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - keep the venue alive
                log.exception("funding loop")
                await asyncio.sleep(1)

    def _funding_tick(self) -> int:
        """Settle the symbols whose interval boundary passed; return the next boundary."""
        interval = self.market.interval_ms
        over = self.market.interval_override
        t = now_ms()
        boundary = (t // interval) * interval
        if self.last_funding_ms == 0:
            self.last_funding_ms = boundary
            self.store.set_meta(last_funding_ms=boundary)
        if boundary > self.last_funding_ms:
            self.last_funding_ms = boundary
            self.settle(at_ms=boundary, exclude=set(over))
            self.persist(Mutation(meta={"last_funding_ms": boundary}))
        nxt = (t // interval + 1) * interval
        for sym, iv in list(over.items()):
            b = (t // iv) * iv
            if b > self.last_funding_sym.get(sym, b):
                self.last_funding_sym[sym] = b
                self.settle([sym], at_ms=b)
                self.save_spec_override(sym)
            nxt = min(nxt, b + iv)
        return nxt

    def save_spec_override(self, sym: str) -> None:
        """Persist what :meth:`apply_spec_override` set for ``sym`` (reloaded on restart)."""
        spec = self.market.specs[sym]
        iv = self.market.interval_override.get(sym)
        o = {"qty_step": str(spec.step), "min_qty": str(spec.min_qty),
             "funding_interval_hours": iv / 3_600_000 if iv else None,
             "last_funding_ms": self.last_funding_sym.get(sym), **self.market.book_overrides(sym)}
        self.persist(Mutation(meta={f"spec:{sym}": json.dumps(o)}))

    def _replay_tick(self) -> None:
        wall = now_ms()
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
