"""Pure accounting and matching for the simulated venue. Decimal only, no I/O, no clock.

The engine holds one USDT account in one-way position mode: cross margin by default,
isolated for symbols set to ISOLATED (margin allocated to the position, ``Position.iso_margin``;
``wallet`` is the total wallet balance, the cross wallet is ``wallet`` minus isolated margins). Every public
method that mutates state returns a :class:`Mutation` listing what changed so the caller
can persist it (write-through) before answering the client.

Price band (the PERCENT_PRICE filter of exchangeInfo, as Binance USD-M applies it around the
mark price): a MARKET order whose fills would reach beyond ``mark × PERCENT_PRICE_UP`` (BUY) or
``mark × PERCENT_PRICE_DOWN`` (SELL) is refused whole with -4131 before anything fills (it never
existed: its client id stays free); a LIMIT order priced beyond the band is refused with -4016
(BUY) / -4017 (SELL), naming the limit on the tick. A LIMIT IOC fills what the book has within its
price and expires the rest.

Resting orders: a LIMIT order that is still open after it was placed (GTC, or post-only ``GTX``)
is kept in :attr:`Engine.resting`, the book of open orders per symbol, and fills later as a
maker when the price path crosses it (:func:`venues.sim.resting.match_resting`). A post-only
order that would take liquidity when it arrives is refused with -5022 (Binance USD-M: nothing
is stored) or, with ``keep_killed`` (Bybit, OKX), kept as an EXPIRED order that never traded.
Fills of orders taking liquidity pay ``taker_fee``, fills of resting orders ``maker_fee``.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from .errors import SimError, err_invalid_symbol, err_margin, err_order_not_found, err_reduce_only
from .records import (
    ZERO,
    Income,
    Mutation,
    Order,
    OrderRequest,
    Position,
    SymbolSpec,
    Trade,
    floor_step,
    fmt,
    q8,
)

__all__ = ["MMR", "PERCENT_PRICE_DOWN", "PERCENT_PRICE_UP", "Engine", "Mutation", "Order", "OrderRequest", "SimError",
           "SymbolSpec", "fmt"]

MMR = Decimal("0.004")  # maintenance margin rate of symbols without a spec
#: PERCENT_PRICE filter of every symbol (exchangeInfo advertises these, multiplierDecimal 4)
PERCENT_PRICE_UP = Decimal("1.0500")
PERCENT_PRICE_DOWN = Decimal("0.9500")


class Engine:
    """Single-account USDT-M futures book keeping."""

    def __init__(
        self,
        specs: dict[str, SymbolSpec],
        *,
        wallet: Decimal = Decimal(100000),
        taker_fee: Decimal = Decimal("0.0005"),
        maker_fee: Decimal = Decimal("0.0002"),
        default_leverage: int = 20,
    ) -> None:
        self.specs = specs
        self.wallet = wallet
        self.taker_fee = taker_fee
        self.maker_fee = maker_fee
        self.default_leverage = default_leverage
        self.leverage: dict[str, int] = {}
        self.isolated: set[str] = set()  # symbols whose marginType is ISOLATED
        self.positions: dict[str, Position] = {}
        self.orders: dict[int, Order] = {}
        self.orders_by_client: dict[tuple[str, str], list[int]] = {}
        #: the book of resting orders: symbol → order id → open LIMIT order, matched on every tick
        self.resting: dict[str, dict[int, Order]] = {}
        self.trades: list[Trade] = []
        self.income: list[Income] = []
        self.next_order_id = 8_389_765_000_000_000_001
        self.next_trade_id = 5_000_000_001
        self.next_tran_id = 9_000_000_001
        self.wallet_update_time = 0

    # ---- loading ------------------------------------------------------------------------
    def load(self, *, wallet=None, leverage=None, positions=(), orders=(), trades=(), income=()) -> None:
        if wallet is not None:
            self.wallet = wallet
        if leverage:
            self.leverage.update(leverage)
        for p in positions:
            self.positions[p.symbol] = p
        for o in orders:
            self.index_order(o)
            if o.is_open and o.type == "LIMIT":
                self.rest(o)
            self.next_order_id = max(self.next_order_id, o.order_id + 1)
        for t in trades:
            self.trades.append(t)
            self.next_trade_id = max(self.next_trade_id, t.id + 1)
        for i in income:
            self.income.append(i)
            self.next_tran_id = max(self.next_tran_id, i.tran_id + 1)
        self.trades.sort(key=lambda t: t.id)
        self.income.sort(key=lambda i: i.tran_id)

    def index_order(self, o: Order) -> None:
        self.orders[o.order_id] = o
        self.orders_by_client.setdefault((o.symbol, o.client_order_id), []).append(o.order_id)

    def rest(self, o: Order) -> None:
        """Put an open LIMIT order in the book of resting orders."""
        self.resting.setdefault(o.symbol, {})[o.order_id] = o

    def unrest(self, o: Order) -> None:
        book = self.resting.get(o.symbol)
        if book is not None:
            book.pop(o.order_id, None)
            if not book:
                del self.resting[o.symbol]

    def fee_rate(self, maker: bool) -> Decimal:
        return self.maker_fee if maker else self.taker_fee

    # ---- queries ------------------------------------------------------------------------
    def get_leverage(self, sym: str) -> int:
        return self.leverage.get(sym, self.default_leverage)

    def mmr(self, sym: str) -> Decimal:
        spec = self.specs.get(sym)
        return spec.mmr if spec else MMR

    def is_isolated(self, sym: str) -> bool:
        return sym in self.isolated

    def cross_wallet(self) -> Decimal:
        return self.wallet - sum((p.iso_margin for p in self.positions.values()), ZERO)

    def _cross(self):
        return [p for p in self.positions.values() if p.qty and p.symbol not in self.isolated]

    def cross_unrealized(self, marks: dict[str, Decimal]) -> Decimal:
        return sum((p.qty * (marks[p.symbol] - p.entry) for p in self._cross()), ZERO)

    def reserve_order_id(self) -> int:
        oid = self.next_order_id
        self.next_order_id += 1
        return oid

    def unindex_order(self, o: Order) -> None:
        self.unrest(o)
        self.orders.pop(o.order_id, None)
        ids = self.orders_by_client.get((o.symbol, o.client_order_id), [])
        if o.order_id in ids:
            ids.remove(o.order_id)

    def position(self, sym: str) -> Position:
        return self.positions.get(sym) or Position(sym)

    def find_order(self, sym: str, order_id: int | None = None, client_id: str | None = None) -> Order:
        if order_id is not None:
            o = self.orders.get(order_id)
            if o is None or o.symbol != sym:
                raise err_order_not_found()
            return o
        ids = self.orders_by_client.get((sym, client_id or ""), [])
        if not ids:
            raise err_order_not_found()
        return self.orders[max(ids)]

    def open_orders(self, sym: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if o.is_open and (sym is None or o.symbol == sym)]

    def unrealized(self, marks: dict[str, Decimal]) -> Decimal:
        total = ZERO
        for p in self.positions.values():
            if p.qty:
                total += p.qty * (marks[p.symbol] - p.entry)
        return total

    def position_initial_margin(self, marks: dict[str, Decimal]) -> Decimal:
        return sum(
            (abs(p.qty) * marks[p.symbol] / self.get_leverage(p.symbol) for p in self.positions.values() if p.qty),
            ZERO,
        )

    def open_order_initial_margin(self) -> Decimal:
        total = ZERO
        for o in self.open_orders():
            rem = o.orig_qty - o.executed_qty
            total += rem * o.price / self.get_leverage(o.symbol)
        return total

    def maint_margin(self, marks: dict[str, Decimal]) -> Decimal:
        return sum((abs(p.qty) * marks[p.symbol] * self.mmr(p.symbol) for p in self.positions.values() if p.qty), ZERO)

    def available(self, marks: dict[str, Decimal]) -> Decimal:
        """Cross wallet + cross uPnL - cross position margin - open-order margin (isolated
        positions carry their own margin and their uPnL does not count)."""
        cross_im = sum((abs(p.qty) * marks[p.symbol] / self.get_leverage(p.symbol) for p in self._cross()), ZERO)
        return self.cross_wallet() + self.cross_unrealized(marks) - cross_im - self.open_order_initial_margin()

    def cross_base(self, marks: dict[str, Decimal]) -> Decimal:
        """The cross wallet plus every cross position's uPnL less its maintenance margin: what
        :meth:`liquidation_price` starts from. Computed once per answer that lists many
        positions (each position's own term is then taken off), not once per position: at 1,000
        positions the per-position sum made one positions read cost ~0.3 s of CPU."""
        wb = self.cross_wallet()
        for o in self._cross():
            m = marks[o.symbol]
            wb += o.qty * (m - o.entry) - abs(o.qty) * m * self.mmr(o.symbol)
        return wb

    def liquidation_price(self, sym: str, marks: dict[str, Decimal], base: Decimal | None = None) -> Decimal:
        """Binance's USD-M formula (one-way mode, first bracket so cum = 0):
        LP = (WB - TMM1 + UPNL1 + cumB - side*pos*EP) / (pos*MMR - side*pos), where WB is the
        cross wallet and TMM1/UPNL1 cover the other cross positions; isolated: WB is the
        position's isolated wallet and TMM1 = UPNL1 = 0."""
        p = self.position(sym)
        if not p.qty:
            return ZERO
        if self.is_isolated(sym):
            wb = p.iso_margin
        else:  # the cross base less this position's own term: O(1) when ``base`` is given
            base = self.cross_base(marks) if base is None else base
            m = marks[sym]
            wb = base - (p.qty * (m - p.entry) - abs(p.qty) * m * self.mmr(sym))
        denom = abs(p.qty) * self.mmr(sym) - p.qty
        if denom == 0:
            return ZERO
        lp = (wb - p.qty * p.entry) / denom
        if lp <= 0:
            return ZERO
        return lp

    def price_band(self, sym: str, mark: Decimal) -> tuple[Decimal, Decimal]:
        """(lowest SELL, highest BUY) price the PERCENT_PRICE filter lets execute around
        ``mark``, on the tick (the band's edges rounded inwards)."""
        tick = self.specs[sym].tick
        lo = (mark * PERCENT_PRICE_DOWN / tick).to_integral_value(rounding=ROUND_CEILING) * tick
        hi = (mark * PERCENT_PRICE_UP / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
        return lo, hi

    # ---- trading ------------------------------------------------------------------------
    def _apply_fill(self, sym: str, signed_qty: Decimal, price: Decimal, now_ms: int) -> Decimal:
        """Update the position; return realized PnL of the reducing part."""
        p = self.positions.get(sym) or Position(sym)
        realized = ZERO
        iso = self.is_isolated(sym)
        lev = self.get_leverage(sym)
        if p.qty == 0 or (p.qty > 0) == (signed_qty > 0):
            new_qty = p.qty + signed_qty
            p.entry = (p.qty * p.entry + signed_qty * price) / new_qty
            if iso:  # the opening part's initial margin moves from the cross wallet to the position
                p.iso_margin = q8(p.iso_margin + abs(signed_qty) * price / lev)
            p.qty = new_qty
        else:
            closing = min(abs(signed_qty), abs(p.qty))
            direction = Decimal(1) if p.qty > 0 else Decimal(-1)
            realized = closing * (price - p.entry) * direction
            new_qty = p.qty + signed_qty
            if iso:  # released margin returns to the cross wallet
                p.iso_margin = ZERO if closing == abs(p.qty) else q8(p.iso_margin * (1 - closing / abs(p.qty)))
            if new_qty == 0:
                p.entry = ZERO
            elif (new_qty > 0) != (p.qty > 0):
                p.entry = price  # flipped through zero
                if iso:
                    p.iso_margin = q8(abs(new_qty) * price / lev)
            p.qty = new_qty
        p.update_time = now_ms
        self.positions[sym] = p
        return realized

    def validate(self, req: OrderRequest, mark: Decimal | None = None) -> SymbolSpec:
        """The checks Binance makes when it accepts an order (symbol, side, type, filters,
        duplicate open client id; with ``mark``, a LIMIT price inside the price band);
        raises SimError, returns the symbol's spec."""
        spec = self.specs.get(req.symbol)
        if spec is None:
            raise err_invalid_symbol()
        if req.side not in ("BUY", "SELL"):
            raise SimError(-1117, "Invalid side.")
        if req.type not in ("MARKET", "LIMIT"):
            raise SimError(-1116, "Invalid orderType.")
        if req.qty <= 0:
            raise SimError(-4003, "Quantity less than or equal to zero.")
        if req.qty % spec.step != 0:
            raise SimError(-1111, "Precision is over the maximum defined for this asset.")
        if req.qty < spec.min_qty:
            raise SimError(-1013, "Filter failure: LOT_SIZE")
        max_qty = spec.market_max_qty if req.type == "MARKET" else spec.max_qty
        if req.qty > max_qty:
            raise SimError(-1013, "Filter failure: LOT_SIZE" if req.type == "LIMIT" else "Filter failure: MARKET_LOT_SIZE")
        if req.type == "LIMIT":
            if req.price is None or req.price <= 0:
                raise SimError(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
            if req.price % spec.tick != 0:
                raise SimError(-1111, "Precision is over the maximum defined for this asset.")
            if mark is not None:
                lo, hi = self.price_band(req.symbol, mark)
                if req.side == "BUY" and req.price > hi:
                    raise SimError(-4016, f"Limit price can't be higher than {hi:.{spec.price_precision}f}.")
                if req.side == "SELL" and req.price < lo:
                    raise SimError(-4017, f"Limit price can't be lower than {lo:.{spec.price_precision}f}.")
        for oid in self.orders_by_client.get((req.symbol, req.client_order_id), []):
            if self.orders[oid].is_open:
                raise SimError(-4116, "ClientOrderId is duplicated.")
        return spec

    def place(
        self,
        req: OrderRequest,
        book_side: list[tuple[Decimal, Decimal]],
        marks: dict[str, Decimal],
        now_ms: int,
        *,
        fill_ratio: Decimal | None = None,
        order_id: int | None = None,
        keep_killed: bool = False,
    ) -> tuple[Order, Mutation]:
        """Validate and execute one order against ``book_side`` (asks for BUY, bids for SELL,
        best first). Raises SimError on rejection (nothing changes then). A post-only order
        that would take liquidity is refused with -5022, or with ``keep_killed`` stored EXPIRED."""
        spec = self.validate(req, marks.get(req.symbol))
        qty = req.qty
        sign = Decimal(1) if req.side == "BUY" else Decimal(-1)
        pos = self.position(req.symbol)
        if req.reduce_only:
            if pos.qty == 0 or (pos.qty > 0) == (sign > 0):
                raise err_reduce_only()
            qty = min(qty, abs(pos.qty))
        ref_price = req.price if req.type == "LIMIT" else marks[req.symbol]
        if not req.reduce_only and qty * ref_price < spec.min_notional:
            raise SimError(-4164, f"Order's notional must be no smaller than {fmt(spec.min_notional)} (unless you choose reduce only).")
        post_only = req.type == "LIMIT" and req.time_in_force == "GTX"
        if post_only and book_side and (book_side[0][0] <= req.price if sign > 0 else book_side[0][0] >= req.price):
            if not keep_killed:
                raise SimError(-5022, "Due to the order could not be executed as maker, the Post Only order will be "
                                      "rejected. The order will not be recorded in the order history")
            order = req.order(order_id if order_id is not None else self.reserve_order_id(), now_ms, qty)
            order.status = "EXPIRED"
            self.index_order(order)
            return order, Mutation(orders=[order])
        # plan fills
        target = qty
        if fill_ratio is not None and req.type == "MARKET":
            # a partial fill is part of the order, never none of it: at least one lot (what a thin
            # book gives a market order; an order of one lot fills whole)
            target = max(floor_step(qty * fill_ratio, spec.step), min(qty, spec.step)) if fill_ratio > 0 else ZERO
        fills: list[tuple[Decimal, Decimal]] = []
        left = ZERO if post_only else target
        for price, avail in book_side:
            if left <= 0:
                break
            if req.type == "LIMIT" and ((sign > 0 and price > req.price) or (sign < 0 and price < req.price)):
                break
            take = min(left, avail)
            if take > 0:
                fills.append((price, take))
                left -= take
        if req.type == "MARKET" and fills:
            lo, hi = self.price_band(req.symbol, marks[req.symbol])
            if (sign > 0 and max(p for p, _ in fills) > hi) or (sign < 0 and min(p for p, _ in fills) < lo):
                raise SimError(-4131, "The counterparty's best price does not meet the PERCENT_PRICE filter limit.")
        filled_qty = sum((f[1] for f in fills), ZERO)
        notional = sum((p * q for p, q in fills), ZERO)
        # margin check: only the part that increases exposure needs margin
        if not req.reduce_only:
            closing = min(qty, abs(pos.qty)) if pos.qty and (pos.qty > 0) != (sign > 0) else ZERO
            opening_qty = qty - closing
            est_price = notional / filled_qty if filled_qty else ref_price
            need = opening_qty * max(est_price, ref_price) / self.get_leverage(req.symbol)
            need += notional * self.taker_fee
            if opening_qty > 0 and need > self.available(marks):
                raise err_margin()
        # execute
        mut = Mutation()
        oid = order_id if order_id is not None else self.reserve_order_id()
        order = req.order(oid, now_ms, qty)
        for price, fq in fills:
            self.fill(order, price, fq, now_ms, mut, maker=False)
        if order.executed_qty == order.orig_qty:
            order.status = "FILLED"
        elif req.type == "LIMIT" and req.time_in_force in ("GTC", "GTX"):
            order.status = "PARTIALLY_FILLED" if order.executed_qty else "NEW"
            self.rest(order)
        else:
            order.status = "EXPIRED"
        self.index_order(order)
        mut.orders.append(order)
        return order, mut

    def fill(self, order: Order, price: Decimal, qty: Decimal, now_ms: int, mut: Mutation, *, maker: bool) -> None:
        """Book one fill of ``order``: position, trade, realized PnL and the fee (maker or taker)
        as income rows, wallet; recorded in ``mut``."""
        sign = Decimal(1) if order.side == "BUY" else Decimal(-1)
        realized = q8(self._apply_fill(order.symbol, sign * qty, price, now_ms))
        quote = price * qty
        fee = q8(quote * self.fee_rate(maker))
        tid = self.next_trade_id
        self.next_trade_id += 1
        trade = Trade(tid, order.order_id, order.symbol, order.side, price, qty, quote, fee, realized, now_ms, maker)
        self.trades.append(trade)
        mut.trades.append(trade)
        self.wallet += realized - fee
        if realized:
            mut.income.append(self._income(order.symbol, "REALIZED_PNL", realized, now_ms, str(tid)))
        mut.income.append(self._income(order.symbol, "COMMISSION", -fee, now_ms, str(tid)))
        order.executed_qty += qty
        order.cum_quote += quote
        pos = self.positions[order.symbol]
        if not any(p is pos for p in mut.positions):
            mut.positions.append(pos)
        mut.wallet = True
        self.wallet_update_time = now_ms

    def cancel(self, order: Order, now_ms: int) -> Mutation:
        if not order.is_open:
            raise SimError(-2011, "Unknown order sent.")
        order.status = "CANCELED"
        order.update_time = now_ms
        self.unrest(order)
        return Mutation(orders=[order])

    def _income(self, sym: str, kind: str, amount: Decimal, now_ms: int, trade_id: str = "") -> Income:
        inc = Income(self.next_tran_id, sym, kind, amount, now_ms, trade_id, kind)
        self.next_tran_id += 1
        self.income.append(inc)
        return inc

    def settle_funding(self, sym: str, mark: Decimal, rate: Decimal, now_ms: int) -> Mutation:
        """Pay/charge the open position: amount = -signed_qty * mark * rate (8 dp)."""
        mut = Mutation()
        p = self.positions.get(sym)
        if p is None or p.qty == 0:
            return mut
        amount = q8(-p.qty * mark * rate)
        self.wallet += amount
        self.wallet_update_time = now_ms
        if self.is_isolated(sym):  # an isolated position pays and receives funding in its own margin
            p.iso_margin += amount
            mut.positions.append(p)
        mut.income.append(self._income(sym, "FUNDING_FEE", amount, now_ms))
        mut.wallet = True
        return mut
