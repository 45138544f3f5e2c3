"""What the backtest works on: the replayed series, the book and venue models, its parameters and
its trade record. Pure data and small pure functions (``domain.backtest`` runs them).

The models, stated once:

* **Book** (:class:`BookModel`): the paper venue's default book around the mark — ``levels``
  levels each side, the first ``half_spread_bps`` from the mark, then one every
  ``level_step_bps``, ``level_notional_usd`` of base quantity on each (no tick rounding). A
  fill walks it with :func:`domain.edge.walk_book`; slippage is ``|average − mark| × qty``.
* **Fees**: each venue's taker fee on every fill's notional (fill price × qty).
* **Margin and liquidation** (:func:`liquidation_price`): cross margin, each leg backed by the
  margin it posted at the open (notional / leverage); the price where that margin less the
  maintenance margin (``maintenance_margin`` × notional) is lost. Halving a leg keeps its
  margin, so it moves the liquidation price away, as on a cross-margin account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from domain.edge import EdgeParams, Level
from domain.replay_data import ReplayRow
from domain.risk import RiskLimits

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)
EIGHT_H_MS = 8 * 3_600_000


@dataclass(frozen=True)
class BookModel:
    levels: int = 20
    half_spread_bps: Decimal = Decimal("1")
    level_step_bps: Decimal = Decimal("1")
    level_notional_usd: Decimal = Decimal("50000")

    def book(self, mark: Decimal) -> tuple[list[Level], list[Level]]:
        """(bids, asks), best first, around ``mark``."""
        qty = self.level_notional_usd / mark
        bids, asks = [], []
        for i in range(self.levels):
            off = (self.half_spread_bps + self.level_step_bps * i) / BPS
            bids.append(Level(mark * (ONE - off), qty))
            asks.append(Level(mark * (ONE + off), qty))
        return bids, asks


@dataclass(frozen=True)
class HoldRules:
    """The trade's hold rules (``config.HoldParams``) in ms."""

    exit_spread_bps: Decimal = ZERO
    exit_checks: int = 3
    monitor_interval_ms: int = 10_000
    max_hold_ms: int = 7 * 86_400_000
    reduce_liq_distance: Decimal = Decimal("0.10")
    close_liq_distance: Decimal = Decimal("0.05")
    reduce_cooldown_ms: int = 60_000


@dataclass(frozen=True)
class BacktestParams:
    edge: EdgeParams  # the scanner's (ScannerParams.edge_params() at time_scale 1)
    limits: RiskLimits  # the scanner's portfolio gates
    hold: HoldRules = field(default_factory=HoldRules)
    cycle_ms: int = 30_000  # scanner.cycle_s
    top_n_books: int = 3
    max_candidates: int = 50  # accepted candidates a scan hands back (ScannerParams.max_candidates)
    leverage: int = 3
    margin_buffer: Decimal = Decimal("1.1")
    max_order_notional_usd: Decimal = Decimal("10000")
    taker_fees: Mapping[str, Decimal] = field(default_factory=dict)
    default_taker_fee: Decimal = Decimal("0.0005")
    book: BookModel = field(default_factory=BookModel)
    qty_step: Decimal = Decimal("0.001")
    min_qty: Decimal = Decimal("0.001")
    min_notional: Decimal = Decimal("5")
    maintenance_margin: Decimal = Decimal("0.004")
    capital_per_venue_usd: Decimal = Decimal("100000")  # the paper venue's starting wallet
    max_trades_bound: int = 5  # hindsight bound: symbols per instant (limits.max_open_trades)

    def fee(self, venue: str) -> Decimal:
        return self.taker_fees.get(venue, self.default_taker_fee)


