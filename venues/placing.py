"""Placing an order at most once: when may a "not found" for a client order id be trusted?

An order request whose answer was lost (timeout, 5xx, dropped connection) may still be in
flight, or accepted and not yet visible (Binance matches asynchronously). The venue refuses a
signed request once its validity window has passed, so a look-up that answers "not found"
*after* that window is definitive; one before it is not. This module keeps what that needs:

* :class:`SendLog` hooks ccxt's request signing on the gateway's exchange instance and records,
  per client order id, the timestamp ccxt put into the signed parameters (``timestamp``,
  ``recvWindow``) and the local clock right after signing, i.e. *after* ccxt's throttle, not
  when the gateway called ``create_order``.
* :class:`Clock` measures the local clock's offset from the venue's (``fetch_time``); after a
  refused timestamp (-1021) ccxt signs with it.
* :func:`confirm_absent` looks the order up, waits out the window, and looks again.

The deadline after which "not found" counts, in local milliseconds (:meth:`SendLog.deadline_ms`)::

    max(signed timestamp, local signing time) + recvWindow
        + max(0, local − venue offset) + offset uncertainty (half the round trip)
        + VENUE_FUTURE_TOLERANCE_MS (1000: Binance accepts timestamps up to 1 s in its future,
          so an unmeasured clock ahead of the venue by up to 1 s goes unnoticed)
        + CLOCK_MARGIN_MS (500)

Without a record of the signing (the request was sent by another process: an activity retry
after a worker died), the window is counted in full from now.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from domain.rounding import base_to_contracts, contracts_to_base, round_down, round_up
from venues.errors import (
    InvalidOrder,
    OrderBelowMinimum,
    OrderOutcomeUnknown,
    VenueError,
    is_market_metadata_error,
)
from venues.models import MarketInfo, OrderBook, OrderResult, Side

if TYPE_CHECKING:
    from venues.gateway import Gateway

log = logging.getLogger(__name__)

T = TypeVar("T")

#: recvWindow sent with signed Binance-dialect requests: the venue refuses (-1021) a request
#: that reaches it later than this after its timestamp.
RECV_WINDOW_MS = 5000
#: Binance accepts a request whose timestamp is up to this far in the venue's future.
VENUE_FUTURE_TOLERANCE_MS = 1000
#: Safety margin on top (processing inside the venue, measurement error).
CLOCK_MARGIN_MS = 500
#: Look-ups of one round: attempts and first backoff (doubles each time).
LOOKUP_ATTEMPTS = 5
LOOKUP_BACKOFF_S = 0.1
#: while the in-flight window runs, the order is looked up this often: a venue that executes late
#: (its answer dropped: the order is unknown until it executes) is found as it executes, not when
#: the window ends (chaos: a close round's leader found 4.1 s after it executed, its follower naked)
IN_FLIGHT_POLL_S = 0.25
#: Client ids remembered per Gateway.
SENT_IDS_KEPT = 10_000
#: How long a clock-offset measurement is trusted (a failed one is retried after 30 s).
CLOCK_TTL_S = 300.0
#: An order refused locally (below the step or minimum) reloads markets loaded longer ago than this.
LOCAL_REFUSAL_RELOAD_S = 5.0

#: The client order id whose request is being placed in this task (read by the sign hook).
_PLACING: contextvars.ContextVar[str | None] = contextvars.ContextVar("hedgeflow_placing_cid", default=None)


def now_ms() -> int:
    return int(time.time() * 1000)


def rounded(m: MarketInfo, qty: Decimal, venue: str, *, whole: bool = False) -> tuple[Decimal, Decimal]:
    """(contracts, base units) of ``qty`` base units rounded down to the step, converted with the
    market's contract size (1 where the venue trades base units); refused below min qty.
    ``whole``: a reduce-only close of everything held, rounded *up* to the step and at least the
    minimum: the venue executes no more than the position (a reduce-only order is capped at it;
    the simulator does so in every dialect, ``venues/sim/engine.py``), so a position that is no multiple of a step that grew since
    it was opened (0.7 on a step of 1.0) still closes instead of being refused forever."""
    step = m.qty_step / m.contract_size
    wanted = base_to_contracts(max(qty, Decimal(0)), m.contract_size)
    if whole and wanted > 0:
        contracts = round_up(max(wanted, base_to_contracts(m.min_qty, m.contract_size)), step)
    else:
        contracts = round_down(wanted, step)
    base_qty = contracts_to_base(contracts, m.contract_size)
    if base_qty <= 0 or base_qty < m.min_qty:
        raise OrderBelowMinimum(f"{venue}: {m.symbol} quantity {qty} rounds down to {base_qty} "
                                f"(step {m.qty_step}), below the minimum quantity {m.min_qty}", venue=venue)
    return contracts, base_qty


async def market_rounded(gw: Gateway, symbol: str, qty: Decimal, whole: bool
                         ) -> tuple[MarketInfo, Decimal, Decimal]:
    """The market and ``rounded`` ``qty`` in it. A local refusal (below the step or minimum) is
    judged on cached filters: unless they were loaded under ``LOCAL_REFUSAL_RELOAD_S`` ago they are
    reloaded once and the quantity judged again (a stale cache is never trusted to refuse for the
    whole ``MARKETS_TTL_S``); a reload that fails leaves the refusal as it was."""
    m = await gw.market(symbol)
    try:
        return (m, *rounded(m, qty, gw.name, whole=whole))
    except OrderBelowMinimum:
        try:
            fresh = (await gw._markets.refresh(min_age_s=LOCAL_REFUSAL_RELOAD_S)).get(symbol)
        except VenueError:
            fresh = None
        if fresh is None or fresh == m:
            raise
        log.warning("venue %s: %s filters changed (step %s, min %s → step %s, min %s)", gw.name, symbol,
                    m.qty_step, m.min_qty, fresh.qty_step, fresh.min_qty)
        return (fresh, *rounded(fresh, qty, gw.name, whole=whole))


async def check_sendable(gw: Gateway, m: MarketInfo, side: Side, base_qty: Decimal, reduce_only: bool,
                         ref_price: Decimal | None) -> None:
    """The checks made before an order is sent, beyond the step: an opening order needs a market the
    venue trades now and its minimum notional (at ``ref_price``, else the book's price)."""
    if reduce_only:
        return  # venues waive the minimum notional for reduce-only orders, not the minimum qty
    if not m.active:
        raise InvalidOrder(f"{gw.name}: {m.symbol} is not trading (status {m.status}); not opening", venue=gw.name)
    if m.min_notional > 0:
        price = ref_price if ref_price and ref_price > 0 else await gw._reference_price(m.symbol, side)
        if price is not None and base_qty * price < m.min_notional:
            raise OrderBelowMinimum(f"{gw.name}: {m.symbol} notional {base_qty} x {price} = "
                                    f"{base_qty * price} is below the minimum notional {m.min_notional}",
                                    venue=gw.name)


def book_price(book: OrderBook, side: Side) -> Decimal | None:
    """The best price on ``side``'s side of ``book`` (a buy's ask), else the other side's."""
    levels, other = (book.asks, book.bids) if side is Side.BUY else (book.bids, book.asks)
    return levels[0].price if levels else (other[0].price if other else None)


@dataclass
class Signed:
    local_ms: int  # local clock right after ccxt signed the request
    signed_ts: int | None  # the ``timestamp`` in the signed parameters
    recv_window_ms: int | None  # the ``recvWindow`` in the signed parameters
    answered: bool = False  # the venue answered this request definitively


def _signed_fields(req: dict[str, Any]) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    url, body = req.get("url"), req.get("body")
    if isinstance(url, str):
        fields.update(parse_qs(urlsplit(url).query))
    if isinstance(body, str) and "=" in body and not body.lstrip().startswith(("{", "[")):
        fields.update(parse_qs(body))
    return fields


def _int(fields: dict[str, list[str]], key: str) -> int | None:
    try:
        return int(fields[key][0])
    except (KeyError, IndexError, ValueError):
        return None


class SendLog:
    """Client ids this Gateway has sent, with the signing record of the latest request."""

    def __init__(self, exchange: Any, keep: int = SENT_IDS_KEPT) -> None:
        self._sent: dict[str, Signed | None] = {}
        self._keep = keep
        original = exchange.sign

        def sign(*args: Any, **kwargs: Any) -> Any:
            req = original(*args, **kwargs)
            cid = _PLACING.get()
            if cid is not None:
                self._record(cid, req)
            return req

        exchange.sign = sign

    def _record(self, cid: str, req: Any) -> None:
        if not isinstance(req, dict):
            return
        text = f"{req.get('url') or ''} {req.get('body') or ''}"
        if cid not in text:
            return  # another request made while placing (markets, time ...)
        fields = _signed_fields(req)
        self._sent[cid] = Signed(now_ms(), _int(fields, "timestamp"), _int(fields, "recvWindow"))

    def remember(self, cid: str) -> None:
        self._sent.setdefault(cid, None)
        while len(self._sent) > self._keep:
            del self._sent[next(iter(self._sent))]

    def knows(self, cid: str) -> bool:
        return cid in self._sent

    def record(self, cid: str) -> Signed | None:
        return self._sent.get(cid)

    async def send(self, cid: str, request: Callable[[], Awaitable[T]]) -> T:
        """Run ``request`` (the order request for ``cid``) with its signing recorded; a
        definitive answer (success, or a refusal that is not "outcome unknown") is noted."""
        self.remember(cid)
        token = _PLACING.set(cid)
        try:
            result = await request()
        except VenueError as exc:
            if not exc.outcome_unknown:
                self._answered(cid)
            raise
        finally:
            _PLACING.reset(token)
        self._answered(cid)
        return result

    def _answered(self, cid: str) -> None:
        rec = self._sent.get(cid)
        if rec is not None:
            rec.answered = True

    def deadline_ms(self, cid: str, *, now: int, window_ms: int, ahead_ms: int) -> int:
        """Local time (ms) after which a "not found" for ``cid`` is definitive (module doc)."""
        margin = max(0, ahead_ms) + VENUE_FUTURE_TOLERANCE_MS + CLOCK_MARGIN_MS
        rec = self._sent.get(cid)
        if rec is None:
            return now + window_ms + margin  # sent elsewhere, if at all: a full window from now
        if rec.answered:
            return rec.local_ms  # the venue has answered that request: nothing is in flight
        start = max(rec.local_ms, rec.signed_ts or 0)
        return start + (rec.recv_window_ms or window_ms) + margin


class Clock:
    """The local clock's offset from the venue's, measured with ``fetch_time``: it widens the
    in-flight deadline, and once the venue has refused a timestamp (-1021, :meth:`resync`)
    ccxt signs with it (``options['timeDifference']``). The one clock measurement."""

    def __init__(self, exchange: Any, call: Callable[..., Awaitable[Any]], venue: str) -> None:
        self._exchange = exchange
        self._call = call
        self._venue = venue
        self.offset_ms = 0  # local − venue
        self.uncertainty_ms = 0
        self._measured_at = float("-inf")
        self._signing = False  # ccxt signs with the measured offset (after a -1021)

    def ahead_ms(self) -> int:
        """How far the local clock may be ahead of the venue's, as far as we know."""
        return max(0, self.offset_ms) + self.uncertainty_ms

    def history_now_ms(self) -> int:
        """"Now" for reading the venue's history, whose rows carry the venue's times: the later
        of our clock and the venue's as last measured. (A venue ahead by more than the
        recvWindow refuses our timestamps, -1021, so its offset is then re-measured.)"""
        return now_ms() - min(0, self.offset_ms)

    async def refresh(self, *, force: bool = False) -> bool:
        """Measure the offset unless a measurement younger than ``CLOCK_TTL_S`` exists (or
        ``force``); True when it was measured now."""
        if not force and time.monotonic() - self._measured_at < CLOCK_TTL_S:
            return False
        if not self._exchange.has.get("fetchTime"):
            self._measured_at = time.monotonic()
            return False
        try:
            before = now_ms()
            server = await self._call("fetch_time")
            after = now_ms()
        except VenueError as exc:
            log.debug("venue %s: clock offset not measured: %s", self._venue, exc.type_name)
            self._measured_at = time.monotonic() - CLOCK_TTL_S + 30.0
            return False
        if server is None:
            return False
        self.offset_ms = (before + after) // 2 - int(server)
        self.uncertainty_ms = (after - before) // 2 + 1
        self._measured_at = time.monotonic()
        if self._signing:
            self._exchange.options["timeDifference"] = self.offset_ms
        if abs(self.offset_ms) > VENUE_FUTURE_TOLERANCE_MS:
            log.warning("venue %s: local clock is %d ms off the venue's", self._venue, self.offset_ms)
        return True

    async def resync(self) -> None:
        """The fallback for a refused timestamp (-1021): measure now, and from now on let ccxt
        sign with the measured offset, so that a retry goes through."""
        self._signing = True
        if await self.refresh(force=True):
            log.warning("venue %s refused our timestamp: clock re-synced (offset %d ms)", self._venue,
                        self.offset_ms)
        else:
            log.warning("venue %s refused our timestamp: clock re-sync failed", self._venue)


async def lookup_round(lookup: Callable[[], Awaitable[OrderResult | None]]) -> OrderResult | None:
    """One look-up, retried with backoff while it fails retryably; the last error is raised."""
    delay = LOOKUP_BACKOFF_S
    for attempt in range(LOOKUP_ATTEMPTS):
        try:
            return await lookup()
        except VenueError as exc:
            if not exc.retryable or attempt == LOOKUP_ATTEMPTS - 1:
                raise
        await asyncio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


async def confirm_absent(
    lookup: Callable[[], Awaitable[OrderResult | None]],
    deadline_ms: Callable[[], Awaitable[int]],
    *,
    what: str,
) -> OrderResult | None:
    """The order if the venue has it; None only once a look-up *sent after the deadline*
    answered "not found". Look-ups failing before the deadline do not shorten the wait; when
    they still fail after it, :class:`OrderOutcomeUnknown` is raised (nothing may be sent)."""
    started = now_ms()
    answered = False
    try:
        found = await lookup_round(lookup)
    except VenueError as exc:
        if not exc.retryable:
            raise
        log.warning("%s: look-up failed (%s); waiting out the in-flight window", what, exc.type_name)
    else:
        if found is not None:
            return found
        answered = True
    deadline = await deadline_ms()
    if answered and started >= deadline:
        return None
    wait_s = (deadline - now_ms()) / 1000
    if wait_s > 0:
        log.info("%s: not found yet; looking again every %.2f s for %.1f s (in-flight window)", what,
                 IN_FLIGHT_POLL_S, wait_s)
    while (wait_s := (deadline - now_ms()) / 1000) > 0:
        await asyncio.sleep(min(wait_s, IN_FLIGHT_POLL_S))
        if now_ms() >= deadline:
            break  # the look-up that may answer "not found" is sent after the deadline (below)
        try:  # "not found" before the deadline proves nothing; found is final
            found = await lookup()
        except VenueError as exc:
            if not exc.retryable:
                raise
            continue
        if found is not None:
            return found
    try:
        return await lookup_round(lookup)
    except VenueError as exc:
        if not exc.retryable:
            raise
        raise OrderOutcomeUnknown(
            f"{what}: could not establish whether the order exists ({exc.type_name}); nothing was sent",
            venue=exc.venue,
        ) from None


#: polls of a market order whose first answer is not final yet
MARKET_CLOSE_POLLS = 5


async def await_market_close(result: OrderResult, get_order: Callable[[str, str], Awaitable[OrderResult | None]],
                             within_s: float | None = None) -> OrderResult:
    """A market order's first answer may still say NEW (Binance matches asynchronously,
    and ACK-style answers carry no fill): poll it briefly (``within_s``: every 0.05 s for that
    long). Callers treat an order that is still open afterwards as in progress (``is_closed``
    False) and look it up later."""
    delay, polls = 0.05, MARKET_CLOSE_POLLS
    until = None if within_s is None else time.monotonic() + within_s
    while not result.is_closed and (polls > 0 if until is None else time.monotonic() < until):
        polls -= 1
        await asyncio.sleep(delay)
        delay = delay if until is not None else min(delay * 2, 0.5)
        try:
            latest = await get_order(result.symbol, result.client_order_id)
        except VenueError as exc:
            if not exc.retryable:
                raise
            continue
        if latest is not None:
            result = latest.model_copy(update={"requested_qty": result.requested_qty})
    return result


async def at_most_once(
    gw: Gateway, symbol: str, qty: Decimal, cid: str, side: Side, reduce_only: bool, lookup_first: bool,
    price: Callable[[MarketInfo], Decimal | None],
    send: Callable[[MarketInfo, Decimal, Decimal, Decimal | None], Awaitable[OrderResult]], *, whole: bool = False,
) -> OrderResult:
    """The rules every order shares (``Gateway.place_market_order``, and ``place_limit_order`` in
    :mod:`venues.resting_orders`): the quantity rounded down to the step (``whole``, a reduce-only
    close of everything held: up, see :func:`rounded`) and ``price(market)`` (the price its minimum
    notional is checked at), the id looked up first on a retry or a resend, the minimums checked
    before sending, and one more ``send`` re-rounded when a refusal says the market's filters changed."""
    whole = whole and reduce_only
    m, contracts, base_qty = await market_rounded(gw, symbol, qty, whole)
    px = price(m)
    if lookup_first or gw._sends.knows(gw._vcid(cid)):
        # before the notional check: a retry must find its order even if the price moved
        existing = await gw._confirm_absent(symbol, cid)
        if existing is not None:
            log.info("venue %s: order %s already exists; not sending again", gw.name, cid)
            return existing.model_copy(update={"duplicate_prevented": True})
    await check_sendable(gw, m, side, base_qty, reduce_only, px)
    generation = gw._markets.generation
    try:
        return await send(m, contracts, base_qty, px)
    except VenueError as err:
        if err.outcome_unknown or not is_market_metadata_error(err):
            raise
        fresh = (await gw.refresh_markets(generation)).get(symbol)
        if fresh is None or fresh == m:
            raise
        log.warning("venue %s: %s market metadata changed (%s); re-rounding and sending %s again",
                    gw.name, symbol, err.code, cid)
        contracts, base_qty = rounded(fresh, qty, gw.name, whole=whole)
        px = price(fresh)
        await check_sendable(gw, fresh, side, base_qty, reduce_only, px)
        return await send(fresh, contracts, base_qty, px)
