"""Market data of the simulated venue: symbols, mark prices, funding rates, books, replay.

Synthetic mode is stateless and deterministic in wall time: the mark price is a sum of
sinusoids (periods from seconds to a day) whose phases depend only on the symbol, so all
simulated venues see (almost) the same price, plus a small venue-specific basis. The funding
rate is a mean-reverting wiggle around a venue- and symbol-specific level drawn from the
seed, so venues with different seeds show a persistent cross-venue spread.

Replay mode serves the rows of a contract CSV (``time,venue,symbol,funding_rate,mark_price``,
read by :func:`domain.replay_data.read_rows`) whose ``venue`` is this sim's name, mapping
data time to wall time as ``data_t = t0 + (wall - wall0) * speed``.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
import random
from dataclasses import dataclass
from decimal import Decimal

from domain.replay_data import read_rows

from .records import SymbolSpec, floor_step

__all__ = ["BOOK_FIELDS", "DEFAULT_SPECS", "BookConfig", "Market", "ReplayRow", "default_specs", "load_replay",
           "spec_for_unified", "synthetic_spec"]

D = Decimal

DEFAULT_SPECS: list[SymbolSpec] = [
    # mmr / max_leverage: the first bracket of GET /fapi/v1/leverageBracket
    SymbolSpec("BTC/USDT:USDT", "BTCUSDT", "BTC", "USDT", D("65000"), D("0.10"), D("0.001"), D("0.001"), D("1000"), D("120"),
               mmr=D("0.004"), max_leverage=125),
    SymbolSpec("ETH/USDT:USDT", "ETHUSDT", "ETH", "USDT", D("3400"), D("0.01"), D("0.001"), D("0.001"), D("10000"), D("2000"),
               mmr=D("0.004"), max_leverage=125),
    SymbolSpec("SOL/USDT:USDT", "SOLUSDT", "SOL", "USDT", D("150"), D("0.01"), D("1"), D("1"), D("1000000"), D("50000"),
               mmr=D("0.005"), max_leverage=100),
]


def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def synthetic_spec(i: int) -> SymbolSpec:
    rng = random.Random(_h("spec", i))
    price = D(str(round(10 ** rng.uniform(-0.5, 3.0), 4)))
    exp = math.floor(math.log10(float(price)))
    tick = D(1).scaleb(exp - 4)
    step = D(1).scaleb(max(-3, min(3, -exp)))
    price = (price / tick).to_integral_value() * tick
    base = f"S{i:03d}"
    return SymbolSpec(f"{base}/USDT:USDT", f"{base}USDT", base, "USDT", price, tick, step, step,
                      step * 10_000_000, step * 1_000_000)


def default_specs(n: int | None = None) -> list[SymbolSpec]:
    """The three default symbols, plus synthetic S001USDT... up to ``n`` in total."""
    n = n or len(DEFAULT_SPECS)
    specs = list(DEFAULT_SPECS)[:n]
    i = 1
    while len(specs) < n:
        specs.append(synthetic_spec(i))
        i += 1
    return specs


def spec_for_unified(symbol: str, i: int) -> SymbolSpec:
    for s in DEFAULT_SPECS:
        if s.symbol == symbol:
            return s
    base, rest = symbol.split("/", 1)
    quote = rest.split(":", 1)[0]
    sp = synthetic_spec(1000 + i)
    return SymbolSpec(symbol, f"{base}{quote}", base, quote, sp.base_price, sp.tick, sp.step, sp.min_qty,
                      sp.max_qty, sp.market_max_qty)


@dataclass
class BookConfig:
    levels: int = 20
    half_spread_bps: Decimal = D("1")
    level_step_bps: Decimal = D("1")  # distance between levels
    level_notional: Decimal = D("50000")  # USDT per level


#: Per-symbol book overrides of ``POST /_sim/market`` → the :class:`BookConfig` field each sets.
BOOK_FIELDS = {"book_level_notional": "level_notional", "book_level_step_bps": "level_step_bps"}


@dataclass
class ReplayRow:
    """One settlement of one symbol on this venue (``price`` filled in by :func:`load_replay`)."""

    t_ms: int
    rate: Decimal
    price: Decimal | None


def load_replay(path: str, venue: str) -> dict[str, list[ReplayRow]]:
    """Rows for ``venue`` grouped by unified symbol, time-ordered, prices carried forward
    (and back-filled before the first known price). Reads through :func:`read_rows`."""
    out: dict[str, list[ReplayRow]] = {}
    for row in read_rows(path):
        if row.venue != venue:
            continue
        out.setdefault(row.symbol, []).append(ReplayRow(row.t_ms, row.rate, row.price))
    for rows in out.values():
        rows.sort(key=lambda r: r.t_ms)
        last = None
        for r in rows:
            if r.price is None:
                r.price = last
            last = r.price
        first = next((r.price for r in rows if r.price is not None), None)
        for r in rows:
            if r.price is None:
                r.price = first
    return out


class Market:
    """Prices, funding rates and books; pinned values override both modes."""

    def __init__(
        self,
        specs: list[SymbolSpec],
        *,
        seed: int = 0,
        funding_interval_s: int = 28800,
        book: BookConfig | None = None,
        replay: dict[str, list[ReplayRow]] | None = None,
        speed: float = 1.0,
        replay_wall0_ms: int | None = None,
    ) -> None:
        self.specs = {s.id: s for s in specs}
        self.by_unified = {s.symbol: s for s in specs}
        self.seed = seed
        self.interval_ms = int(funding_interval_s * 1000)
        self.interval_override: dict[str, int] = {}  # per-symbol interval (ms), POST /_sim/market
        self.book = book or BookConfig()
        self.book_override: dict[str, dict[str, Decimal]] = {}  # per-symbol BookConfig fields
        self.pinned_price: dict[str, Decimal] = {}
        self.pinned_rate: dict[str, Decimal] = {}
        self.replay = None
        if replay is not None:
            self.replay = {self.by_unified[u].id: rows for u, rows in replay.items() if u in self.by_unified}
            self.replay_times = {k: [r.t_ms for r in rows] for k, rows in self.replay.items()}
            self.t0 = min(rows[0].t_ms for rows in self.replay.values())
            self.speed = float(speed)
            self.wall0 = replay_wall0_ms
        self._params: dict[str, tuple] = {}
        for s in specs:
            prng = random.Random(_h("price", s.id))  # venue independent
            waves = []
            for period in (45, 300, 1800, 7200, 28800, 86400):
                amp = 0.0009 * math.sqrt(period / 60.0) * prng.uniform(0.5, 1.0)
                waves.append((2 * math.pi / period, prng.uniform(0, 2 * math.pi), amp))
            vrng = random.Random(_h("venue", seed, s.id))
            basis = vrng.uniform(-0.0002, 0.0002)
            level = 0.0001 + vrng.uniform(-0.0004, 0.0006)  # venue/symbol specific level
            fwaves = []
            for period in (600, 3600, 6 * 3600):
                fwaves.append((2 * math.pi / period, vrng.uniform(0, 2 * math.pi), vrng.uniform(0.00002, 0.00008)))
            self._params[s.id] = (waves, basis, level, fwaves)

    # ---- clocks ---------------------------------------------------------------------------
    def resolve(self, symbol: str) -> SymbolSpec | None:
        return self.specs.get(symbol) or self.by_unified.get(symbol)

    def data_time(self, wall_ms: int) -> int:
        assert self.replay is not None and self.wall0 is not None
        return int(self.t0 + (wall_ms - self.wall0) * self.speed)

    def wall_time(self, data_ms: int) -> int:
        assert self.replay is not None and self.wall0 is not None
        return math.ceil(self.wall0 + (data_ms - self.t0) / self.speed)

    def _replay_index(self, sym: str, wall_ms: int) -> int:
        """Index of the latest row at or before the current data time (0 before the start)."""
        times = self.replay_times[sym]
        i = bisect.bisect_right(times, self.data_time(wall_ms)) - 1
        return max(i, 0)

    # ---- values ---------------------------------------------------------------------------
    def mark(self, sym: str, wall_ms: int) -> Decimal:
        if sym in self.pinned_price:
            return self.pinned_price[sym]
        spec = self.specs[sym]
        if self.replay is not None and sym in self.replay:
            rows = self.replay[sym]
            p = rows[self._replay_index(sym, wall_ms)].price
            return spec.round_price(p) if p is not None else spec.base_price
        waves, basis, _, _ = self._params[sym]
        t = wall_ms / 1000.0
        x = sum(a * math.sin(w * t + ph) for w, ph, a in waves) + basis
        return spec.round_price(spec.base_price * D(str(round(math.exp(x), 10))))

    def index(self, sym: str, wall_ms: int) -> Decimal:
        spec = self.specs[sym]
        _, basis, _, _ = self._params[sym]
        return spec.round_price(self.mark(sym, wall_ms) * D(str(round(1 - basis / 2, 10))))

    def rate(self, sym: str, wall_ms: int) -> Decimal:
        if sym in self.pinned_rate:
            return self.pinned_rate[sym]
        if self.replay is not None:
            if sym in self.replay:
                return self.replay[sym][self._replay_index(sym, wall_ms)].rate
            return D("0.0001")
        _, _, level, fwaves = self._params[sym]
        t = wall_ms / 1000.0
        r = level + sum(a * math.sin(w * t + ph) for w, ph, a in fwaves)
        return D(str(round(r, 8)))

    def interval_ms_for(self, sym: str, wall_ms: int) -> int:
        """Funding interval in *data* milliseconds (replay: spacing of the rows)."""
        if self.replay is not None and sym in self.replay:
            times = self.replay_times[sym]
            if len(times) < 2:
                return 8 * 3600 * 1000
            i = self._replay_index(sym, wall_ms)
            j = min(i + 1, len(times) - 1)
            if j == i:
                return times[i] - times[i - 1]
            return times[j] - times[i]
        return self.interval_override.get(sym, self.interval_ms)

    def interval_hours(self, sym: str, wall_ms: int) -> float | int:
        hours = self.interval_ms_for(sym, wall_ms) / 3_600_000
        return int(hours) if hours == int(hours) else round(hours, 10)

    def next_funding_ms(self, sym: str, wall_ms: int) -> int:
        if self.replay is not None and sym in self.replay:
            times = self.replay_times[sym]
            dt = self.data_time(wall_ms)
            i = bisect.bisect_right(times, dt)
            if i < len(times):
                return max(self.wall_time(times[i]), wall_ms + 1)
            # past the end: keep the last spacing going
            step = self.interval_ms_for(sym, wall_ms)
            k = (dt - times[-1]) // step + 1
            return max(self.wall_time(times[-1] + k * step), wall_ms + 1)
        iv = self.interval_override.get(sym, self.interval_ms)
        return (wall_ms // iv + 1) * iv

    # ---- books ----------------------------------------------------------------------------
    def book_for(self, sym: str) -> BookConfig:
        """The venue's book shape with ``sym``'s overrides (:data:`BOOK_FIELDS`) applied."""
        over = self.book_override.get(sym)
        return dataclasses.replace(self.book, **over) if over else self.book

    def set_book_override(self, sym: str, key: str, value: Decimal | str | None) -> None:
        """Set one :data:`BOOK_FIELDS` key for ``sym``; None restores the venue default."""
        over = self.book_override.setdefault(sym, {})
        if value is None:
            over.pop(BOOK_FIELDS[key], None)
        else:
            over[BOOK_FIELDS[key]] = D(str(value))
        if not over:
            del self.book_override[sym]

    def book_overrides(self, sym: str) -> dict[str, str | None]:
        """``sym``'s overrides by :data:`BOOK_FIELDS` key (None = venue default), to persist."""
        over = self.book_override.get(sym, {})
        return {k: (str(over[f]) if f in over else None) for k, f in BOOK_FIELDS.items()}

    def depth(self, sym: str, wall_ms: int, limit: int | None = None) -> tuple[list, list]:
        spec = self.specs[sym]
        mark = self.mark(sym, wall_ms)
        book = self.book_for(sym)
        n = book.levels if limit is None else min(limit, book.levels)
        qty = floor_step(book.level_notional / mark, spec.step)
        if qty < spec.min_qty:
            qty = spec.min_qty
        bids, asks = [], []
        for i in range(n):
            off = (book.half_spread_bps + book.level_step_bps * i) / D(10000)
            bid = (mark * (1 - off) / spec.tick).to_integral_value(rounding="ROUND_FLOOR") * spec.tick
            ask = (mark * (1 + off) / spec.tick).to_integral_value(rounding="ROUND_CEILING") * spec.tick
            if bids and bid >= bids[-1][0]:
                bid = bids[-1][0] - spec.tick
            if asks and ask <= asks[-1][0]:
                ask = asks[-1][0] + spec.tick
            if bid > 0:
                bids.append((bid, qty))
            asks.append((ask, qty))
        return bids, asks
