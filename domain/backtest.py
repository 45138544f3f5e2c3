"""Event-driven backtest in virtual (data) time: the scanner's and the trade's decisions, made by
the same domain code, over replayed settlements. Pure: no clock, no I/O, no Temporal.

Events, in time order; at one instant: settlements, then the trades' monitor ticks and exits,
then a scanner cycle.

* **Settlement** (a replay row): the venue's quote moves to that row's rate and mark; every
  open trade with a leg there is paid ``qty × mark × rate`` (the long pays, the short receives).
* **Scanner cycle**, on the ``scanner.cycle_s`` grid: quotes as the paper venue answers them
  (the latest settled rate, the spacing to the next row as the interval, the next row's time)
  → :func:`domain.edge.rank_pairs` → :func:`domain.risk.check_gates` (one pair per symbol, at
  most ``top_n_books``) → :func:`domain.edge.apply_books` on the book model →
  :func:`domain.risk.check_request`, :func:`~domain.risk.check_venues` and
  :func:`~domain.risk.size_pair` → both legs fill on the book model. Between two events the
  scanner's verdicts can only get worse (the settlement lead shrinks), so a cycle runs only at
  the grid points where one can get better: a new settlement, a settlement entering the
  horizon, a close, a cool-down ending, a new UTC day, and one cycle after each opening. The
  trades opened are those a cycle every ``cycle_s`` would open.
* **Monitor tick** (every ``monitor_interval_s`` from the open, evaluated at the first tick
  after a quote of the trade changed): :func:`domain.hedge.liquidation_action` (reduce both legs
  by half, or close) and the spread exit (:func:`domain.funding.spread_bps_8h` below
  ``exit_spread_bps`` for ``exit_checks`` ticks in a row); ``max_hold_s`` at the first loop
  turn past it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from domain.backtest_model import ZERO, BacktestParams, BtTrade, Curve, Fill, Series, liquidation_price
from domain.edge import LegQuote, apply_books, rank_pairs, walk_book
from domain.funding import spread_bps_8h
from domain.hedge import LiqAction, liquidation_action, liquidation_distance
from domain.ids import trade_workflow_id
from domain.risk import OpenTrade, RiskBook, check_gates, check_request, check_venues, size_pair
from domain.rounding import round_down

DAY_MS = 86_400_000
SETTLE, MONITOR, EXIT, CYCLE = 0, 1, 2, 3
TWO = Decimal(2)


@dataclass(frozen=True)
class _Facts:  # what check_venues reads of a venue (domain.risk.VenueFacts)
    venue: str
    error: str | None
    one_way: bool
    position_qty: Decimal
    free_margin: Decimal
    mark_price: Decimal | None
    margin_mode: str = "cross"


@dataclass
class BacktestResult:
    trades: list[BtTrade]
    curve: Curve
    start_ms: int
    end_ms: int
    cycles: int = 0
    refusals: dict[str, int] = field(default_factory=dict)  # opening refusals after the ranking
    peak_margin_usd: Decimal = ZERO

    def marks(self, series: dict[tuple[str, str], Series], t: BtTrade) -> tuple[Decimal, Decimal]:
        lo, sh = series[(t.long_venue, t.symbol)], series[(t.short_venue, t.symbol)]
        return lo.prices[max(lo.i, 0)], sh.prices[max(sh.i, 0)]


class Backtest:
    def __init__(self, series: dict[tuple[str, str], Series], params: BacktestParams) -> None:
        if not series:
            raise ValueError("no replay rows in the chosen period")
        self.series = series
        self.p = params
        self.venues = sorted({v for v, _ in series})
        self.by_symbol: dict[str, list[Series]] = {}
        for s in series.values():
            self.by_symbol.setdefault(s.symbol, []).append(s)
        self.open: list[BtTrade] = []
        self.done: list[BtTrade] = []
        self._q: list[tuple[int, int, int, object]] = []
        self._seq = 0
        self._cycles_at: set[int] = set()
        self._day = -1
        self.trades_today = 0
        self.realized_today = ZERO
        self.consecutive_emergency = 0
        self.last_close_ms: dict[str, int] = {}
        self.refusals: dict[str, int] = {}
        self.curve = Curve()
        self.cum = [ZERO, ZERO, ZERO]  # funding, fees, slippage of every trade so far
        self.realized = ZERO
        self.peak_margin = ZERO
        self.cycles = 0
        self._books: dict[Decimal, tuple] = {}
        self._ids: set[str] = set()  # trade ids started: the scanner's start refuses one again

    # ------------------------------------------------------------------ the queue
    def _push(self, t: int, kind: int, item: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._q, (t, kind, self._seq, item))

    def _cycle_at(self, t: int) -> None:
        c = -(-t // self.p.cycle_ms) * self.p.cycle_ms  # the first grid point at or after t
        if c not in self._cycles_at and c <= self.end:
            self._cycles_at.add(c)
            self._push(c, CYCLE)

    def _tick_at_or_after(self, tr: BtTrade, t: int) -> tuple[int, int]:
        mi = self.p.hold.monitor_interval_ms
        k = max(1, -(-(t - tr.opened_ms) // mi))
        return k, tr.opened_ms + k * mi

    # ------------------------------------------------------------------ run
    def run(self, progress: Callable[[int, int], None] | None = None) -> BacktestResult:
        self.start = min(s.times[0] for s in self.series.values())
        self.end = max(s.times[-1] for s in self.series.values())
        horizon = self.p.edge.horizon_ms
        for s in self.series.values():
            for i, t in enumerate(s.times):
                self._push(t, SETTLE, (s, i))
                self._cycle_at(t)
                if t - horizon > self.start:
                    self._cycle_at(t - horizon)
        for d in range(self.start - self.start % DAY_MS + DAY_MS, self.end + 1, DAY_MS):
            self._cycle_at(d)
        span, n, last_t = max(1, self.end - self.start), 0, None
        while self._q:
            t, kind, _, item = heapq.heappop(self._q)
            if t > self.end:
                break  # the data ends: what still holds stays open (marked at the last prices)
            if last_t is not None and t != last_t:
                self._sample(last_t)
            last_t = t
            if kind == SETTLE:
                self._settle(t, *item)  # type: ignore[misc]
            elif kind == MONITOR:
                self._monitor(t, *item)  # type: ignore[misc]
            elif kind == EXIT:
                self._exit_event(t, *item)  # type: ignore[misc]
            else:
                self._cycle(t)
            n += 1
            if progress is not None and n % 2000 == 0:
                progress(t - self.start, span)
        if last_t is not None:
            self._sample(last_t)
        if progress is not None:
            progress(span, span)
        return BacktestResult(self.done + self.open, self.curve, self.start, self.end, self.cycles,
                              self.refusals, self.peak_margin)

    def close_open(self, reason: str = "END_OF_DATA") -> list[BtTrade]:
        """Close what still holds after :meth:`run`, at the data's end and its last marks, with the
        closing fills' fees and slippage (as a replay does once its data ends); the closed trades."""
        left = list(self.open)
        for tr in left:
            self._close(tr, self.end, reason)
        return left

    def _sample(self, t: int) -> None:
        open_mtm = ZERO
        for tr in self.open:
            ml, ms = self._mark(tr.long_venue, tr.symbol), self._mark(tr.short_venue, tr.symbol)
            open_mtm += tr.net(ml, ms)
        c = self.curve
        c.t_ms.append(t)
        c.equity.append(self.realized + open_mtm)
        c.funding.append(self.cum[0])
        c.fees.append(self.cum[1])
        c.slippage.append(self.cum[2])

    def _mark(self, venue: str, symbol: str) -> Decimal:
        s = self.series[(venue, symbol)]
        return s.prices[max(s.i, 0)]

    # ------------------------------------------------------------------ settlements
    def _settle(self, t: int, s: Series, i: int) -> None:
        s.i = i
        rate, mark = s.rates[i], s.prices[i]
        for tr in self.open:
            if tr.symbol != s.symbol or s.venue not in (tr.long_venue, tr.short_venue):
                continue
            if tr.opened_ms < t:
                amount = tr.held * mark * rate
                got = -amount if s.venue == tr.long_venue else amount
                tr.funding_usd += got
                self.cum[0] += got
                tr.settlements.append((t, s.venue, tr.held, mark, got))
            _, at = self._tick_at_or_after(tr, t)
            if tr.monitor_at != at:
                tr.monitor_at = at
                self._push(at, MONITOR, (tr,))

    # ------------------------------------------------------------------ the hold
    def _monitor(self, t: int, tr: BtTrade) -> None:
        if tr.closed_ms is not None or tr.monitor_at != t:
            return
        tr.monitor_at = None
        h = self.p.hold
        lo, sh = self.series[(tr.long_venue, tr.symbol)], self.series[(tr.short_venue, tr.symbol)]
        ml, ms = lo.prices[lo.i], sh.prices[sh.i]
        mmr = self.p.maintenance_margin
        dists = [d for d in (
            liquidation_distance(ml, liquidation_price("long", tr.held, tr.entry_long, tr.margin_long, mmr)),
            liquidation_distance(ms, liquidation_price("short", tr.held, tr.entry_short, tr.margin_short, mmr)),
        ) if d is not None]
        nearest = min(dists) if dists else None
        act = liquidation_action(nearest, close_below=h.close_liq_distance, reduce_below=h.reduce_liq_distance,
                                 now_ms=t, last_reduce_ms=tr.last_reduce_ms, dist_at_reduce=tr.dist_at_reduce,
                                 cooldown_ms=h.reduce_cooldown_ms)
        if act in (LiqAction.CLOSE, LiqAction.NO_IMPROVEMENT):
            return self._close(tr, t, "LIQUIDATION_RISK", emergency=True)
        if act is LiqAction.REDUCE:
            half = round_down(tr.held / 2, self.p.qty_step)
            if half > 0:
                self._trade_legs(tr, half, closing=True)
                tr.held -= half
                tr.reductions += 1
            tr.last_reduce_ms, tr.dist_at_reduce = t, nearest
        elif act is LiqAction.COOLING:
            pass
        else:
            tr.last_reduce_ms, tr.dist_at_reduce = 0, None
        if act in (LiqAction.REDUCE, LiqAction.COOLING):  # look again once the cool-down is over
            _, at = self._tick_at_or_after(tr, tr.last_reduce_ms + h.reduce_cooldown_ms)
            tr.monitor_at = at
            self._push(at, MONITOR, (tr,))
        spread = spread_bps_8h(lo.rates[lo.i], lo.interval_after(lo.i), sh.rates[sh.i], sh.interval_after(sh.i))
        k = (t - tr.opened_ms) // h.monitor_interval_ms
        if spread < h.exit_spread_bps:
            if tr.low_since_tick is None:
                tr.low_since_tick = k
                tr.gen += 1
                last = k + h.exit_checks - 1
                if last <= k:
                    return self._close(tr, t, "SPREAD_EXIT")
                self._push(tr.opened_ms + last * h.monitor_interval_ms, EXIT, (tr, tr.gen))
        elif tr.low_since_tick is not None:
            tr.low_since_tick = None
            tr.gen += 1

    def _exit_event(self, t: int, tr: BtTrade, gen: int) -> None:
        if tr.closed_ms is not None:
            return
        if gen < 0:
            return self._close(tr, t, "MAX_HOLD")
        if gen == tr.gen:
            self._close(tr, t, "SPREAD_EXIT")

    # ------------------------------------------------------------------ fills
    def _fill(self, venue: str, symbol: str, buy: bool, qty: Decimal) -> Fill:
        mark = self._mark(venue, symbol)
        book = self._books.get(mark)
        if book is None:
            book = self._books[mark] = self.p.book.book(mark)
            if len(self._books) > 4096:
                self._books.clear()
        w = walk_book(book[1] if buy else book[0], mark, qty * mark, self.p.edge.depth_band)
        price = w.avg_price if w.avg_price is not None else mark
        return Fill(price, abs(price - mark) * qty, price * qty * self.p.fee(venue))

    def _trade_legs(self, tr: BtTrade, qty: Decimal, *, closing: bool) -> None:
        """Both legs trade ``qty``: open (buy long, sell short) or close (the other way)."""
        fl = self._fill(tr.long_venue, tr.symbol, not closing, qty)
        fs = self._fill(tr.short_venue, tr.symbol, closing, qty)
        for f in (fl, fs):
            tr.fees_usd += f.fee_usd
            tr.slippage_usd += f.slippage_usd
            self.cum[1] += f.fee_usd
            self.cum[2] += f.slippage_usd
        if closing:
            ml, ms = self._mark(tr.long_venue, tr.symbol), self._mark(tr.short_venue, tr.symbol)
            tr.basis_usd += qty * ((ml - tr.entry_long) + (tr.entry_short - ms))

    def _close(self, tr: BtTrade, t: int, reason: str, *, emergency: bool = False) -> None:
        self._trade_legs(tr, tr.held, closing=True)
        tr.held = ZERO
        tr.closed_ms, tr.exit_reason, tr.emergency = t, reason, emergency
        tr.gen += 1
        self.open.remove(tr)
        self.done.append(tr)
        net = tr.net()
        self.realized += net
        self._new_day(t)
        self.realized_today += net
        self.consecutive_emergency = self.consecutive_emergency + 1 if emergency else 0
        self.last_close_ms[tr.symbol] = t
        self._cycle_at(t + 1)
        self._cycle_at(t + self.p.limits.symbol_cooldown_ms)

    # ------------------------------------------------------------------ the scanner
    def _new_day(self, t: int) -> None:
        day = t // DAY_MS
        if day != self._day:
            self._day, self.trades_today, self.realized_today = day, 0, ZERO

    def _quotes(self, t: int) -> dict[str, list[LegQuote]]:
        stale_at = self.p.edge.stale_after_ms
        out: dict[str, list[LegQuote]] = {}
        for sym, legs in self.by_symbol.items():
            qs = []
            for s in legs:
                i = s.i
                if i < 0:
                    continue
                last = i + 1 >= len(s.times)
                iv = s.interval_after(i)
                qs.append(LegQuote(
                    venue=s.venue, rate=s.rates[i], interval_ms=iv,
                    next_funding_ms=s.times[i] + iv if last else s.times[i + 1],
                    mark_price=s.prices[i],
                    # a venue answers fresh data while its file lasts; past its end it goes stale
                    timestamp_ms=s.times[i] if last and t - s.times[i] > stale_at else t,
                    taker_fee=self.p.fee(s.venue),
                ))
            if len(qs) >= 2:
                out[sym] = qs
        return out

    def _risk_book(self) -> RiskBook:
        return RiskBook(
            open_trades=[OpenTrade(tr.trade_id, tr.symbol, tr.long_venue, tr.short_venue, tr.notional_usd)
                         for tr in self.open],
            trades_today=self.trades_today, realized_today_usd=self.realized_today,
            consecutive_emergency=self.consecutive_emergency, last_close_ms=dict(self.last_close_ms),
        )

    def _refuse(self, code: str) -> None:
        self.refusals[code] = self.refusals.get(code, 0) + 1

    def _cycle(self, t: int) -> None:
        self.cycles += 1
        self._new_day(t)
        p = self.p
        book = self._risk_book()
        notional = p.edge.notional_usd
        # a symbol the portfolio gate refuses for venues that hold nothing (busy, cooling down, the
        # trade count, the day's limits) is refused for every pair of venues: not ranked at all
        quotes = {sym: qs for sym, qs in self._quotes(t).items()
                  if check_gates(sym, "", "", notional, book, p.limits, t) is None}
        if not quotes:
            return
        accepted, _, _ = rank_pairs(quotes, p.edge, t, keep_rejected=False)
        accepted = accepted[: p.max_candidates]  # what the scanner's funding activity hands back
        if not accepted:
            return
        picked, seen = [], set()
        for e in accepted:
            if len(picked) >= p.top_n_books:
                break
            gate = check_gates(e.symbol, e.long_venue, e.short_venue, notional, book, p.limits, t)
            if gate is None and e.symbol in seen:
                continue
            if gate is not None:
                continue
            seen.add(e.symbol)
            picked.append(e)
        opened = False
        for e in picked:
            lb = p.book.book(self._mark(e.long_venue, e.symbol))
            sb = p.book.book(self._mark(e.short_venue, e.symbol))
            full = apply_books(e, lb, sb, p.edge)
            if full.reason is not None:
                self._refuse(full.reason)
                continue
            if check_gates(e.symbol, e.long_venue, e.short_venue, notional, book, p.limits, t) is not None:
                continue
            tid = trade_workflow_id(e.symbol, e.long_venue, e.short_venue, f"s{full.target_settlement_ms}")
            if tid in self._ids:  # one trade per opportunity: that id exists (REJECT_DUPLICATE)
                self._refuse("EXISTING")
                continue
            if self._open(full, t, tid):
                tr = self.open[-1]
                book.add(OpenTrade(tr.trade_id, tr.symbol, tr.long_venue, tr.short_venue, notional))
                opened = True
        if opened:
            self._cycle_at(t + 1)

    def _open(self, e, t: int, trade_id: str) -> bool:
        p, notional = self.p, self.p.edge.notional_usd
        refusal = check_request(e.symbol, e.long_venue, e.short_venue, notional, venues=self.venues,
                                max_order_notional_usd=p.max_order_notional_usd)
        ml, ms = self._mark(e.long_venue, e.symbol), self._mark(e.short_venue, e.symbol)
        if refusal is None:
            facts = [_Facts(v, None, True, self._position(v, e.symbol), self._free_margin(v), m)
                     for v, m in ((e.long_venue, ml), (e.short_venue, ms))]
            refusal = check_venues(e.symbol, notional, leverage=p.leverage, margin_buffer=p.margin_buffer,
                                   max_order_notional_usd=p.max_order_notional_usd, checks=facts)
        if refusal is None:
            from domain.risk import LegMarket

            sizing = size_pair(notional, LegMarket(p.qty_step, p.min_qty, p.min_notional, ml),
                               LegMarket(p.qty_step, p.min_qty, p.min_notional, ms))
            refusal = sizing.refusal
        if refusal is not None:
            self._refuse(refusal.code)
            return False
        qty = sizing.qty
        tr = BtTrade(
            trade_id=trade_id,
            symbol=e.symbol, long_venue=e.long_venue, short_venue=e.short_venue, opened_ms=t, qty=qty,
            notional_usd=notional, entry_edge_bps=e.net_bps, entry_long=ml, entry_short=ms,
            margin_long=qty * ml / p.leverage, margin_short=qty * ms / p.leverage, held=qty,
        )
        self._trade_legs(tr, qty, closing=False)
        self._ids.add(trade_id)
        self.open.append(tr)
        self.trades_today += 1
        margin = sum((o.margin_long + o.margin_short for o in self.open), ZERO)
        self.peak_margin = max(self.peak_margin, margin)
        mi = p.hold.monitor_interval_ms
        self._push(t + -(-p.hold.max_hold_ms // mi) * mi, EXIT, (tr, -1))
        tr.monitor_at = t + mi  # the first monitor tick judges the spread it opened on
        self._push(tr.monitor_at, MONITOR, (tr,))
        return True

    def _position(self, venue: str, symbol: str) -> Decimal:
        return sum((o.held for o in self.open if o.symbol == symbol and venue in (o.long_venue, o.short_venue)),
                   ZERO)

    def _free_margin(self, venue: str) -> Decimal:
        used = sum((o.margin_long if o.long_venue == venue else o.margin_short for o in self.open
                    if venue in (o.long_venue, o.short_venue)), ZERO)
        return self.p.capital_per_venue_usd - used
