"""Pure parsers: ccxt answers (plain dicts) → the typed models of :mod:`venues.models`.

No I/O and no clock here: whatever a parser needs besides the ccxt answer (the market, the
venue's dialect, "now") is passed in by :class:`venues.gateway.Gateway`.

* Every ccxt value is parsed with ``Decimal(str(value))``, never ``Decimal(float)`` (:func:`D`).
* Quantities leave in *base units*: contracts are converted with the market's ``contract_size``.
* ``binance_dialect``: the venue speaks Binance USD-M (kind ``sim``, ``binanceusdm``,
  ``binance``); the raw ``info`` fields (``origQty``, ``executedQty``, ``avgPrice``,
  ``positionAmt``, ``income`` ...) are then preferred over ccxt's unified floats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import ccxt

from domain.rounding import contracts_to_base
from venues.errors import BadSymbol
from venues.history import income_id
from venues.models import (
    Balance,
    BookLevel,
    Fill,
    FundingInfo,
    FundingPayment,
    MarketInfo,
    OrderBook,
    OrderResult,
    OrderStatus,
    Position,
    Side,
)

DEFAULT_INTERVAL_HOURS = Decimal(8)

RAW_STATUS = {
    "NEW": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "CANCELLED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}


# --- scalars ------------------------------------------------------------------------------
def D(value: Any) -> Decimal | None:
    """Decimal from a ccxt value via ``str()`` (never from a float's binary value)."""
    if value is None or value == "":
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def d0(value: Any) -> Decimal:
    """:func:`D`, with 0 for a missing or unparsable value."""
    d = D(value)
    return Decimal(0) if d is None else d


def interval_hours(text: Any) -> Decimal | None:
    """'8h' → 8, '30m' → 0.5, '1d' → 24, 4 → 4."""
    if text is None:
        return None
    s = str(text).strip().lower()
    factor = Decimal(1)
    if s.endswith("h"):
        s = s[:-1]
    elif s.endswith("m"):
        s, factor = s[:-1], Decimal(1) / Decimal(60)
    elif s.endswith("d"):
        s, factor = s[:-1], Decimal(24)
    d = D(s)
    if d is None or d <= 0:
        return None
    return d * factor


def precision_step(value: Any, precision_mode: int) -> Decimal | None:
    """A ccxt ``precision`` entry as a step: digits under ``DECIMAL_PLACES``, else the step."""
    d = D(value)
    if d is None or d <= 0:
        return None
    if precision_mode == ccxt.DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(d))
    return d  # TICK_SIZE (binance in ccxt 4.5, most others)


# --- markets and market data --------------------------------------------------------------
def market_info(m: Mapping[str, Any], precision_mode: int) -> MarketInfo | None:
    """One ``load_markets`` entry; None unless it is a linear perpetual with steps. Markets
    the venue does not trade right now are kept, with ``active`` False and their status."""
    if not (m.get("swap") and m.get("linear")):
        return None
    cs = D(m.get("contractSize")) or Decimal(1)
    precision = m.get("precision") or {}
    limits = m.get("limits") or {}
    amount_step = precision_step(precision.get("amount"), precision_mode)
    price_tick = precision_step(precision.get("price"), precision_mode)
    if amount_step is None or price_tick is None:
        return None
    min_amount = D((limits.get("amount") or {}).get("min")) or amount_step
    min_cost = D((limits.get("cost") or {}).get("min")) or Decimal(0)
    info = m.get("info") or {}
    status = info.get("status") or info.get("contractStatus") or info.get("state")
    return MarketInfo(
        symbol=m["symbol"],
        venue_symbol=str(m["id"]),
        contract_size=cs,
        qty_step=amount_step * cs,
        min_qty=min_amount * cs,
        min_notional=min_cost,
        price_tick=price_tick,
        active=m.get("active") is not False,
        status=str(status) if status is not None else None,
        **price_band(info),
    )


