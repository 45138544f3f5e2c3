"""The simulated venue's dead-man's switch for resting orders (issue 15), in every dialect.

A client arms a countdown; unless it arms it again before the countdown runs out, the venue
itself cancels the open orders it covers. The timer runs on the venue's side (an ``asyncio``
timer of the simulator's loop, not its price tick): an ``outage`` (the API unreachable, a
partition) stops the refreshes from arriving while the countdown and the matching engine run
on, so a quote left resting on a venue the client can no longer reach is cancelled by the venue
about one countdown after the last refresh that arrived. A countdown of 0 (or none) disarms it.

What each dialect takes (the real venues' rules, as documented):

* Binance USD-M ``POST /fapi/v1/countdownCancelAll`` (``symbol``, ``countdownTime`` in ms, 0 to
  stop; weight 10): per symbol; answer ``{"symbol", "countdownTime"}``.
* OKX ``POST /api/v5/trade/cancel-all-after`` (``timeOut`` in seconds, 0 or 10–120): every open
  order of the account; answer ``[{"triggerTime", "tag", "ts"}]``.
* Bybit ``POST /v5/order/disconnected-cancel-all`` (``timeWindow`` in seconds, 3–300, ``product``):
  every open order of the account. On Bybit this is disconnection protection (DCP): the window
  runs while the private websocket is disconnected. The simulator has no websocket, so here each
  call restarts the window (as a heartbeat), which is what the REST client can do.
* Hyperliquid ``scheduleCancel`` action (``time``: an absolute ms timestamp at least 5 s ahead;
  omitted: unset): every open order of the account. (The venue also limits it to 10 triggers a
  day and to accounts with enough volume traded; the simulator does not.)

The timers are in memory: a simulator restart disarms them (its orders stay open).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .records import Mutation

if TYPE_CHECKING:
    from aiohttp import web

    from .venue import Sim

log = logging.getLogger("hedgeflow.sim")

#: the account-wide timer's key (OKX, Bybit, Hyperliquid); Binance's are per symbol id
ALL = "*"
OKX_RANGE_S = (10, 120)
BYBIT_RANGE_S = (3, 300)
HYPERLIQUID_MIN_AHEAD_MS = 5000


class DeadMan:
    """Countdowns by key (a symbol id, or :data:`ALL`); each fires once unless armed again."""

    def __init__(self) -> None:
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.deadlines: dict[str, int] = {}  # key → venue ms at which it fires
        self.fired: list[tuple[str, int, int]] = []  # (key, venue ms, orders cancelled)

    def arm(self, sim: Sim, key: str, ms: int) -> int:
        """(Re)start the countdown of ``key`` for ``ms`` (0: disarm); returns the deadline (0)."""
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self.deadlines.pop(key, None)
        if ms <= 0:
            return 0
        self._timers[key] = asyncio.get_running_loop().call_later(ms / 1000, self._fire, sim, key)
        self.deadlines[key] = deadline = sim.now_ms() + ms
        return deadline

    def _fire(self, sim: Sim, key: str) -> None:
        self._timers.pop(key, None)
        self.deadlines.pop(key, None)
        mut, now = Mutation(), sim.now_ms()
        for o in sim.engine.open_orders(None if key == ALL else key):
            mut.merge(sim.engine.cancel(o, now))
        if mut.orders:
            sim.persist(mut)
            log.warning("dead-man's switch %s: %d open order(s) cancelled", key, len(mut.orders))
        self.fired.append((key, now, len(mut.orders)))

    def stop(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        self.deadlines.clear()


def _int(v: Any) -> int | None:
    try:
        return int(str(v))
    except (TypeError, ValueError):
        return None


# ---- Binance ------------------------------------------------------------------------------------
async def binance_countdown(sim: Sim, request: web.Request, p: dict):
    from .errors import SimError

    s = sim.spec(p.get("symbol"))
    ms = _int(p.get("countdownTime"))
    if ms is None or ms < 0:
        raise SimError(-1102, "Mandatory parameter 'countdownTime' was not sent, was empty/null, or malformed.")
    sim.dead_man.arm(sim, s.id, ms)
    return {"symbol": s.id, "countdownTime": str(ms)}


# ---- OKX ----------------------------------------------------------------------------------------
async def okx_cancel_all_after(sim: Sim, request: web.Request, p: dict):
    from .okx.wire import OkxError

    t = _int(p.get("timeOut"))
    lo, hi = OKX_RANGE_S
    if t is None or not (t == 0 or lo <= t <= hi):
        raise OkxError("51000", "Parameter timeOut error")
    deadline = sim.dead_man.arm(sim, ALL, t * 1000)
    return [{"triggerTime": str(deadline), "tag": str(p.get("tag") or ""), "ts": str(sim.now_ms())}]


# ---- Bybit --------------------------------------------------------------------------------------
def bybit_handler():
    from .bybit.common import body_params, ok
    from .bybit.errors import params_error

    @body_params
    @ok
    async def disconnected_cancel_all(sim: Sim, request: web.Request, p: dict):
        w = _int(p.get("timeWindow"))
        lo, hi = BYBIT_RANGE_S
        if w is None or not lo <= w <= hi:
            raise params_error(f"timeWindow must be between {lo} and {hi}")
        sim.dead_man.arm(sim, ALL, w * 1000)
        return {}

    return disconnected_cancel_all


# ---- Hyperliquid --------------------------------------------------------------------------------
def hyperliquid_schedule_cancel(sim: Sim, action: dict, arrived: int, nonce: int) -> dict:
    t = action.get("time")
    if t is None:
        sim.dead_man.arm(sim, ALL, 0)
        return {"status": "ok", "response": {"type": "scheduleCancel"}}
    if isinstance(t, bool) or not isinstance(t, int):
        return {"status": "err", "response": "Invalid scheduled cancel time."}
    ahead = t - sim.now_ms()
    if ahead < HYPERLIQUID_MIN_AHEAD_MS:
        return {"status": "err", "response": "Scheduled cancel time too early, must be at least 5 seconds from now."}
    sim.dead_man.arm(sim, ALL, ahead)
    return {"status": "ok", "response": {"type": "scheduleCancel"}}
