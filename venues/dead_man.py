"""The venues' dead-man's switch for resting orders, through the gateway (issue 15).

A switch armed with a countdown makes the venue itself cancel the open orders it covers unless
it is armed again in time. The maker unit (``activities/maker_unit.py``) arms it with each quote
and re-arms it after each read of the quote that the venue answered: when the venue stops
answering (a partition), the refreshes stop with the reads and the venue cancels the quote about
one countdown later, so a quote can fill unseen only within that countdown.

Per family (:class:`venues.adapters.base.Adapter` ``dead_man_min_ms``, ``dead_man_scope``,
``arm_dead_man``): Binance USD-M ``POST /fapi/v1/countdownCancelAll`` (ccxt
``fapiPrivatePostCountdownCancelAll``, per symbol, ms); OKX ``POST /api/v5/trade/cancel-all-after``
(10–120 s), Bybit ``POST /v5/order/disconnected-cancel-all`` (3–300 s) and Hyperliquid's
``scheduleCancel`` (≥ 5 s ahead) through ccxt's unified ``cancel_all_orders_after``, each for the
whole account. A countdown shorter than the venue takes is raised to its minimum. The simulator
implements all four (``venues/sim/dead_man.py``).

Nothing is disarmed at the end: a countdown that nobody refreshes any more fires on no order of
ours (a unit's quote is final by then), and disarming would also disarm the switch of another
unit quoting on the same venue (one timer per symbol, or per account).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from venues.gateway import Gateway


def countdown_ms(gw: Gateway, ms: int) -> int | None:
    """The countdown this venue would arm for ``ms``: at least its minimum; None without a switch."""
    low = gw.adapter.dead_man_min_ms
    return None if low is None else max(int(ms), low)


async def arm(gw: Gateway, symbol: str, ms: int) -> int | None:
    """(Re)arm the switch covering ``symbol`` for ``ms`` (raised to the venue's minimum); returns
    the countdown armed, None when the venue has no switch (nothing sent). Raises VenueError."""
    armed = countdown_ms(gw, ms)
    if armed is None:
        return None
    m = await gw.market(symbol)
    await gw.adapter.arm_dead_man(gw._call, m.venue_symbol, armed)
    return armed