def price_band(info: Mapping[str, Any]) -> dict[str, Decimal]:
    """``price_band_up`` / ``price_band_down`` from a Binance market's PERCENT_PRICE filter
    (``multiplierUp`` / ``multiplierDown``, given to ``multiplierDecimal`` places); empty when
    the market has none (other venues) or the values are unusable."""
    filters = info.get("filters")
    if not isinstance(filters, list):
        return {}
    f = next((f for f in filters if isinstance(f, Mapping) and f.get("filterType") == "PERCENT_PRICE"), None)
    up, down = (D(f.get("multiplierUp")), D(f.get("multiplierDown"))) if f else (None, None)
    if up is None or down is None or not (0 < down < 1 < up):
        return {}
    return {"price_band_up": up, "price_band_down": down}


def markets(raw: Mapping[str, Mapping[str, Any]], precision_mode: int) -> dict[str, MarketInfo]:
    """``load_markets`` → the linear perpetual markets by ccxt symbol."""
    return {s: m for s, m in ((s, market_info(m, precision_mode)) for s, m in raw.items()) if m}


def funding_info(
    symbol: str, fr: Mapping[str, Any], *, known_interval: Decimal | None, now_ms: int
) -> FundingInfo | None:
    """One ``fetch_funding_rates`` entry; None without rate, mark or next funding time.
    The interval is the entry's own, else ``known_interval``, else 8 hours."""
    rate = D(fr.get("fundingRate"))
    mark = D(fr.get("markPrice"))
    nxt = fr.get("fundingTimestamp") or fr.get("nextFundingTimestamp")
    if rate is None or mark is None or nxt is None:
        return None
    interval = interval_hours(fr.get("interval")) or known_interval or DEFAULT_INTERVAL_HOURS
    return FundingInfo(
        symbol=symbol,
        rate=rate,
        interval_hours=interval,
        next_funding_ms=int(nxt),
        mark_price=mark,
        index_price=D(fr.get("indexPrice")),
        timestamp_ms=int(fr.get("timestamp") or now_ms),
    )


def funding_intervals(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Decimal]:
    """``fetch_funding_intervals`` → hours by symbol (entries without a usable interval dropped)."""
    return {s: h for s, h in ((s, interval_hours(fr.get("interval"))) for s, fr in raw.items()) if h is not None}


def order_book(raw: Mapping[str, Any], symbol: str, contract_size: Decimal, depth: int, *, now_ms: int) -> OrderBook:
    def levels(rows: list[list[Any]]) -> list[BookLevel]:
        return [BookLevel(price=d0(r[0]), qty=contracts_to_base(d0(r[1]), contract_size)) for r in rows[:depth]]

    return OrderBook(
        symbol=symbol,
        bids=levels(raw.get("bids") or []),
        asks=levels(raw.get("asks") or []),
        timestamp_ms=int(raw.get("timestamp") or now_ms),
    )


# --- account ------------------------------------------------------------------------------
def balance(raw: Mapping[str, Any], currency: str = "USDT") -> Balance:
    """``fetch_balance`` → the balance of ``currency`` (the venue's settlement currency: USDT,
    Hyperliquid USDC); a missing one of free/used/total is derived."""
    usdt = raw.get(currency) or {}
    free, used, total = D(usdt.get("free")), D(usdt.get("used")), D(usdt.get("total"))
    if total is None:
        total = (free or Decimal(0)) + (used or Decimal(0))
    if free is None:
        free = total - (used or Decimal(0))
    if used is None:
        used = total - free
    return Balance(currency=currency, total=total, free=free, used=used)


def signed_contracts(p: Mapping[str, Any], *, binance_dialect: bool) -> Decimal:
    """A ``fetch_positions`` entry's signed size in contracts (Binance: ``positionAmt``)."""
    signed = D((p.get("info") or {}).get("positionAmt")) if binance_dialect else None
    if signed is None:
        contracts = d0(p.get("contracts"))
        signed = -contracts if p.get("side") == "short" else contracts
    return signed


def unknown_position_symbols(
    raw: Iterable[Mapping[str, Any]], markets: Mapping[str, MarketInfo], *, binance_dialect: bool
) -> set[str]:
    """Symbols of open ``fetch_positions`` entries that are not in ``markets``."""
    return {
        str(p.get("symbol"))
        for p in raw
        if p.get("symbol") not in markets and signed_contracts(p, binance_dialect=binance_dialect) != 0
    }