class Series:
    """One venue's settlements of one symbol, time-ordered; prices carried forward (and
    back-filled before the first known one), as the paper venue replays them."""

    __slots__ = ("venue", "symbol", "times", "rates", "prices", "i")

    def __init__(self, venue: str, symbol: str, rows: list[tuple[int, Decimal, Decimal | None]]) -> None:
        by_t = {r[0]: r for r in rows}  # a time given twice: its last row (a settlement happens once)
        rows = [by_t[t] for t in sorted(by_t)]
        self.venue, self.symbol = venue, symbol
        self.times = [r[0] for r in rows]
        self.rates = [r[1] for r in rows]
        first = next((r[2] for r in rows if r[2] is not None), None)
        prices: list[Decimal] = []
        last = first
        for r in rows:
            last = r[2] if r[2] is not None else last
            prices.append(last if last is not None else ZERO)
        self.prices = prices
        self.i = -1  # index of the latest settlement at or before the engine's clock

    def interval_after(self, i: int) -> int:
        """Spacing to the next settlement (what the venue quotes as its interval at row ``i``)."""
        t = self.times
        if len(t) < 2:
            return EIGHT_H_MS
        return t[i + 1] - t[i] if i + 1 < len(t) else t[i] - t[i - 1]

    def interval_before(self, i: int) -> int:
        """The period settlement ``i`` pays for: since the previous one (the first: the next gap)."""
        t = self.times
        if len(t) < 2:
            return EIGHT_H_MS
        return t[i] - t[i - 1] if i > 0 else t[1] - t[0]


def load_series(rows: Iterable[ReplayRow], start_ms: int | None = None,
                end_ms: int | None = None) -> dict[tuple[str, str], Series]:
    """``{(venue, symbol): Series}`` of the rows within ``[start_ms, end_ms]``."""
    grouped: dict[tuple[str, str], list[tuple[int, Decimal, Decimal | None]]] = {}
    for r in rows:
        if (start_ms is not None and r.t_ms < start_ms) or (end_ms is not None and r.t_ms > end_ms):
            continue
        grouped.setdefault((r.venue, r.symbol), []).append((r.t_ms, r.rate, r.price))
    return {k: Series(k[0], k[1], v) for k, v in sorted(grouped.items())}


def liquidation_price(side: str, qty: Decimal, entry: Decimal, margin: Decimal, mmr: Decimal) -> Decimal | None:
    """Where a leg of ``qty`` entered at ``entry`` and backed by ``margin`` is liquidated."""
    if qty <= 0:
        return None
    if side == "long":
        p = (qty * entry - margin) / (qty * (ONE - mmr))
        return p if p > 0 else None
    return (qty * entry + margin) / (qty * (ONE + mmr))


@dataclass
class Fill:
    price: Decimal
    slippage_usd: Decimal
    fee_usd: Decimal


@dataclass
class BtTrade:
    """One backtested trade; money in USD, times in data ms."""

    trade_id: str
    symbol: str
    long_venue: str
    short_venue: str
    opened_ms: int
    qty: Decimal  # at the open
    notional_usd: Decimal
    entry_edge_bps: Decimal  # net bps over the horizon, after the books
    entry_long: Decimal  # marks at the open (price moves are measured from them)
    entry_short: Decimal
    margin_long: Decimal
    margin_short: Decimal
    held: Decimal = ZERO  # quantity held now (reductions halve it)
    funding_usd: Decimal = ZERO
    fees_usd: Decimal = ZERO
    slippage_usd: Decimal = ZERO
    basis_usd: Decimal = ZERO  # realised price PnL of both legs, measured from mark to mark
    closed_ms: int | None = None
    exit_reason: str | None = None
    emergency: bool = False
    settlements: list[tuple[int, str, Decimal, Decimal, Decimal]] = field(default_factory=list)
    # (time, venue, qty, mark, amount received) for each funding payment
    reductions: int = 0
    # hold-state (the workflow's TradeCarry counters)
    gen: int = 0
    low_since_tick: int | None = None
    last_reduce_ms: int = 0
    dist_at_reduce: Decimal | None = None
    monitor_at: int | None = None

    def open_basis(self, mark_long: Decimal, mark_short: Decimal) -> Decimal:
        """Price PnL of what is still held, at these marks (0 once closed)."""
        return self.held * ((mark_long - self.entry_long) + (self.entry_short - mark_short))

    def net(self, mark_long: Decimal | None = None, mark_short: Decimal | None = None) -> Decimal:
        """funding − fees − slippage + price PnL; an open trade marked at the given marks."""
        basis = self.basis_usd
        if self.closed_ms is None and mark_long is not None and mark_short is not None:
            basis += self.open_basis(mark_long, mark_short)
        return self.funding_usd - self.fees_usd - self.slippage_usd + basis


@dataclass
class Curve:
    """The run over time, one point per instant that changed something."""

    t_ms: list[int] = field(default_factory=list)
    equity: list[Decimal] = field(default_factory=list)  # net: closed + open marked to market
    funding: list[Decimal] = field(default_factory=list)  # cumulative
    fees: list[Decimal] = field(default_factory=list)
    slippage: list[Decimal] = field(default_factory=list)
