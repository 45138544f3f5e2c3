"""Hyperliquid wire helpers of the simulator: coins and asset indices, size and price rules,
the venue's error texts (the core raises Binance codes), order / fill / funding JSON, and the
dialect's per-venue state (used nonces, the hourly funding default).

Every core symbol (``BTC/USDT:USDT``, id ``BTCUSDT``) is the perpetual whose coin is its base
(``BTC``) at its index in the venue's symbol list; ccxt calls it ``BTC/USDC:USDC``. The wallet is
USDC (the core's single USDT account, renamed). ``szDecimals`` is the number of decimals of
the core's quantity step."""

from __future__ import annotations

import hashlib
import re
import weakref
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from aiohttp import web

from config.settings import DEMO_API_KEY, DEMO_HL_WALLET

from ..errors import SimError
from ..records import Order, SymbolSpec, Trade, fmt

D = Decimal
HOUR_MS = 3_600_000
MAX_DECIMALS = 6  # perpetuals
MIN_ORDER_VALUE = D(10)
CLOID_RE = re.compile(r"^0x[0-9a-fA-F]{32}$")
ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
#: nonces are accepted within (venue time − 2 days, venue time + 1 day), as on Hyperliquid
NONCE_PAST_MS = 2 * 86_400_000
NONCE_FUTURE_MS = 86_400_000
NONCES_KEPT = 100  # Hyperliquid keeps the 100 highest nonces per signer
TIF = {"Gtc": "GTC", "Ioc": "IOC", "Alo": "ALO"}
TIF_OUT = {"GTC": "Gtc", "IOC": "Ioc", "ALO": "Alo", "GTX": "Alo"}
DESERIALIZE = "Failed to deserialize the JSON body into the target type"


def bad_request() -> web.HTTPException:
    """Hyperliquid's answer to a body it cannot read (HTTP 422, plain text)."""
    return web.HTTPUnprocessableEntity(text=DESERIALIZE)


# ---- per-venue state --------------------------------------------------------------------------
@dataclass
class HlState:
    nonces: set[int] = field(default_factory=set)


_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def state(sim) -> HlState:
    """This venue's dialect state (funding is hourly by the dialect's own interval, see
    ``endpoints.DIALECT``, unless ``--funding-interval`` says otherwise)."""
    st = _STATE.get(sim)
    if st is None:
        st = _STATE[sim] = HlState()
    return st


def wallet(sim) -> str:
    """The account's wallet address (lower case): ``--api-key``; the demo key means the demo wallet."""
    key = sim.opts.api_key
    return (DEMO_HL_WALLET if key == DEMO_API_KEY else str(key)).lower()


def is_user(sim, user: object) -> bool:
    return isinstance(user, str) and user.lower() == wallet(sim)


# ---- symbols ----------------------------------------------------------------------------------
def unified(spec: SymbolSpec) -> str:
    return f"{spec.base}/USDC:USDC"


def specs(sim) -> list[SymbolSpec]:
    return list(sim.market.specs.values())


def asset_of(sim, sym: str) -> int:
    return list(sim.market.specs).index(sym)


def spec_by_asset(sim, a: object) -> SymbolSpec | None:
    if isinstance(a, bool) or not isinstance(a, int):
        return None
    ss = specs(sim)
    return ss[a] if 0 <= a < len(ss) else None


def spec_by_coin(sim, coin: object) -> SymbolSpec | None:
    for s in sim.market.specs.values():
        if s.base == coin:
            return s
    return None


def sz_decimals(spec: SymbolSpec) -> int:
    return spec.qty_precision


# ---- numbers ----------------------------------------------------------------------------------
def dec(v: object) -> Decimal | None:
    """A positive finite decimal from a wire string, else None."""
    if not isinstance(v, str | int) or isinstance(v, bool):
        return None
    try:
        d = D(str(v))
    except ArithmeticError:
        return None
    return d if d.is_finite() else None


def price_ok(px: Decimal, szd: int) -> bool:
    """Hyperliquid's price rule: integers always; otherwise at most 5 significant figures and
    at most ``6 − szDecimals`` decimals."""
    if px <= 0:
        return False
    if px == px.to_integral_value():
        return True
    t = px.normalize().as_tuple()
    return -t.exponent <= MAX_DECIMALS - szd and len(t.digits) <= 5


def hl_round(px: Decimal, szd: int, up: bool) -> Decimal:
    """The nearest valid price at or below (at or above with ``up``) ``px``."""
    rounding = ROUND_CEILING if up else ROUND_FLOOR
    if px >= 100_000:
        return px.to_integral_value(rounding=rounding)
    exp = max(px.adjusted() - 4, -(MAX_DECIMALS - szd))
    q = D(1).scaleb(exp)
    return (px / q).to_integral_value(rounding=rounding) * q


def hl_book(levels: list[tuple[Decimal, Decimal]], szd: int, up: bool, n: int = 20) -> list[dict]:
    """Core book levels regrouped on valid prices (bids down, asks up), as ``{px, sz, n}``."""
    out: list[dict] = []
    last = None
    for px, q in levels:
        p = hl_round(px, szd, up)
        if last is not None and p == last[0]:
            last[1] += q
            last[2] += 1
        else:
            if len(out) == n:
                break
            last = [p, q, 1]
            out.append(last)  # type: ignore[arg-type]
    return [{"px": fmt(p), "sz": fmt(q), "n": k} for p, q, k in out]  # type: ignore[misc]