def positions(
    raw: Iterable[Mapping[str, Any]],
    markets: Mapping[str, MarketInfo],
    symbols: list[str] | None = None,
    *,
    binance_dialect: bool,
) -> list[Position]:
    """``fetch_positions`` → open (non-zero) positions (in ``symbols`` when given), signed
    quantity in base units. Nothing is dropped for its market: a position in an inactive
    market is returned as any other; one in a market missing from ``markets`` keeps the
    symbol ccxt gave it (the raw venue symbol) with ``market_known`` False, in base units
    when the venue says them (Binance ``positionAmt``, ccxt's ``contractSize``), else
    :class:`BadSymbol` is raised (never a silent "flat")."""
    out: list[Position] = []
    for p in raw:
        symbol = str(p.get("symbol"))
        if symbols is not None and symbol not in symbols:
            continue
        info = p.get("info") or {}
        signed = signed_contracts(p, binance_dialect=binance_dialect)
        if signed == 0:
            continue
        known = symbol in markets
        if known:
            cs = markets[symbol].contract_size
        elif binance_dialect and D(info.get("positionAmt")) is not None:
            cs = Decimal(1)  # USD-M positionAmt is in base units
        else:
            cs_raw = D(p.get("contractSize"))
            if cs_raw is None:
                raise BadSymbol(f"position in {symbol!r}: market unknown to the gateway, contract size unknown")
            cs = cs_raw
        qty = contracts_to_base(signed, cs)
        out.append(
            Position(
                symbol=symbol,
                qty=qty,
                entry_price=d0(info.get("entryPrice") if binance_dialect else None) or d0(p.get("entryPrice")),
                mark_price=D(p.get("markPrice")),
                unrealized_pnl=d0(p.get("unrealizedPnl")),
                liquidation_price=D(p.get("liquidationPrice")) or None,
                leverage=D(p.get("leverage")),
                market_known=known,
            )
        )
    return out


def one_way_mode(raw: Mapping[str, Any]) -> bool:
    """``fetch_position_mode`` → True when the account nets long and short (no hedge mode)."""
    return not bool(raw.get("hedged"))


# --- orders -------------------------------------------------------------------------------
#: a post-only order the venue created and cancelled because it would have taken liquidity:
#: Bybit's rejectReason, OKX's cancelSource (reported EXPIRED, as Binance / Hyperliquid refusals)
POST_ONLY_CANCEL_REASONS = (("rejectReason", "EC_PostOnlyWillTakeLiquidity"), ("cancelSource", "31"))


def order_status(o: Mapping[str, Any], info: Mapping[str, Any], filled: Decimal) -> OrderStatus:
    """The venue's raw status when known, else ccxt's unified one; a post-only order cancelled
    by the venue because it would have taken liquidity is EXPIRED."""
    if any(str(info.get(k) or "") == v for k, v in POST_ONLY_CANCEL_REASONS):
        return OrderStatus.EXPIRED
    raw = str(info.get("status") or "").upper()
    if raw in RAW_STATUS:
        return RAW_STATUS[raw]
    unified = o.get("status")
    if unified == "open":
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.NEW
    if unified == "closed":
        return OrderStatus.FILLED
    if unified in ("canceled", "cancelled"):
        return OrderStatus.CANCELED
    if unified == "expired":
        return OrderStatus.EXPIRED
    if unified == "rejected":
        return OrderStatus.REJECTED
    return OrderStatus.NEW


