"""Limit, post-only and IOC orders through the gateway (:meth:`venues.gateway.Gateway.place_limit_order`),
open orders, and cancels that answer with the order's final state.

The safety rules are the market orders' (:meth:`Gateway.place_market_order`): at most once per
client order id (a look-up before any resend, "not found" trusted only after the validity window,
:mod:`venues.placing`), quantity rounded down to the step, min qty / min notional checked before
anything is sent (the notional at the order's own price), a market-metadata refusal reloads the
markets and sends once more when they changed. The price is rounded to the tick in the safe
direction: a BUY's down, a SELL's up (rounding never makes an order more aggressive).

What each dialect sends (the adapter's :meth:`Adapter.limit_params`, ccxt ``create_order(...,
"limit", ...)``): post-only as ccxt's own ``postOnly`` (Binance ``timeInForce=GTX``, Bybit
``timeInForce=PostOnly``, OKX ``ordType=post_only``, Hyperliquid ``tif=Alo``), otherwise
``timeInForce`` GTC / IOC (Binance GTC / IOC, Bybit GTC / IOC, OKX ``ordType`` limit / ioc,
Hyperliquid ``tif`` Gtc / Ioc).

A post-only order that would take liquidity comes back, in every dialect, as an
:class:`OrderResult` with status EXPIRED and ``filled_qty`` 0 (never an error): Binance (-5022)
and Hyperliquid ("Post only order would have immediately matched") refuse it without recording
it (``venue_order_id`` is then ""), Bybit (``EC_PostOnlyWillTakeLiquidity``) and OKX
(``cancelSource`` 31) create and cancel it, and the gateway reads it back: the venue removed it
under its time-in-force, exactly as an IOC's remainder (:func:`venues.parse.order_status` maps
those two cancellations to EXPIRED in every later read as well). CANCELED stays "cancelled by a
cancel request".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

from domain.ids import is_valid_client_order_id
from venues import placing
from venues.errors import (
    InvalidOrder,
    OrderNotFound,
    VenueError,
    is_post_only_refusal,
)
from venues.models import MarketInfo, OrderResult, OrderStatus, Side
from venues.placing import now_ms

if TYPE_CHECKING:
    from venues.gateway import Gateway

log = logging.getLogger(__name__)

TIME_IN_FORCE = ("GTC", "IOC")


def limit_price(m: MarketInfo, side: Side, price: Decimal) -> Decimal:
    """``price`` on the market's tick, never more aggressive: a BUY's rounded down, a SELL's up."""
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    ticks = (price / m.price_tick).to_integral_value(rounding=rounding)
    return (ticks * m.price_tick).quantize(m.price_tick)


def _check_args(gw: Gateway, cid: Any, qty: Any, price: Any, post_only: bool, tif: str) -> None:
    if not isinstance(cid, str) or not is_valid_client_order_id(cid):
        raise InvalidOrder(f"{gw.name}: client order id must be 1-32 characters of [A-Za-z0-9], got {cid!r}",
                           venue=gw.name)
    for name, value in (("qty", qty), ("price", price)):
        if not isinstance(value, Decimal):
            raise TypeError(f"{name} must be Decimal, got {type(value).__name__}")
    if tif not in TIME_IN_FORCE:
        raise InvalidOrder(f"{gw.name}: time_in_force must be one of {TIME_IN_FORCE}, got {tif!r}", venue=gw.name)
    if post_only and tif != "GTC":
        raise InvalidOrder(f"{gw.name}: a post-only order rests (GTC), it cannot be {tif}", venue=gw.name)
    if not price > 0:
        raise InvalidOrder(f"{gw.name}: limit price must be > 0, got {price}", venue=gw.name)


async def place_limit(
    gw: Gateway, symbol: str, side: Side | str, qty: Decimal, price: Decimal, cid: str, *,
    post_only: bool, time_in_force: str, reduce_only: bool, lookup_first: bool,
) -> OrderResult:
    """See :meth:`Gateway.place_limit_order`."""
    tif = str(time_in_force).upper()
    _check_args(gw, cid, qty, price, post_only, tif)
    side = Side(side)

    def price_of(m: MarketInfo) -> Decimal:
        px = limit_price(m, side, price)
        if px <= 0:
            raise InvalidOrder(f"{gw.name}: limit price {price} rounds to {px} (tick {m.price_tick})", venue=gw.name)
        return px

    return await placing.at_most_once(
        gw, symbol, qty, cid, side, reduce_only, lookup_first, price_of,
        lambda m, contracts, base_qty, px: _send_limit(gw, m, side, contracts, base_qty, px, cid, post_only, tif,
                                                       reduce_only))


