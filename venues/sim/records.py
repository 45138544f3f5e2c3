"""Records of the simulated venue (Decimal only, no I/O): symbol specs, positions, orders,
trades, income, the :class:`Mutation` a state change returns, and decimal formatting."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal

ZERO = Decimal(0)
Q8 = Decimal("0.00000001")


def q8(x: Decimal) -> Decimal:
    return x.quantize(Q8)


def fmt(x: Decimal | None) -> str:
    """Plain decimal string without exponent, trailing zeros trimmed (at least one digit)."""
    if x is None:
        return "0"
    s = format(x, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


def floor_step(qty: Decimal, step: Decimal) -> Decimal:
    return (qty / step).to_integral_value(rounding=ROUND_DOWN) * step


@dataclass
class SymbolSpec:
    symbol: str  # unified, BTC/USDT:USDT
    id: str  # BTCUSDT
    base: str
    quote: str
    base_price: Decimal
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal = Decimal(5)
    onboard_ms: int = 1569398400000
    mmr: Decimal = Decimal("0.0065")  # maintenance margin rate of Binance's first bracket
    max_leverage: int = 75  # initial leverage of that bracket

    @property
    def price_precision(self) -> int:
        return max(0, -self.tick.normalize().as_tuple().exponent)

    @property
    def qty_precision(self) -> int:
        return max(0, -self.step.normalize().as_tuple().exponent)

    def round_price(self, p: Decimal) -> Decimal:
        return (p / self.tick).to_integral_value() * self.tick


@dataclass
class Position:
    symbol: str  # venue id
    qty: Decimal = ZERO  # signed, base units
    entry: Decimal = ZERO
    update_time: int = 0
    iso_margin: Decimal = ZERO  # isolatedWallet: margin allocated to an ISOLATED position

    def to_row(self) -> dict:
        return {"symbol": self.symbol, "qty": str(self.qty), "entry": str(self.entry), "update_time": self.update_time,
                "iso_margin": str(self.iso_margin)}

    @classmethod
    def from_row(cls, d: dict) -> Position:
        return cls(d["symbol"], Decimal(d["qty"]), Decimal(d["entry"]), int(d["update_time"]),
                   Decimal(d.get("iso_margin", "0")))


@dataclass
class Order:
    order_id: int
    client_order_id: str
    symbol: str  # venue id
    side: str  # BUY / SELL
    type: str  # MARKET / LIMIT
    orig_qty: Decimal
    price: Decimal = ZERO
    time_in_force: str = "GTC"
    reduce_only: bool = False
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    time: int = 0
    update_time: int = 0
    arrived_ns: int = 0

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def post_only(self) -> bool:
        """Post-only (the core's time in force ``GTX``, Binance's name; Hyperliquid's ``ALO``)."""
        return self.time_in_force in ("GTX", "ALO")

    def to_row(self) -> dict:
        d = asdict(self)
        for k in ("orig_qty", "price", "executed_qty", "cum_quote"):
            d[k] = str(d[k])
        return d

    @classmethod
    def from_row(cls, d: dict) -> Order:
        d = dict(d)
        for k in ("orig_qty", "price", "executed_qty", "cum_quote"):
            d[k] = Decimal(d[k])
        return cls(**d)

    def to_binance(self, spec: SymbolSpec | None = None) -> dict:
        pp = spec.price_precision if spec else 8
        avg = self.avg_price
        avg_s = f"{avg:.{min(pp + 3, 12)}f}" if avg else "0.00"
        return {
            "orderId": self.order_id,
            "symbol": self.symbol,
            "status": self.status,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price) if self.price else "0",
            "avgPrice": avg_s,
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "cumQty": fmt(self.executed_qty),
            "cumQuote": fmt(self.cum_quote),
            "timeInForce": self.time_in_force,
            "type": self.type,
            "reduceOnly": self.reduce_only,
            "closePosition": False,
            "side": self.side,
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": self.type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": self.time,
            "updateTime": self.update_time,
        }


@dataclass
class Trade:
    id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal  # positive = paid
    realized_pnl: Decimal
    time: int
    maker: bool = False  # the fill of a resting order (maker fee); False: it took liquidity

    def to_row(self) -> dict:
        d = asdict(self)
        for k in ("price", "qty", "quote_qty", "commission", "realized_pnl"):
            d[k] = str(d[k])
        return d

    @classmethod
    def from_row(cls, d: dict) -> Trade:
        d = dict(d)
        for k in ("price", "qty", "quote_qty", "commission", "realized_pnl"):
            d[k] = Decimal(d[k])
        return cls(**d)

    def to_binance(self) -> dict:
        return {
            "buyer": self.side == "BUY",
            "commission": fmt(self.commission),
            "commissionAsset": "USDT",
            "id": self.id,
            "maker": self.maker,
            "orderId": self.order_id,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.quote_qty),
            "realizedPnl": fmt(self.realized_pnl),
            "side": self.side,
            "positionSide": "BOTH",
            "symbol": self.symbol,
            "time": self.time,
        }


@dataclass
class Income:
    tran_id: int
    symbol: str
    income_type: str  # FUNDING_FEE / COMMISSION / REALIZED_PNL / INSURANCE_CLEAR / TRANSFER
    income: Decimal
    time: int
    trade_id: str = ""
    info: str = ""

    def to_row(self) -> dict:
        d = asdict(self)
        d["income"] = str(d["income"])
        return d

    @classmethod
    def from_row(cls, d: dict) -> Income:
        d = dict(d)
        d["income"] = Decimal(d["income"])
        return cls(**d)

    def to_binance(self) -> dict:
        return {
            "symbol": self.symbol,
            "incomeType": self.income_type,
            "income": fmt(self.income),
            "asset": "USDT",
            "info": self.info or self.income_type,
            "time": self.time,
            "tranId": self.tran_id,
            "tradeId": self.trade_id,
        }


@dataclass
class Mutation:
    """What changed; the caller persists it."""

    orders: list[Order] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    income: list[Income] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    wallet: bool = False
    meta: dict = field(default_factory=dict)

    def merge(self, other: Mutation) -> None:
        self.orders += other.orders
        self.trades += other.trades
        self.income += other.income
        self.positions += other.positions
        self.wallet = self.wallet or other.wallet
        self.meta.update(other.meta)


@dataclass
class OrderRequest:
    symbol: str
    side: str
    type: str
    qty: Decimal
    client_order_id: str
    reduce_only: bool = False
    price: Decimal | None = None
    time_in_force: str = "GTC"
    arrived_ns: int = 0

    def order(self, order_id: int, now_ms: int, qty: Decimal | None = None) -> Order:
        """The NEW order this request becomes (``qty``: the accepted quantity, default as asked)."""
        return Order(order_id=order_id, client_order_id=self.client_order_id, symbol=self.symbol, side=self.side,
                     type=self.type, orig_qty=self.qty if qty is None else qty, price=self.price or ZERO,
                     time_in_force=self.time_in_force if self.type == "LIMIT" else "GTC",
                     reduce_only=self.reduce_only, time=now_ms, update_time=now_ms, arrived_ns=self.arrived_ns)