def order_result(
    o: Mapping[str, Any],
    m: MarketInfo,
    *,
    venue: str,
    binance_dialect: bool,
    taker_fee: Decimal,
    now_ms: int,
    requested: Decimal | None = None,
    side: Side | None = None,
    reduce_only: bool | None = None,
    client_order_id: str | None = None,
    own_client_id: bool = False,
) -> OrderResult:
    """A ccxt order (``create_order`` / ``fetch_order`` / ``cancel_order``) → OrderResult.

    ``requested`` / ``side`` / ``reduce_only`` / ``client_order_id`` are what the caller sent,
    used where the answer does not say; with ``own_client_id`` (the venue knows the order under
    another form of the id, e.g. Hyperliquid's hex cloid) ``client_order_id`` is reported. Without a fee in the answer (Binance order answers
    carry none) the fee is estimated with ``taker_fee``."""
    info = o.get("info") if isinstance(o.get("info"), Mapping) else {}  # Hyperliquid's cancel: "success"
    cs = m.contract_size
    amount = D(info.get("origQty")) if binance_dialect else None
    if amount is None:
        amount = D(o.get("amount"))
    filled = D(info.get("executedQty")) if binance_dialect else None
    if filled is None:
        filled = d0(o.get("filled"))
    avg = D(info.get("avgPrice")) if binance_dialect else None
    if avg is None or avg == 0:
        avg = D(o.get("average"))
    if avg is not None and avg == 0:
        avg = None
    filled_base = contracts_to_base(filled, cs)
    status = order_status(o, info, filled)
    fee_obj = o.get("fee") or {}
    fee = D(fee_obj.get("cost")) if isinstance(fee_obj, dict) else None
    if fee is None:
        # Binance order answers carry no commission: estimate with the configured taker
        # fee; fills() has the venue's exact commission.
        fee = filled_base * avg * taker_fee if avg is not None else Decimal(0)
    ro = o.get("reduceOnly")
    if ro is None:
        ro = info.get("reduceOnly")
    ts = o.get("lastUpdateTimestamp") or o.get("timestamp") or info.get("updateTime") or now_ms
    return OrderResult(
        venue=venue,
        symbol=m.symbol,
        client_order_id=str((client_order_id if own_client_id else None) or o.get("clientOrderId")
                            or client_order_id or ""),
        venue_order_id=str(o.get("id") or ""),
        side=Side(o.get("side") or (side.value if side else "buy")),
        reduce_only=bool(reduce_only if ro is None else ro in (True, "true", "True")),
        status=status,
        requested_qty=requested if requested is not None else contracts_to_base(d0(amount), cs),
        filled_qty=filled_base,
        avg_price=avg,
        fee=fee,
        timestamp_ms=int(ts),
        created_ms=int(o["timestamp"]) if o.get("timestamp") and o.get("lastUpdateTimestamp") else None,
    )


# --- history ------------------------------------------------------------------------------
def funding_payments(
    raw: Iterable[Mapping[str, Any]], symbol: str | None = None, *, binance_dialect: bool, sign: int = 1
) -> list[FundingPayment]:
    """``fetch_funding_history`` → signed payments (> 0 received), of ``symbol`` when given,
    oldest first. ``sign`` -1: the venue reports a payment made as positive (Bybit's execFee)."""
    out = [
        FundingPayment(
            symbol=str(r.get("symbol")),
            amount=sign * (d0((r.get("info") or {}).get("income") if binance_dialect else None)
                           or d0(r.get("amount"))),
            timestamp_ms=int(r.get("timestamp") or 0),
            income_id=income_id(r) or f"{r.get('symbol')}@{int(r.get('timestamp') or 0)}",
        )
        for r in raw
        if (symbol is None or r.get("symbol") == symbol)
    ]
    return sorted(out, key=lambda p: p.timestamp_ms)


def fills(raw: Iterable[Mapping[str, Any]], m: MarketInfo) -> list[Fill]:
    """``fetch_my_trades`` → our executions in market ``m``, oldest first."""
    out: list[Fill] = []
    for t in raw:
        info = t.get("info") or {}
        fee = t.get("fee") or {}
        out.append(
            Fill(
                symbol=m.symbol,
                venue_order_id=str(t.get("order") or ""),
                trade_id=str(t.get("id") or ""),
                side=Side(t.get("side")),
                qty=contracts_to_base(d0(t.get("amount")), m.contract_size),
                price=d0(t.get("price")),
                fee=d0(fee.get("cost") if isinstance(fee, dict) else None),
                # Binance realizedPnl, OKX fillPnl, Hyperliquid closedPnl (fees apart); Bybit: none
                realized_pnl=d0(info.get("realizedPnl") or info.get("fillPnl") or info.get("closedPnl")),
                timestamp_ms=int(t.get("timestamp") or 0),
                maker={"maker": True, "taker": False}.get(str(t.get("takerOrMaker") or "")),
            )
        )
    return sorted(out, key=lambda f: f.timestamp_ms)