def to_tick(px: Decimal, tick: Decimal, up: bool) -> Decimal:
    return (px / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR) * tick


# ---- errors -----------------------------------------------------------------------------------
def message(e: SimError, asset: int | None = None) -> str:
    """The text Hyperliquid answers for the core's (Binance-coded) refusal; ccxt's hyperliquid
    table maps these to the same exception classes as on the real venue."""
    a = f" asset={asset}" if asset is not None else ""
    texts = {
        -2019: "Insufficient margin to place order.",
        -2022: "Reduce only order would increase position.",
        -4164: "Order must have minimum value of $10.",
        -1111: "Order has invalid size.",
        -1013: "Order has invalid size.",
        -4003: "Order has zero size.",
        -4131: "Order price cannot be more than 80% away from the reference price",
        -4016: "Order price cannot be more than 80% away from the reference price",
        -4017: "Order price cannot be more than 80% away from the reference price",
        -2011: "Order was never placed, already canceled, or filled.",
        -2013: "Order was never placed, already canceled, or filled.",
        -4116: "Order has a duplicate cloid.",
        -4141: "Trading is halted.",
        -4140: "Trading is halted; only reduce-only orders are accepted.",
        -2010: "Order rejected (simulated fault).",
        -5022: "Post only order would have immediately matched.",
        -1121: "Unknown asset.",
    }
    return texts.get(e.code, e.msg) + a


def render_error(e: SimError, now_ms: int):
    """Action-level refusals as ``{"status": "err", "response": text}`` (HTTP 200); rate limits
    and server-side failures (5xx: dropped responses, look-up faults) as a bare status."""
    if e.status == 429 or e.status >= 500:
        return None, e.status
    return {"status": "err", "response": message(e)}, 200


# ---- JSON ---------------------------------------------------------------------------------------
def cloid_of(o: Order) -> str | None:
    return o.client_order_id if CLOID_RE.match(o.client_order_id) else None


def order_status(o: Order) -> str:
    if o.is_open:
        return "open"
    if o.status == "FILLED":
        return "filled"
    if o.status == "EXPIRED":
        if o.time_in_force == "IOC":
            return "canceled" if o.executed_qty else "iocCancelRejected"
        if o.post_only and not o.executed_qty:
            return "badAloPxRejected"  # matched late (execute_late_ms) and would have taken liquidity
        if o.reduce_only:
            return "reduceOnlyCanceled"  # a resting reduce-only order whose position is gone
        return "rejected"
    return "canceled"


def order_json(o: Order, spec: SymbolSpec, frontend: bool = True) -> dict:
    d = {"coin": spec.base, "side": "B" if o.side == "BUY" else "A", "limitPx": fmt(o.price),
         "sz": fmt(o.orig_qty - o.executed_qty),
         "oid": o.order_id, "timestamp": o.time, "origSz": fmt(o.orig_qty), "cloid": cloid_of(o)}
    if frontend:
        d.update(triggerCondition="N/A", isTrigger=False, triggerPx="0.0", children=[], isPositionTpsl=False,
                 reduceOnly=o.reduce_only, orderType="Limit", tif=TIF_OUT.get(o.time_in_force, "Gtc"))
    return d


def tx_hash(*parts: object) -> str:
    return "0x" + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def start_positions(trades: list[Trade]) -> dict[int, Decimal]:
    """Trade id → the position in its symbol before that fill (all fills replayed in order)."""
    pos: dict[str, Decimal] = {}
    out = {}
    for t in sorted(trades, key=lambda t: t.id):
        p = pos.get(t.symbol, D(0))
        out[t.id] = p
        pos[t.symbol] = p + (t.qty if t.side == "BUY" else -t.qty)
    return out


def fill_dir(start: Decimal, side: str, qty: Decimal) -> str:
    end = start + (qty if side == "BUY" else -qty)
    if start == 0 or (start > 0) == (end > 0) and abs(end) > abs(start):
        return "Open Long" if end > 0 else "Open Short"
    if end != 0 and (start > 0) != (end > 0):
        return "Long > Short" if start > 0 else "Short > Long"
    return "Close Long" if start > 0 else "Close Short"


def fill_json(t: Trade, spec: SymbolSpec, start: Decimal, o: Order | None) -> dict:
    d = {"coin": spec.base, "px": fmt(t.price), "sz": fmt(t.qty), "side": "B" if t.side == "BUY" else "A",
         "time": t.time, "startPosition": fmt(start), "dir": fill_dir(start, t.side, t.qty),
         "closedPnl": fmt(t.realized_pnl), "hash": tx_hash("fill", t.id), "oid": t.order_id, "crossed": not t.maker,
         "fee": fmt(t.commission), "tid": t.id, "feeToken": "USDC"}
    if o is not None and cloid_of(o):
        d["cloid"] = cloid_of(o)
    return d