async def _send_limit(
    gw: Gateway, m: MarketInfo, side: Side, contracts: Decimal, base_qty: Decimal, px: Decimal, cid: str,
    post_only: bool, tif: str, reduce_only: bool,
) -> OrderResult:
    vcid = gw._vcid(cid)
    params = {**gw.adapter.order_params(vcid, reduce_only), **gw.adapter.limit_params(post_only, tif)}
    try:
        order = await gw._sends.send(vcid, lambda: gw._call(
            "create_order", m.symbol, "limit", side.value, str(contracts), str(px), params))
    except VenueError as err:
        if post_only and is_post_only_refusal(err):  # Binance -5022, Hyperliquid: refused, not recorded
            log.info("venue %s: post-only %s at %s would take liquidity: expired (%s)", gw.name, cid, px, err)
            return OrderResult(venue=gw.name, symbol=m.symbol, client_order_id=cid, venue_order_id="", side=side,
                               reduce_only=reduce_only, status=OrderStatus.EXPIRED, requested_qty=base_qty,
                               filled_qty=Decimal(0), avg_price=None, fee=Decimal(0), timestamp_ms=now_ms())
        if not err.outcome_unknown:
            raise
        log.warning("venue %s: placing %s: outcome unknown (%s); looking it up", gw.name, cid, err.type_name)
        try:
            found = await gw._confirm_absent(m.symbol, cid)
        except VenueError:
            raise err from None
        if found is None:
            raise err from None
        return found.model_copy(update={"duplicate_prevented": True})
    result = gw._order_result(order, m, requested=base_qty, side=side, reduce_only=reduce_only, client_order_id=cid)
    if tif == "IOC":  # ends at once: poll until the venue says it closed; what did not fill expired
        result = await placing.await_market_close(result, gw.get_order)
        if result.is_closed and result.status is not OrderStatus.REJECTED and result.filled_qty < base_qty:
            result = result.model_copy(update={"status": OrderStatus.EXPIRED})  # (OKX / Hyperliquid: canceled)
        return result
    if not order.get("status"):  # an acknowledgement only (Bybit, OKX): read the order's state back
        latest = await gw.get_order(m.symbol, cid)
        if latest is not None:
            result = latest.model_copy(update={"requested_qty": base_qty})
    return result


async def open_orders(gw: Gateway, symbol: str, client_order_ids: Iterable[str] | None = None) -> list[OrderResult]:
    """The venue's open orders in ``symbol``. Client ids are the venue's form
    (``adapter.venue_client_id``) except those named in ``client_order_ids``, reported as ours."""
    m = await gw.market(symbol)
    ours = {gw._vcid(c).lower(): c for c in client_order_ids or ()}
    out = []
    for o in await gw._call("fetch_open_orders", symbol) or []:
        cid = ours.get(str(o.get("clientOrderId") or "").lower())
        out.append(gw._order_result(o, m, client_order_id=cid) if cid else
                   gw._order_result(o, m).model_copy(update={"client_order_id": str(o.get("clientOrderId") or "")}))
    return out


async def cancel(gw: Gateway, symbol: str, cid: str) -> OrderResult | None:
    """See :meth:`Gateway.cancel_order`: the order's final state, None when the venue does not know it."""
    m = await gw.market(symbol)
    try:
        order = await gw._call("cancel_order", None, symbol, gw.adapter.lookup_params(gw._vcid(cid)))
    except OrderNotFound:  # Binance answers -2011 "Unknown order" also for orders that already filled
        return await gw.get_order(symbol, cid)
    except VenueError as err:  # "too late to cancel" / "already filled" refusals of other dialects
        if err.retryable:
            raise
        found = await gw.get_order(symbol, cid)
        if found is None or not found.is_closed:
            raise
        return found
    if order.get("status") in ("canceled", "cancelled", "closed", "expired", "rejected") and order.get("id"):
        return gw._order_result(order, m, client_order_id=cid)
    # an acknowledgement only (Bybit, OKX, Hyperliquid): read the final state back
    found = await placing.await_market_close(gw._order_result(order, m, client_order_id=cid), gw.get_order)
    return found
