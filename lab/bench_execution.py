"""``hedgeflow bench``'s ``execution`` figures (issue 15): what each execution style costs, and how
long it leaves a leg unhedged, on the same books and the same price path.

Each style (``taker``, ``maker_first``, ``sliced``) gets a fresh pair of simulators (``python -m
venues.sim`` children, the same seed and fees; venue B's taker fee is Bybit's 0.055 %, so the
maker-first unit quotes there), and all three run at once on one price path: a seeded random walk
of the mark, pinned on all six simulators every ``TICK_S`` (``POST /_sim/market``; the simulators'
own tick is off, so resting orders fill exactly when the path crosses them). Every round opens a
hedged pair (long A, short B) of ``notional`` at the same moment in every style and closes it
``exit_after_s`` later:

* ``taker``: both legs by market order at once (the gateway directly), off the same way;
* ``maker_first``: one maker unit on entry and one reduce-only on exit (``activities/maker_unit.py``,
  with the trade settings' window, re-quotes and cap);
* ``sliced``: the quantity cut by ``domain.execution.slice_quantities`` (``slices``), each piece a
  taker pair (``slice_style`` taker; a maker unit when maker_first), ``slice_interval_s`` apart.

Figures, per style, from the venues' own fills (``Gateway.fills``):

* ``cost_per_musd`` — (fees + slippage) per 1,000,000 USD traded (both legs, entry and exit);
  slippage is each fill's price against the mark at the decision (the round's entry or exit
  moment), signed so that a worse price costs;
* ``unhedged_p99_s`` — p99 of the exposure samples: each fill that makes the two legs unequal opens
  a sample, closed by the other leg's fill that evens them (venue fill times, first in first out);
* ``n`` — exposure samples; also ``round_trips``, ``fees_per_musd``, ``slippage_per_musd``,
  ``maker_share`` (of the quantity filled as maker), the cap and window used.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from activities.maker_unit import maker_unit
from config.settings import TradeExecution, VenueConfig
from domain.execution import maker_ids, passive_leg, slice_quantities, slice_step
from domain.ids import client_order_id
from domain.rounding import round_down
from lab.figures import percentile
from lab.harness import lab_sim, log
from messages.execution import MakerUnitRequest
from venues.models import Fill, Side
from venues.pool import GatewayPool
from workers.proc import free_port

STYLES = ("taker", "maker_first", "sliced")
SYMBOL = "BTC/USDT:USDT"
P0, STEP, MIN_QTY = Decimal("65000"), Decimal("0.001"), Decimal("0.001")
TICK_S = 0.1
MAKER_FEE, TAKER_A, TAKER_B = Decimal("0.0002"), Decimal("0.0005"), Decimal("0.00055")
MUSD = Decimal(1_000_000)


def venue_name(style: str, side: str) -> str:
    return f"{style.replace('_', '-')}-{side}"


@dataclass
class ExecBenchConfig:
    rounds: int = 4
    notional: Decimal = Decimal("10000")
    #: the styles' settings; window and slice interval shortened in --quick (said in the figures)
    execution: TradeExecution = field(default_factory=TradeExecution)
    vol_bps_per_tick: float = 0.5  # the path's standard deviation per TICK_S (about 1.6 bp per second)
    seed: int = 15
    settle_s: float = 2.0  # beyond the longest entry before the exit starts

    @classmethod
    def quick(cls) -> ExecBenchConfig:
        return cls(rounds=2, execution=TradeExecution(maker_window_s=5, slice_interval_s=1))

    @classmethod
    def tiny(cls) -> ExecBenchConfig:
        return cls(rounds=1, execution=TradeExecution(maker_window_s=1.0, slice_interval_s=0.2), settle_s=0.5)

    @property
    def exit_after_s(self) -> float:
        e = self.execution
        return max(e.maker_window_s, (e.slices - 1) * e.slice_interval_s) + self.settle_s

    @property
    def round_s(self) -> float:
        return 2 * self.exit_after_s


class PricePath:
    """The mark as a seeded random walk on the tick of 0.1, one value per ``TICK_S``."""

    def __init__(self, seed: int, vol_bps: float, ticks: int) -> None:
        rng, x, self.marks = random.Random(seed), 0.0, []
        for _ in range(ticks):
            self.marks.append((P0 * Decimal(str(round(math.exp(x), 9))) * 10).to_integral_value() / 10)
            x += rng.gauss(0.0, vol_bps / 10_000)
        self.t0 = 0.0

    def now(self) -> Decimal:
        i = int((time.monotonic() - self.t0) / TICK_S)
        return self.marks[min(max(i, 0), len(self.marks) - 1)]


async def _drive(path: PricePath, urls: list[str], http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
    last = None
    while not stop.is_set():
        px = path.now()
        if px != last:
            await asyncio.gather(*(http.post(u + "/_sim/market", json={"symbol": SYMBOL, "price": str(px)})
                                   for u in urls))
            last = px
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_S / 2)


class _Style:
    def __init__(self, style: str, pool: GatewayPool, cfg: ExecBenchConfig, path: PricePath) -> None:
        self.style, self.pool, self.cfg, self.path = style, pool, cfg, path
        self.a, self.b = venue_name(style, "a"), venue_name(style, "b")
        self.phases: list[tuple[int, Decimal]] = []  # (start ms, mark at the decision)
        self.units: list[Any] = []

    async def pair(self, qty: Decimal, trade: str, step: str, closing: bool) -> None:
        ga, gb = self.pool.get(self.a), self.pool.get(self.b)
        await asyncio.gather(
            ga.place_market_order(SYMBOL, Side.SELL if closing else Side.BUY, qty,
                                  client_order_id(trade, "long", step), reduce_only=closing),
            gb.place_market_order(SYMBOL, Side.BUY if closing else Side.SELL, qty,
                                  client_order_id(trade, "short", step), reduce_only=closing))

    async def unit(self, qty: Decimal, trade: str, k: int, closing: bool) -> None:
        e = self.cfg.execution
        passive = passive_leg(TAKER_A, TAKER_B)
        pv, av = (self.a, self.b) if passive == "long" else (self.b, self.a)
        pside = Side.BUY if passive == "long" else Side.SELL
        if closing:
            pside = pside.opposite
        ids = maker_ids(trade, passive, k, e.maker_requotes, closing=closing)
        req = MakerUnitRequest(symbol=SYMBOL, qty=qty, step=STEP, min_qty=MIN_QTY, reduce_only=closing,
                               passive_venue=pv, passive_side=pside, active_venue=av, active_side=pside.opposite,
                               quote_ids=ids.quotes, passive_taker_id=ids.passive_taker, hedge_ids=ids.hedges,
                               flatten_ids=ids.flattens, window_s=e.maker_window_s, cap_usd=e.cap_unhedged_usd,
                               cap_s=e.cap_unhedged_s, ref_price=self.path.now())
        self.units.append(await maker_unit(self.pool, req, attempt=1))

    async def leg(self, qty: Decimal, trade: str, closing: bool) -> None:
        self.phases.append((int(time.time() * 1000), self.path.now()))
        e = self.cfg.execution
        if self.style == "taker":
            return await self.pair(qty, trade, "cx" if closing else "ox", closing)
        if self.style == "maker_first":
            return await self.unit(qty, trade, 0, closing)
        for k, q in enumerate(slice_quantities(qty, e.slices, STEP, MIN_QTY)):
            if k:
                await asyncio.sleep(e.slice_interval_s)
            if e.slice_style == "maker_first":
                await self.unit(q, trade, k, closing)
            else:
                await self.pair(q, trade, ("c" if closing else "") + slice_step(k), closing)

    async def run(self, start: float, stamp: str) -> None:
        for r in range(self.cfg.rounds):
            trade = f"xb{stamp}{self.style[:2]}{r}"
            await asyncio.sleep(max(0.0, start + r * self.cfg.round_s - time.monotonic()))
            qty = round_down(self.cfg.notional / self.path.now(), STEP)
            await self.leg(qty, trade, closing=False)
            await asyncio.sleep(max(0.0, start + r * self.cfg.round_s + self.cfg.exit_after_s - time.monotonic()))
            held = [abs(p.qty) for n in (self.a, self.b) for p in await self.pool.get(n).positions([SYMBOL])]
            await self.leg(min(held, default=qty), trade, closing=True)

    async def figures(self, since_ms: int) -> dict[str, Any]:
        fa = await self.pool.get(self.a).fills(SYMBOL, since_ms)
        fb = await self.pool.get(self.b).fills(SYMBOL, since_ms)
        return figures(fa, fb, self.phases, self.cfg, self.units)


def figures(fa: list[Fill], fb: list[Fill], phases: list[tuple[int, Decimal]], cfg: ExecBenchConfig,
            units: list[Any]) -> dict[str, Any]:
    """Cost and exposure of one style from both venues' fills (module docstring)."""
    fees = slip = traded = maker = qty_all = Decimal(0)
    samples: list[float] = []
    starts = [p[0] for p in phases]
    by_phase: dict[int, list[tuple[int, Decimal]]] = {}
    for venue_fills in (fa, fb):
        for f in venue_fills:
            i = max((k for k, s in enumerate(starts) if s <= f.timestamp_ms), default=0)
            sign = 1 if f.side is Side.BUY else -1
            fees += f.fee
            slip += sign * (f.price - phases[i][1]) * f.qty
            traded += f.qty * f.price
            qty_all += f.qty
            maker += f.qty if f.maker else 0
            by_phase.setdefault(i, []).append((f.timestamp_ms, sign * f.qty))
    for events in by_phase.values():
        samples += exposure_samples(events)
    e = cfg.execution
    per = (lambda x: float((x / traded * MUSD).quantize(Decimal("0.01")))) if traded else (lambda x: None)
    return {
        "cost_per_musd": per(fees + slip), "unhedged_p99_s": percentile(samples, 99) if samples else None,
        "n": len(samples), "round_trips": cfg.rounds, "fees_per_musd": per(fees), "slippage_per_musd": per(slip),
        "traded_usd": float(traded.quantize(Decimal(1))), "maker_share": float(maker / qty_all) if qty_all else 0.0,
        "unhedged_max_s": max(samples, default=None),
        "cap_fired": sum(1 for u in units if u.cap_fired), "fell_back": sum(1 for u in units if u.fell_back),
        "window_s": e.maker_window_s, "cap_unhedged_s": e.cap_unhedged_s, "cap_unhedged_usd": float(e.cap_unhedged_usd),
    }


def exposure_samples(events: list[tuple[int, Decimal]]) -> list[float]:
    """Seconds each imbalance between the legs lasted: ``events`` are (ms, signed qty) of both legs'
    fills in one phase (a hedged pair nets to zero); a fill that widens the imbalance opens a chunk,
    one that narrows it closes chunks first in first out, each closed piece one sample."""
    net = Decimal(0)
    chunks: list[list] = []
    out: list[float] = []
    last_ms = 0
    for ms, d in sorted(events, key=lambda e: e[0]):
        last_ms = ms
        if net == 0 or (net > 0) == (d > 0):
            chunks.append([ms, abs(d)])
            net += d
            continue
        left = abs(d)
        while left > 0 and chunks:
            take = min(left, chunks[0][1])
            out.append((ms - chunks[0][0]) / 1000)
            chunks[0][1] -= take
            left -= take
            if chunks[0][1] == 0:
                chunks.pop(0)
        net += d
        if left > 0:  # flipped: the rest opens the other way
            chunks.append([ms, left])
    out += [(last_ms - c[0]) / 1000 for c in chunks]  # never evened within the phase
    return out


async def measure_execution(cfg: ExecBenchConfig, *, progress: Callable[[str], None] = log) -> dict[str, Any]:
    """The ``execution`` figures: one object per style (module docstring)."""
    workdir = Path(tempfile.mkdtemp(prefix="hedgeflow-exec-"))
    sims, venues = [], []
    for style in STYLES:
        for side, fee in (("a", TAKER_A), ("b", TAKER_B)):
            name = venue_name(style, side)
            sims.append(lab_sim(name, free_port(), workdir, 3, ["--seed", str(cfg.seed), "--tick-ms", "600000",
                                                                 "--taker-fee", str(fee), "--maker-fee", str(MAKER_FEE)]))
            venues.append(VenueConfig(name=name, kind="sim", base_url=sims[-1].url, requests_per_second=1000,
                                      timeout_ms=3000, taker_fee=fee, maker_fee=MAKER_FEE))
    duration = cfg.rounds * cfg.round_s + 30
    path = PricePath(cfg.seed, cfg.vol_bps_per_tick, int(duration / TICK_S))
    progress(f"bench: execution styles — {cfg.rounds} round trips of {cfg.notional} USD each in "
             f"{', '.join(STYLES)}, one price path ({cfg.round_s:g} s a round)")
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in sims))
        async with GatewayPool(venues) as pool, aiohttp.ClientSession() as http:
            await pool.warm()
            path.t0 = time.monotonic()
            stop = asyncio.Event()
            driver = asyncio.create_task(_drive(path, [s.url for s in sims], http, stop))
            since = int(time.time() * 1000) - 1000
            runs = {s: _Style(s, pool, cfg, path) for s in STYLES}
            start, stamp = time.monotonic() + 0.5, f"{int(time.time()) % 100000}"
            try:
                await asyncio.gather(*(r.run(start, stamp) for r in runs.values()))
            finally:
                stop.set()
                await driver
            return {s: await r.figures(since) for s, r in runs.items()}
    finally:
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in sims), return_exceptions=True)
        shutil.rmtree(workdir, ignore_errors=True)


def format_execution(ex: dict[str, Any]) -> str:
    """The small table ``hedgeflow bench`` prints."""
    rows = ["execution styles (same books, same price path)",
            f"  {'style':<12} {'cost / 1M USD':>14} {'fees':>9} {'slippage':>9} {'unhedged p99':>13} {'n':>4}"]
    for s in STYLES:
        f = ex.get(s) or {}
        p99 = f.get("unhedged_p99_s")
        p99s = f"{p99:.3f} s" if p99 is not None else "-"
        rows.append(f"  {s:<12} {f.get('cost_per_musd', 0):>14.2f} {f.get('fees_per_musd', 0):>9.2f} "
                    f"{f.get('slippage_per_musd', 0):>9.2f} {p99s:>13} "
                    f"{f.get('n', 0):>4}")
    cap = (ex.get("maker_first") or {}).get("cap_unhedged_s")
    if cap is not None:
        rows.append(f"  cap on unhedged time: {cap:g} s")
    return "\n".join(rows)
